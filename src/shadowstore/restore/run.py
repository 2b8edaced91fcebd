"""Running a restore plan: fetch the files, hard-recover them, put them in place.

    plan = plan_restore(list_sets(target, home=home.home_id), RestoreTarget.latest(), sg="First Storage Group")
    outcome = run_restore(home, target, plan, into=INTO_RECOVERY_GROUP)

The destination is either the storage group itself (``in-place``: its stores must be dismounted, and the user
must have confirmed) or the Recovery Storage Group (log base R00) of the same server home, which never touches
a live storage group. The destination's lock is held for the whole restore. Work happens in
``<destination system folder>/restore/``, whose ``restore.json`` records the plan and the phase reached:

1. **fetch**: every database file and log generation of the plan is copied out of the target, its SHA-256
   checked as it streams (restore/fetch.py). Store files are fetched again whenever this phase runs (a killed
   recovery may have written to them); logs already fetched are kept (they are only renamed in once checked).
2. **recover**: hard recovery (engine/hardrecovery.py) in the staging folder, with the live storage group's
   newer logs after the restored ones when the plan says so; the stores end in Clean Shutdown at the target.
3. **place**: each store file is renamed into the destination (what was there goes to
   ``<log folder>/quarantine/restore-<time>/``), and, unless the stores were rolled forward to the very end of
   the live log stream, the log stream is replaced by a new one with a new log signature (restore/place.py).
4. **done**: the staging folder is removed.

Running the same restore again after a crash continues from the phase recorded; nothing in a live storage
group is changed before phase 3, and in phase 3 only complete, Clean Shutdown stores are moved in. Events: 204
and 205 around the restore, 300-302 for the replay, 1040 where it stopped, 1041 for a new log stream.
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from typing import Any

from shadowstore import config as cfg
from shadowstore.backup.target import Target
from shadowstore.config import SgConfig, StoreConfig
from shadowstore.engine.hardrecovery import HardRecoveryReport
from shadowstore.engine.mountlog import restore_journal_path
from shadowstore.errors import (
    DiskFullError,
    DiskIOError,
    InvalidParameterError,
    LogDiskFullError,
    NotFoundError,
    RestoreError,
    RestoreInProgressError,
    ShadowStoreError,
    StorageGroupBusyError,
)
from shadowstore.format.common import iso_time, iso_us
from shadowstore.home import ServerHome, dismount_first
from shadowstore.io.fs import FileSystem
from shadowstore.restore.journal import Journal, clear_staging, load_journal, open_journal
from shadowstore.restore.phases import Progress, clear_db_staging, db_staging, fetch, recover
from shadowstore.restore.place import highest_generation, move_store_into_place, replace_log_stream
from shadowstore.restore.plan import RestorePlan
from shadowstore.restore.precheck import check_stores_left_alone

RECOVERY_SG, RECOVERY_BASE = cfg.RECOVERY_SG, cfg.RECOVERY_BASE
INTO_RECOVERY_GROUP = "recovery-group"
INTO_PLACE = "in-place"
JOURNAL_FORMAT = "shadowstore-restore"


@dataclass
class RestoreOutcome:
    source_sg: str
    destination_sg: str
    into: str
    stores: list[str]
    stop: str  # the log position the stores are consistent at
    stopped: str  # where replay stopped, in words
    last_commit: str | None  # time of the newest transaction replayed
    generations: tuple[int, int]
    new_log_stream: bool
    quarantine: str | None
    fetched_bytes: int = 0
    seconds: float = 0.0
    resumed: bool = False
    replay_seconds: float = 0.0
    log_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_restore(
    home: ServerHome,
    target: Target,
    plan: RestorePlan,
    *,
    into: str,
    progress: Progress = lambda what, done, total: None,
    other_home: str | None = None,
) -> RestoreOutcome:
    """Carry out ``plan`` into the recovery storage group or in place (see the module documentation).

    Raises RestoreError (a destination that is mounted or does not fit the backup, a store copy newer than
    the target), RestoreInProgressError, BackupSetError (a file whose hash does not match), the log errors of
    hard recovery (-557, -530, -515, -513, -501), BackupTargetError; before phase 3 nothing of a live storage
    group has changed, and running the same restore again finishes it.
    """
    if into not in (INTO_RECOVERY_GROUP, INTO_PLACE):
        raise InvalidParameterError(f"restore into {into!r}: choose {INTO_RECOVERY_GROUP} or {INTO_PLACE}")
    if into == INTO_PLACE and plan.home != home.home_id and other_home != plan.home:
        raise RestoreError(
            f"the plan restores backups of home {plan.home}, and this is home {home.home_id}: restoring them in "
            "place would replace this home's stores with another server's data",
            hint="restore them into the recovery storage group, or name that home with --from-home "
            f"{plan.home} if replacing this home's stores with its data is what you mean",
        )
    fs = home.fs
    started = time.perf_counter()
    dest = _destination(home, plan, into)
    fs.makedirs(dest.system_dir)
    lock = lock_destination(fs, dest, into)
    try:
        if into == INTO_PLACE:
            check_stores_left_alone(fs, dest, plan)
        journal_path = restore_journal_path(dest)
        staging = os.path.dirname(journal_path)
        journal, resumed = open_journal(fs, journal_path, plan.to_dict(), into, dest.name)
        home.events.emit(
            204,
            sg=dest.name,
            folder=os.path.join(staging, "logs"),
            live=_live_dir(home, plan, into) or "(none: this restore does not roll forward)",
        )
        fetched = 0
        if journal.data["phase"] in ("fetch", "recover"):
            try:
                fetched = fetch(fs, target, plan, dest, staging, journal, progress)
                report = recover(home, plan, dest, staging, journal, _live_dir(home, plan, into), progress)
            except (DiskFullError, LogDiskFullError):
                with suppress(OSError):  # why: the copies are only copies; the error that matters is this one
                    clear_copies(fs, dest, staging)
                raise  # the handler below says how to go on
            except ShadowStoreError:
                # why: a refusal (a bad hash, a broken log chain) would only repeat; its copies are not kept
                clear_copies(fs, dest, staging)
                raise
            except OSError as exc:
                with suppress(OSError):  # why: the copies are only copies; the error that matters is exc
                    clear_copies(fs, dest, staging)
                raise _local_error(exc, staging, "run the restore again") from exc
            if into == INTO_RECOVERY_GROUP:
                # why before phase "place": finishing an interrupted placement needs only the home and the journal
                home.set_storage_group_config(_relative(home, dest))
            journal.data.update(
                phase="place", recovery=_report_dict(report), new_stream=_needs_new_stream(report, into)
            )
            journal.save(fs)
        return _finish(home, dest, journal, fetched, started, resumed)
    except (DiskFullError, LogDiskFullError) as exc:
        raise _with_hint(exc, f"free space on that disk, then {_again(dest, journal_path, fs)}") from None
    except OSError as exc:
        raise _local_error(exc, dest.system_dir, _again(dest, journal_path, fs)) from exc
    finally:
        lock.release()


def _again(dest: SgConfig, journal_path: str, fs: FileSystem) -> str:
    """How to go on after a local disk error: finish the placement, or run the restore again."""
    with suppress(OSError):
        if load_journal(fs, journal_path).data.get("phase") == "place":
            return f"run 'shadowstore restore finish --sg {dest.name!r}'"
    return "run the restore again"


def finish_restore(home: ServerHome, sg_name: str) -> RestoreOutcome | None:
    """Finish a restore into storage group ``sg_name`` that was interrupted while putting its files in place,
    from its journal alone (the backup target is not needed); returns its outcome. A restore interrupted
    before that changed nothing of the storage group: its copies are removed and None is returned.

    Raises NotFoundError (no such storage group, or no interrupted restore into it), RestoreInProgressError
    (a restore is running), RestoreError (the storage group is mounted).
    """
    started = time.perf_counter()
    dest, path = interrupted_restore(home, sg_name)
    into = INTO_RECOVERY_GROUP if dest.name == RECOVERY_SG else INTO_PLACE
    lock = lock_destination(home.fs, dest, into)
    try:
        journal = load_journal(home.fs, path)
        if journal.data.get("phase") == "done":  # why: killed before it removed its copies and said so
            return _end(home, dest, journal, 0, started, True)
        if journal.data.get("phase") != "place":
            clear_copies(home.fs, dest, os.path.dirname(path))
            return None
        return _finish(home, dest, journal, 0, started, True)
    except (DiskFullError, LogDiskFullError) as exc:
        again = f"run 'shadowstore restore finish --sg {dest.name!r}' again"
        raise _with_hint(exc, f"free space on that disk, then {again}") from None
    except OSError as exc:
        raise _local_error(exc, dest.system_dir, f"run 'shadowstore restore finish --sg {dest.name!r}' again") from exc
    finally:
        lock.release()


def _finish(
    home: ServerHome, dest: SgConfig, journal: Journal, fetched: int, started: float, resumed: bool
) -> RestoreOutcome:
    """Phase "place" and the end: everything it needs is in the journal."""
    fs = home.fs
    _place(home, dest, journal)
    journal.data["phase"] = "done"
    journal.save(fs)
    fs.crash_point("restore.done")
    return _end(home, dest, journal, fetched, started, resumed)


def _end(
    home: ServerHome, dest: SgConfig, journal: Journal, fetched: int, started: float, resumed: bool
) -> RestoreOutcome:
    """After phase "done": remove the copies (the journal with them), say where the restore stopped."""
    clear_copies(home.fs, dest, os.path.dirname(journal.path))
    data = journal.data
    recovery = data["recovery"]
    outcome = RestoreOutcome(
        source_sg=data["plan"]["sg"],
        destination_sg=dest.name,
        into=data["into"],
        stores=[d["store"] for d in data["plan"]["databases"]],
        stop=recovery["stop"],
        stopped=recovery["stopped"],
        last_commit=iso_time(recovery["last_commit_us"]) if recovery["last_commit_us"] else None,
        generations=(recovery["generations"][0], recovery["generations"][1]),
        new_log_stream=bool(data["new_stream"]),
        quarantine=data.get("quarantine_used"),
        fetched_bytes=fetched,
        seconds=time.perf_counter() - started,
        resumed=resumed,
        replay_seconds=recovery["replay_seconds"],
        log_bytes=recovery["log_bytes"],
    )
    home.events.emit(
        1040,
        sg=dest.name,
        where=outcome.stopped,
        lgpos=outcome.stop,
        last_commit=outcome.last_commit or "(none replayed)",
    )
    if outcome.new_log_stream and outcome.into == INTO_PLACE:
        home.events.emit(1041, sg=dest.name, quarantine=outcome.quarantine or "-")
    home.events.emit(205, sg=dest.name, sync=True)
    return outcome


# --- destination ----------------------------------------------------------------------------------------------


def _destination(home: ServerHome, plan: RestorePlan, into: str) -> SgConfig:
    """The resolved configuration of the storage group the stores go to (the recovery group's is made up
    here and saved only when files are placed)."""
    wanted = [StoreConfig(d.database.store, d.database.file, d.database.dbid) for d in plan.databases]
    if into == INTO_PLACE:
        try:
            sg_config = home.config.find(plan.sg)
        except NotFoundError:
            raise RestoreError(
                f"storage group {plan.sg!r} is not in the server home {home.path}",
                hint="restore into the recovery storage group (--into-recovery-group) instead",
            ) from None
        home.storage_group(plan.sg)  # why: refuses a configuration edited away from the files (engine/configcheck)
        have = {(s.name, s.file, s.dbid) for s in sg_config.stores}
        missing = [s for s in wanted if (s.name, s.file, s.dbid) not in have]
        if missing:
            raise RestoreError(
                f"storage group {plan.sg!r} has no store "
                + ", ".join(f"{s.name!r} ({s.file}, dbid {s.dbid})" for s in missing)
                + " as the backup does",
                hint="restore into the recovery storage group (--into-recovery-group) instead",
            )
        return sg_config.resolved(home.path)
    source = next((g for g in home.config.storage_groups if g.name == plan.sg), None)
    existing = next((g for g in home.config.storage_groups if g.name == RECOVERY_SG), None)
    if plan.sg == RECOVERY_SG:
        raise RestoreError("a backup of the recovery storage group cannot be restored into itself")
    return SgConfig(
        name=RECOVERY_SG,
        log_base=RECOVERY_BASE,
        log_dir=existing.log_dir if existing else RECOVERY_SG,
        system_dir=existing.system_dir if existing else RECOVERY_SG,
        data_dir=existing.data_dir if existing else RECOVERY_SG,
        log_file_size=source.log_file_size if source else cfg.DEFAULT_LOG_FILE_SIZE,
        page_size=plan.databases[0].database.page_size,
        stores=wanted,
    ).resolved(home.path)


def interrupted_restore(home: ServerHome, sg_name: str) -> tuple[SgConfig, str]:
    """The resolved configuration of ``sg_name`` and the journal of the restore into it that was interrupted.
    Raises NotFoundError when there is no such storage group or no such restore."""
    try:
        dest = home.config.find(sg_name).resolved(home.path)
    except NotFoundError:
        if sg_name != RECOVERY_SG:
            raise
        # why: a first restore into the recovery group adds it to the configuration only when it places files
        dest = SgConfig(RECOVERY_SG, RECOVERY_BASE, RECOVERY_SG, RECOVERY_SG, RECOVERY_SG).resolved(home.path)
    path = restore_journal_path(dest)
    if not home.fs.exists(path):
        raise NotFoundError(f"no restore into {sg_name!r} was interrupted ({path} does not exist)")
    return dest, path


def lock_destination(fs: FileSystem, dest: SgConfig, into: str) -> Any:
    path = os.path.join(dest.system_dir, f"{dest.log_base}.lock")
    try:
        return fs.lock(path, f"pid {os.getpid()} (restore into {dest.name})")
    except StorageGroupBusyError as exc:
        if "(restore into" in exc.message:
            raise RestoreInProgressError(f"another restore is running into {dest.name!r}: {exc.message}") from None
        raise RestoreError(
            f"storage group {dest.name!r} is in use: {exc.message}",
            hint=dismount_first(dest.name, "run the restore again"),
        ) from None


def _live_dir(home: ServerHome, plan: RestorePlan, into: str) -> str | None:
    """The log folder whose newer generations the plan rolls forward with (None: the plan uses none)."""
    if plan.live_from is None:
        return None
    try:
        return home.config.find(plan.sg).resolved(home.path).log_dir
    except NotFoundError:
        raise RestoreError(
            f"the plan continues with the live logs of {plan.sg!r}, which is not in the server home {home.path}",
            hint="restore without --roll-forward-live",
        ) from None


# --- phases ---------------------------------------------------------------------------------------------------


def clear_copies(fs: FileSystem, dest: SgConfig, staging: str) -> None:
    """Remove every copy a restore into ``dest`` made: the staging folder and the store copies."""
    clear_db_staging(fs, dest, staging)
    clear_staging(fs, staging)


def _local_error(exc: OSError, where: str, then: str) -> ShadowStoreError:
    """What a failing local disk means to a restore; ``then`` says how to go on once it is fixed."""
    if exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"the disk filled while restoring in {where}", hint=f"free space on that disk, then {then}"
        )
    return DiskIOError(f"I/O error while restoring in {where}: {exc}", hint=f"check the disk, then {then}")


def _with_hint(exc: ShadowStoreError, hint: str) -> ShadowStoreError:
    """``exc`` telling how to go on with the restore: the engine's own hint speaks of mounting."""
    exc.hint = hint
    return exc


