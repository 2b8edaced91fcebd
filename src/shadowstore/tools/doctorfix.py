"""``shadowstore doctor --fix``: the support article's cure for a wedged storage group, as one resumable procedure
that deletes nothing.

The article's cure is manual: dismount the stores, run ``eseutil /mh`` until every database is in Clean
Shutdown, move all logs and system files aside, mount again, take a full backup. Here it is, per storage group
that tools/doctor.py found in need of it, in named steps (``STEPS``):

1. ``dismount``: through the Information Store service when it runs, else make sure no process has it mounted;
2. ``recover``: every store in Dirty Shutdown to Clean Shutdown by soft recovery, which is what a mount does
   (the engine's own mount and dismount: engine/recovery.py), after copying the current log and the checkpoint,
   which that mount writes to, into ``before-recovery/`` of the quarantine folder; a store whose logs do not
   allow it stops the cure with the engine's error and the way out (put the logs back, or restore): never made
   clean without them;
3. ``quarantine``: under the storage group's lock, with every store checked to be in Clean Shutdown again, move
   every log of its base (archived, foreign ones included, the prepared and reserve logs, the current log last)
   and ``E00.chk`` into ``quarantine/doctor-<started>/`` of their folder (quarantine.py's layout, so ``shadowstore
   quarantine list`` shows it). Nothing is deleted: the stores need none of it once they are clean;
4. ``clear``: the session description and abort request a dead backup left (``E00.backup.json``,
   ``E00.backup-abort``) go to the same quarantine folder, and a session of the service whose program is gone is
   ended;
5. ``mount``: through the service when it runs (a new log stream starts), else once here and dismounted again;
6. ``backup``: a full backup to the target, through the service when it runs: with a new log stream, only a
   full backup starts a chain incrementals can build on.

A storage group whose only trouble is the leftovers of a dead backup gets the ``clear`` step alone.

The plan is a pure function (tools/doctorplan.py ``plan_cure``) that ``--dry-run`` prints. The journal,
``<home>/doctor/<log base>.json`` (tools/doctorplan.py), is replaced durably when the cure starts and after each
step; a run killed at any instant is finished by running
``doctor --fix`` again: every step is idempotent, and the steps that put the storage group in a state a step
after them relies on (``dismount``) are done again when a later step is still to do. Crash points
``doctor.after_journal``, ``doctor.<step>.before_record`` (the step done, the journal not yet saying so) and
``doctor.quarantine.after_file`` let tests kill a real process at each instant. Events 1070-1074 record the
cure; the engine's own (dismount, recovery, mount, backup) come from the engine.

Durability assumption: that of io/fs.py (a file is durable once fsynced, a name once its folder is fsynced).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from shadowstore.backup.report import BackupReport
from shadowstore.backup.run import Progress, back_up
from shadowstore.backup.target import Target
from shadowstore.config import SgConfig
from shadowstore.engine.backupslot import abort_request_path, status_path
from shadowstore.engine.logstream import LogSet
from shadowstore.engine.movepath import copy_durably, set_aside
from shadowstore.errors import (
    DatabaseDirtyShutdownError,
    ShadowStoreError,
    StorageGroupBusyError,
)
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN, STATE_DIRTY_SHUTDOWN
from shadowstore.format.logfile import checkpoint_name, current_log_name
from shadowstore.home import ServerHome
from shadowstore.quarantine import QUARANTINE
from shadowstore.tools.doctorplan import JOURNAL_FORMAT, STEPS, CurePlan, journal_path, save_journal
from shadowstore.tools.eseutil import dump_database

__all__ = ["STEPS", "Control", "CureResult", "DirectControl", "cure", "doctor_owner"]

BEFORE_RECOVERY = "before-recovery"  # in the quarantine folder: the log and checkpoint as found


class Control(Protocol):
    """What the cure asks of whoever owns the storage groups: the service (cli/doctor_cmd.py) or this process
    (:class:`DirectControl`)."""

    via: str  # for people: "through the Information Store service"

    def dismount(self, sg: str) -> str: ...

    def mount(self, sg: str) -> str: ...

    def end_orphaned_sessions(self, sg: str) -> list[str]:
        """End the backup sessions of ``sg`` whose program is gone; their owners."""

    def has_session(self, sg: str) -> bool:
        """Whether a backup session of ``sg`` runs (its description is then not stale)."""

    def full_backup(self, sg: str) -> str:
        """Take a full backup of ``sg``; its id."""


# --- running it ---------------------------------------------------------------------------------------------

# on_step(storage group, step, "start" | "done", text): progress for a terminal (the CLI prints it)
OnStep = Callable[[str, str, str, str], None]


@dataclass
class CureResult:
    sg: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (step, what it did)
    quarantine: list[str] = field(default_factory=list)
    backup_id: str | None = None
    resumed: bool = False


def cure(
    home: ServerHome,
    plan: CurePlan,
    journals: dict[str, dict[str, Any]],
    control: Control,
    *,
    target: str,
    on_step: OnStep = lambda sg, step, state, text: None,
) -> list[CureResult]:
    """Apply ``plan`` storage group by storage group (``journals``: the unfinished ones it resumes). Raises the
    error of a step that failed, after event 1073; its journal stays, and the same command finishes the cure."""
    results = []
    for sg in plan.groups:
        journal = journals.get(sg) or _start(home, sg, plan.steps_of(sg), control, target)
        result = CureResult(sg, resumed=sg in journals)
        _Cure(home, journal, control, result, on_step).run(plan.steps_of(sg))
        results.append(result)
    return results


def _start(home: ServerHome, sg: str, steps: list[str], control: Control, target: str) -> dict[str, Any]:
    config = home.config.find(sg)
    journal = {
        "format": JOURNAL_FORMAT,
        "sg": sg,
        "log_base": config.log_base,
        "started": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ"),  # names the quarantine folders
        "pid": os.getpid(),
        "via": control.via,
        "target": target,
        "steps": steps,
        "done": [],
        "phase": "running",
        "backup_id": None,
    }
    save_journal(home.fs, home.path, journal)
    home.events.emit(1070, sg=sg, steps=", ".join(steps), journal=journal_path(home.path, config.log_base))
    home.fs.crash_point("doctor.after_journal")
    return journal


class _Cure:
    """One storage group's cure, step by step, recorded in its journal."""

    def __init__(
        self, home: ServerHome, journal: dict[str, Any], control: Control, result: CureResult, on_step: OnStep
    ) -> None:
        self.home = home
        self.fs = home.fs
        self.journal = journal
        self.control = control
        self.result = result
        self.on_step = on_step
        self.sg = str(journal["sg"])
        self.config: SgConfig = home.config.find(self.sg).resolved(home.path)

    def run(self, steps: list[str]) -> None:
        runners: dict[str, Callable[[], str]] = {
            "dismount": lambda: self.control.dismount(self.sg),
            "recover": self.recover,
            "quarantine": self.quarantine,
            "clear": self.clear,
            "mount": lambda: self.control.mount(self.sg),
            "backup": self.backup,
        }
        for step in steps:
            self.on_step(self.sg, step, "start", "")
            try:
                detail = runners[step]()
            except ShadowStoreError as exc:
                self.home.events.emit(1073, sg=self.sg, step=step, error=str(exc), hint=exc.hint or "-")
                raise
            self.fs.crash_point(f"doctor.{step}.before_record")
            if step not in self.journal["done"]:
                self.journal["done"].append(step)
            save_journal(self.fs, self.home.path, self.journal)
            self.home.events.emit(1071, sg=self.sg, step=step, detail=detail)
            self.result.steps.append((step, detail))
            self.on_step(self.sg, step, "done", detail)
        self.journal["phase"] = "done"
        save_journal(self.fs, self.home.path, self.journal)
        self.result.quarantine = self._quarantine_folders(existing=True)
        self.result.backup_id = self.journal.get("backup_id")
        self.home.events.emit(
            1074,
            sg=self.sg,
            steps=", ".join(self.journal["steps"]),
            quarantine=", ".join(self.result.quarantine) or "nothing was set aside",
            backup=self.result.backup_id or "none (not part of this cure)",
            sync=True,
        )

    # --- steps ----------------------------------------------------------------------------------------------

    def recover(self) -> str:
        """Soft recovery is what a mount does first: mount here and dismount, when a store is in Dirty Shutdown.
        Raises the engine's refusal (the logs a store needs are missing, foreign, damaged), with the way out."""
        dirty = [name for name, state in self._stores() if state == STATE_DIRTY_SHUTDOWN]
        if not dirty:
            return "every store was in Clean Shutdown already"
        kept = self._keep_as_found()
        self.home.forget(self.sg)
        sg = self.home.storage_group(self.sg)
        try:
            report = sg.mount()
        except StorageGroupBusyError:
            raise
        except ShadowStoreError as exc:  # the engine's refusal: what is missing; changed nothing
            error = type(exc)(
                f"soft recovery cannot bring {', '.join(dirty)} of {self.sg!r} to Clean Shutdown: {exc.message}",
                hint="doctor does not make a store clean without the logs it needs (that would lose committed "
                f"transactions): put the missing logs back into {self.config.log_dir} and run 'shadowstore doctor "
                f"--fix' again, or restore the store from a backup ('shadowstore restore run --sg {self.sg!r} "
                "--in-place --yes'); nothing was set aside",
            )
            error.details = exc.details
            raise error from exc
        try:
            sg.dismount()
        finally:
            self.home.forget(self.sg)
        replayed = f"soft recovery replayed {report.records} transaction(s) into {', '.join(dirty)}"
        return f"{replayed}; every store is in Clean Shutdown (the log and checkpoint as found: {kept})"

    def _keep_as_found(self) -> str:
        """Copy the current log and the checkpoint, which the mount of soft recovery writes to (its ATTACH and
        DETACH records, a torn tail zeroed), into ``before-recovery/`` of the quarantine folder first, so that
        every file is kept as doctor found it. A copy an interrupted run made is kept: it is the older one."""
        kept = []
        for path in (
            os.path.join(self.config.log_dir, current_log_name(self.config.log_base)),
            os.path.join(self.config.system_dir, checkpoint_name(self.config.log_base)),
        ):
            folder = os.path.join(self._quarantine_of(path), BEFORE_RECOVERY)
            copy = os.path.join(folder, os.path.basename(path))
            if self.fs.exists(path) and not self.fs.exists(copy):
                self.fs.makedirs(folder)
                copy_durably(self.fs, path, copy)
            if self.fs.exists(copy):
                kept.append(copy)
        return ", ".join(kept) or "none"

    def quarantine(self) -> str:
        """Move every log and the checkpoint aside, holding the storage group's lock, once every store is checked
        to be in Clean Shutdown (under the lock: nobody mounts it meanwhile)."""
        moved: list[str] = []
        with self._locked():
            self._require_clean()
            for path in self._stream_files():
                set_aside(self.fs, path, self._quarantine_of(path))
                moved.append(os.path.basename(path))
                self.fs.crash_point("doctor.quarantine.after_file")
        folders = self._quarantine_folders(existing=True)
        if moved:
            self.home.events.emit(1072, sg=self.sg, files=len(moved), quarantine=", ".join(folders))
        return (
            f"moved {len(moved)} file(s) into {', '.join(folders) or 'quarantine'}"
            if moved
            else "nothing was left to move"
        )

    def clear(self) -> str:
        done = [f"ended the session of {owner}" for owner in self.control.end_orphaned_sessions(self.sg)]
        files = [
            path
            for path in (
                status_path(self.config.system_dir, self.config.log_base),
                abort_request_path(self.config.system_dir, self.config.log_base),
            )
            if self.fs.exists(path)
        ]
        if files and self.fs.lock_holder(self._lock_path) is None:
            with self._locked():
                done += self._set_aside(files)
        elif files and not self.control.has_session(self.sg):  # the service holds it, with no session
            done += self._set_aside(files)
        return "; ".join(done) or "nothing was left to clear"

    def backup(self) -> str:
        ended = self.control.end_orphaned_sessions(self.sg)  # why: a run killed in its backup left its session
        backup_id = self.control.full_backup(self.sg)
        self.journal["backup_id"] = backup_id
        return ("; ".join(f"ended the session of {o}" for o in ended) + "; " if ended else "") + (
            f"full backup {backup_id} {self.control.via}"
        )

    # --- helpers --------------------------------------------------------------------------------------------

    @property
    def _lock_path(self) -> str:
        return os.path.join(self.config.system_dir, f"{self.config.log_base}.lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the storage group's lock, the one a mount takes. Raises StorageGroupBusyError when it is held."""
        try:
            lock = self.fs.lock(self._lock_path, f"pid {os.getpid()} (doctor --fix)")
        except StorageGroupBusyError as exc:
            raise StorageGroupBusyError(
                f"storage group {self.sg!r} was mounted again while doctor was curing it: {exc.message}",
                hint="dismount it (or stop the process that has it), then run 'shadowstore doctor --fix' again to "
                "finish",
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _stores(self) -> list[tuple[str, int]]:
        states = []
        for store in self.config.stores:
            header = dump_database(self.config.store_path(store), self.fs).header
            states.append((store.name, header.state))
        return states

    def _require_clean(self) -> None:
        for name, state in self._stores():
            if state != STATE_CLEAN_SHUTDOWN:
                raise DatabaseDirtyShutdownError(
                    f"store {name!r} of {self.sg!r} is not in Clean Shutdown, so its logs are still needed: doctor "
                    "does not set them aside",
                    hint="run 'shadowstore doctor' to see why, then 'shadowstore doctor --fix' again",
                )

    def _stream_files(self) -> list[str]:
        """The files to set aside, in the order that leaves a mountable storage group at every instant: the
        checkpoint, the archived generations, the prepared and reserve logs, and the current log last (without
        it a mount refuses, -528, rather than start a stream beside archived logs)."""
        logs = LogSet.scan(self.fs, self.config.log_dir, self.config.log_base)
        checkpoint = os.path.join(self.config.system_dir, checkpoint_name(self.config.log_base))
        files = [checkpoint] if self.fs.exists(checkpoint) else []
        files += [logs.archived[g] for g in sorted(logs.archived)]
        files += [p for p in (logs.tmp, *sorted(logs.reserves), logs.current) if p is not None]
        return files

    def _quarantine_of(self, path: str) -> str:
        return os.path.join(os.path.dirname(path), QUARANTINE, f"doctor-{self.journal['started']}")

    def _quarantine_folders(self, *, existing: bool) -> list[str]:
        folders = dict.fromkeys(
            os.path.join(d, QUARANTINE, f"doctor-{self.journal['started']}")
            for d in (self.config.log_dir, self.config.system_dir)
        )
        return [f for f in folders if not existing or self.fs.exists(f)]

    def _set_aside(self, files: list[str]) -> list[str]:
        return [f"set aside {os.path.basename(set_aside(self.fs, f, self._quarantine_of(f)))}" for f in files]


# --- without the service ------------------------------------------------------------------------------------


class DirectControl:
    """The storage groups opened by this process: nobody else may have them mounted."""

    via = "in this process"

    def __init__(
        self, home: ServerHome, target: Target, report: Callable[[], BackupReport], progress: Progress
    ) -> None:
        self.home = home
        self.target = target
        self.report = report
        self.progress = progress

    def _lock_path(self, sg: str) -> str:
        config = self.home.config.find(sg).resolved(self.home.path)
        return os.path.join(config.system_dir, f"{config.log_base}.lock")

    def dismount(self, sg: str) -> str:
        holder = self.home.fs.lock_holder(self._lock_path(sg))
        if holder is not None:
            raise StorageGroupBusyError(
                f"storage group {sg!r} is mounted by {holder}, and no Information Store service runs to dismount it",
                hint="stop that process (or dismount it there), then run 'shadowstore doctor --fix' again",
            )
        return "no process has it mounted"

    def mount(self, sg: str) -> str:
        self.home.forget(sg)
        group = self.home.storage_group(sg)
        group.mount()
        try:
            generation = group.log.disk_generation
        finally:
            group.dismount()
            self.home.forget(sg)
        return f"mounted (log generation {generation} of its log stream) and dismounted again"

    def end_orphaned_sessions(self, sg: str) -> list[str]:
        return []  # why: a session lives in the process that runs it; without the service, that process is gone

    def has_session(self, sg: str) -> bool:
        return self.home.fs.lock_holder(self._lock_path(sg)) is not None

    def full_backup(self, sg: str) -> str:
        outcome = back_up(
            self.home, sg, "full", self.target, owner=doctor_owner(), report=self.report(), progress=self.progress
        )
        return outcome.backup_id


def doctor_owner() -> str:
    """The owner doctor's backups are begun with; ``(pid N on HOST)`` lets a later run see it is gone."""
    return f"shadowstore doctor --fix (pid {os.getpid()} on {socket.gethostname()})"