def _needs_new_stream(report: HardRecoveryReport, into: str) -> bool:
    """In place, the stores may continue the live stream only if they were rolled forward to its very end."""
    return into == INTO_RECOVERY_GROUP or not (report.reached_end and report.rolled_to_current)


def _place(home: ServerHome, dest: SgConfig, journal: Journal) -> None:
    """Each file moves within its own file system: a store from its staging copy in the data folder, what it
    replaces into the data folder's quarantine, the logs into the log folder's, the checkpoint into the system
    folder's (one folder when they are one, as by default)."""
    fs = home.fs
    data = journal.data
    stamp = f"restore-{data['started']}"
    quarantines = [os.path.join(folder, "quarantine", stamp) for folder in (dest.log_dir, dest.data_dir)]
    system_quarantine = os.path.join(dest.system_dir, "quarantine", stamp)
    for d in data["plan"]["databases"]:
        staged = os.path.join(db_staging(dest), d["file"])
        if move_store_into_place(fs, staged, os.path.join(dest.data_dir, d["file"]), quarantines[1]):
            fs.crash_point("restore.place.store")
    if data["new_stream"] and not data.get("stream_done"):
        stop_gen = data["recovery"]["stop_gen"]
        first = 1 if data["into"] == INTO_RECOVERY_GROUP else max(highest_generation(fs, dest), stop_gen) + 1
        plan = data["plan"]
        after_us = max(iso_us(plan.get("newest_stream")), iso_us(plan["log_signature"].get("created")))
        replace_log_stream(fs, dest, quarantines[0], first, checkpoint_quarantine=system_quarantine, after_us=after_us)
        data["stream_done"] = True
        journal.save(fs)
        fs.crash_point("restore.place.stream")
    used = [q for q in dict.fromkeys([*quarantines, system_quarantine]) if fs.exists(q)]
    if used:
        data["quarantine_used"] = "; ".join(used)


def _relative(home: ServerHome, dest: SgConfig) -> SgConfig:
    """``dest`` with its folders relative to the server home, as the configuration keeps them."""
    return SgConfig(
        name=dest.name,
        log_base=dest.log_base,
        log_dir=os.path.relpath(dest.log_dir, home.path),
        system_dir=os.path.relpath(dest.system_dir, home.path),
        data_dir=os.path.relpath(dest.data_dir, home.path),
        log_file_size=dest.log_file_size,
        page_size=dest.page_size,
        circular_logging=dest.circular_logging,
        stores=list(dest.stores),
    )


def _report_dict(report: HardRecoveryReport) -> dict[str, Any]:
    return {
        "stop": str(report.stop),
        "stop_gen": report.stop.gen,
        "stopped": report.stopped,
        "last_commit_us": report.last_commit_us,
        "generations": list(report.generations),
        "records": report.records,
        "replay_seconds": report.replay_seconds,
        "log_bytes": report.log_bytes,
    }
