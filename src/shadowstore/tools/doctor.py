"""``shadowstore doctor``: what is wrong with a server home, each finding with what it is, where, and what to do.

:func:`diagnose` reads every storage group of a home without mounting or changing anything, through the
readers eseutil uses (tools/eseutil.py: ``dump_database``, ``dump_logs``, ``dump_checkpoint``) and the engine's
own checks (engine/configcheck.py, the restore journal of engine/mountlog.py, the move journal of
tools/sgmove.py, the session files of engine/backupslot.py), and returns a :class:`Diagnosis`: per storage group
the facts a cure needs (which stores are in Dirty Shutdown and which generations their soft recovery replays)
and a list of :class:`Finding`.

The findings and their severities are tools/doctorfindings.py; the log folder's judgement is
tools/doctorlogs.py, that of an unfinished move tools/doctormoves.py; what ``doctor --fix`` does about them is
tools/doctorfix.py.

A storage group that a process has mounted is judged by its logs and session only: its stores' headers say
Dirty Shutdown while they are mounted, which is normal.
"""

from __future__ import annotations

import json
import os
from typing import Any

from shadowstore.backup.catalog import INCOMPLETE, list_sets
from shadowstore.backup.sessions import owner_gone
from shadowstore.backup.target import Target
from shadowstore.config import SgConfig
from shadowstore.engine import configcheck
from shadowstore.engine.backup import describe_session
from shadowstore.engine.backupslot import abort_request_path, status_path
from shadowstore.errors import (
    BackupTargetError,
    FileNotFoundError_,
    ShadowStoreError,
)
from shadowstore.format.common import Signature
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN, STATE_DIRTY_SHUTDOWN
from shadowstore.format.logfile import checkpoint_name
from shadowstore.home import ServerHome
from shadowstore.io import clone
from shadowstore.io.fs import FileSystem, read_file
from shadowstore.restore.journal import unfinished_restore
from shadowstore.tools.doctorfindings import (
    BLOCKING,
    CLEARED,
    CURED,
    ERROR,
    INFO,
    WARNING,
    Diagnosis,
    Finding,
    GroupFacts,
    StoreFacts,
)
from shadowstore.tools.doctorlogs import LogFacts
from shadowstore.tools.doctormoves import check_move
from shadowstore.tools.eseutil import dump_checkpoint, dump_database
from shadowstore.vss import snapshotfolders

__all__ = [
    "BLOCKING",
    "CLEARED",
    "CURED",
    "ERROR",
    "INFO",
    "WARNING",
    "Diagnosis",
    "Finding",
    "GroupFacts",
    "StoreFacts",
    "diagnose",
    "owner_gone",
]


def diagnose(
    home: ServerHome, *, sessions: list[dict[str, Any]] | None = None, target: Target | None = None
) -> Diagnosis:
    """Everything doctor finds in ``home``; reads only. ``sessions`` are the running backup sessions of the
    Information Store service when it runs (``GET /v1/backup-sessions``), None without it; ``target`` is the
    backup target whose sets are looked at (incomplete ones with a dead lease). Never raises for what it finds."""
    resolved = [g.resolved(home.path) for g in home.config.storage_groups]
    groups = [_check_group(home, c, [o for o in resolved if o is not c], sessions) for c in resolved]
    other = _lease_findings(target, home.home_id) if target is not None else []
    return Diagnosis(home.path, groups, other)


def _check_group(
    home: ServerHome, config: SgConfig, others: list[SgConfig], sessions: list[dict[str, Any]] | None
) -> GroupFacts:
    fs = home.fs
    lock = os.path.join(config.system_dir, f"{config.log_base}.lock")
    group = GroupFacts(config.name, config, fs.lock_holder(lock))
    for error in configcheck.mismatches(fs, config, others, home.path):
        group.add(ERROR, "config-mismatch", error.message, str(error.details.get("folder", config.log_dir)), error.hint)
    if group.findings:
        return group  # why: its files are not where the configuration says; nothing below would be true
    for folder in dict.fromkeys((config.log_dir, config.system_dir, config.data_dir)):
        if not fs.exists(folder):
            group.add(
                ERROR,
                "folder-missing",
                f"the folder {folder} of storage group {config.name!r} does not exist",
                folder,
                "if its disk is not mounted, mount it; if the folder was moved or renamed, put it back (the "
                "configuration names it); the storage group refuses to mount until then, and nothing was changed",
            )
    if group.findings:
        return group  # why: a disk not mounted is not a store lost; restoring it would be the wrong cure
    _restore_finding(home, group)
    _cure_finding(home, group)
    check_move(home, group)
    if group.holder is not None:
        group.add(
            INFO,
            "mounted",
            f"storage group {config.name!r} is mounted by {group.holder}: its stores' headers say Dirty Shutdown "
            "while mounted, so only its logs and backup session were checked",
            lock,
            "nothing to do; dismount it for a full check",
        )
    logs = LogFacts.read(fs, config, group)
    group.current_gen = logs.current_gen
    _check_stores(fs, group, logs)
    _check_checkpoint(fs, group, logs)
    _check_sessions(fs, group, sessions)
    _check_lock(fs, group, lock)
    _check_snapshots(group)
    return group


def _cure_finding(home: ServerHome, group: GroupFacts) -> None:
    """An earlier 'doctor --fix' of this storage group that did not finish (killed, or stopped by a full disk):
    its logs may be set aside already and no new full backup taken, which the folder alone does not show, so
    without this finding doctor would call the home healthy. Its journal says what is left; reads only."""
    from shadowstore.tools.doctorplan import JOURNAL_FORMAT, journal_path, remaining_steps  # why here: it imports us

    path = journal_path(home.path, group.config.log_base)
    if not home.fs.exists(path):
        return
    try:
        journal = json.loads(read_file(home.fs, path))
        left = remaining_steps(journal) if journal.get("phase") != "done" else []
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        journal, left = None, ["?"]
    if not isinstance(journal, dict) or journal.get("format") != JOURNAL_FORMAT:
        what = f"the doctor journal {path} of {group.name!r} cannot be read"
        group.add(WARNING, "cure-unfinished", what, path, "look at it; 'shadowstore doctor --fix' says what is wrong")
        return
    if not left or journal.get("sg") != group.name:
        return
    group.add(
        WARNING,
        "cure-unfinished",
        f"a 'doctor --fix' cure of {group.name!r} started {journal.get('started')} is unfinished: done "
        f"{', '.join(journal.get('done', [])) or 'nothing'}; left {', '.join(left)} (its journal {path})",
        path,
        "run 'shadowstore doctor --fix' again: it finishes this cure from where it stopped (what it set aside is "
        "in the quarantine folder; nothing was deleted)",
    )


def _restore_finding(home: ServerHome, group: GroupFacts) -> None:
    found = unfinished_restore(home, group.config)
    if found is None:
        return
    # why the journal's own commands: before its files are placed a restore resumes with 'restore run', after
    # with 'restore finish' (restore/journal.py says which)
    todo = f"resume it ('{found['resume']}')"
    if found["note"]:
        todo += f" ({found['note']})"
    if found["undo"]:
        todo += f" or undo it ('{found['undo']}')"
    group.add(
        ERROR,
        "restore-unfinished",
        f"a restore into {group.name!r} is unfinished: {found['reached']} (its journal {found['journal']})",
        found["journal"],
        todo,
    )


# --- stores and checkpoint --------------------------------------------------------------------------------


def _check_stores(fs: FileSystem, group: GroupFacts, logs: LogFacts) -> None:
    config = group.config
    for store in config.stores:
        path = config.store_path(store)
        try:
            header = dump_database(path, fs).header
        except FileNotFoundError_:
            group.stores.append(StoreFacts(store.name, path, "Missing"))
            group.add(
                ERROR,
                "store-missing",
                f"store {store.name!r}: its file {path} does not exist",
                path,
                f"restore it from a backup ('shadowstore restore run --sg {config.name!r} --in-place --yes'), or "
                "remove the store from the configuration",
            )
            continue
        except ShadowStoreError as exc:
            group.stores.append(StoreFacts(store.name, path, "Damaged"))
            group.add(ERROR, "store-damaged", f"store {store.name!r}: {exc.message}", path, exc.hint or _RESTORE_HINT)
            continue
        facts = StoreFacts(store.name, path, header.state_name, dirty=header.state == STATE_DIRTY_SHUTDOWN)
        group.stores.append(facts)
        if group.holder is not None or header.state == STATE_CLEAN_SHUTDOWN:
            continue
        if not facts.dirty:
            group.add(
                ERROR,
                "store-state",
                f"store {store.name!r} ({path}) is in state {header.state_name}",
                path,
                f"'shadowstore eseutil /mh {path}' shows its header; restore it from a backup if it does not mount",
            )
            continue
        required = f"Log Required: {header.log_required_min}-{header.log_required_max}"
        low = header.replay_start.gen
        problem = _dirty_problem(header.log_signature, logs, config.log_base, low, header.log_required_max)
        facts.replays = (low, max(logs.current_gen or 0, header.log_required_max))
        if problem is None:
            group.add(
                WARNING,
                "store-dirty",
                f"store {store.name!r} ({path}) is in Dirty Shutdown ({required}): the process that had it mounted "
                f"ended without dismounting; soft recovery replays generations {facts.replays[0]}-"
                f"{facts.replays[1]}, which are all there",
                path,
                "mount the storage group (soft recovery runs), or 'shadowstore doctor --fix'",
            )
        else:
            group.add(
                ERROR,
                "store-unrecoverable",
                f"store {store.name!r} ({path}) is in Dirty Shutdown ({required}) and soft recovery cannot bring it "
                f"to Clean Shutdown: {problem}",
                path,
                "put the missing logs back into the log folder (a log moved by hand) and run 'shadowstore doctor "
                f"--fix' again, or {_RESTORE_HINT}; doctor will not make it clean without them, which would lose "
                "committed transactions",
            )


_RESTORE_HINT = "restore it from a backup ('shadowstore restore run --sg NAME --in-place --yes', see docs/restore.md)"


def _dirty_problem(signature: Signature, logs: LogFacts, base: str, low: int, high: int) -> str | None:
    if logs.stream is not None and signature != logs.stream:
        return f"it belongs to the log stream [{signature}], and the log folder holds the stream [{logs.stream}]"
    return logs.replay_problem(base, low, high)


def _check_checkpoint(fs: FileSystem, group: GroupFacts, logs: LogFacts) -> None:
    config = group.config
    path = os.path.join(config.system_dir, checkpoint_name(config.log_base))
    if group.holder is not None or logs.current_gen is None:
        return  # why: a mounted group writes it all the time; without logs a mount makes a new one
    hint = "a mount rebuilds it from the store headers (event 1031); 'shadowstore doctor --fix' sets it aside"
    if not fs.exists(path):
        group.add(WARNING, "checkpoint-missing", f"the checkpoint file {path} is missing", path, hint)
        return
    try:
        checkpoint = dump_checkpoint(path, fs).checkpoint
    except ShadowStoreError as exc:
        group.add(WARNING, "checkpoint-damaged", exc.message, path, hint)
        return
    position = checkpoint.checkpoint
    if logs.stream is not None and checkpoint.signature != logs.stream:
        what = f"the checkpoint file {path} belongs to another log stream ([{checkpoint.signature}])"
        group.add(WARNING, "checkpoint-foreign", what, path, hint)
    elif position.gen > logs.current_gen:
        what = f"the checkpoint {position} in {path} lies past the current log (generation {logs.current_gen})"
        group.add(WARNING, "checkpoint-mismatch", what, path, hint)
    elif position.gen < logs.current_gen and position.gen not in logs.usable:
        what = (
            f"the checkpoint {position} in {path} names generation {position.gen}, which is "
            f"{logs.why_not.get(position.gen, 'missing')} (-509, the log file for the checkpoint)"
        )
        group.add(WARNING, "checkpoint-mismatch", what, path, hint)


# --- sessions, locks, snapshots, leases ----------------------------------------------------------------------


def _check_sessions(fs: FileSystem, group: GroupFacts, sessions: list[dict[str, Any]] | None) -> None:
    config = group.config
    described = status_path(config.system_dir, config.log_base)
    live = [s for s in sessions or [] if s.get("sg") == group.name]
    for session in live:
        if owner_gone(str(session.get("owner", ""))):
            group.add(
                WARNING,
                "session-orphaned",
                f"the backup session of {group.name!r} in the Information Store service ({describe_session(session)}) "
                "belongs to a program that is gone; until its lease lapses every backup of it is refused (-505)",
                group.name,
                f"'shadowstore backup abort --sg {group.name!r}' ends it now (or 'shadowstore doctor --fix')",
            )
    owner_alive = group.holder is not None and (sessions is None or bool(live))
    if fs.exists(described) and not owner_alive:
        data = _read_json(fs, described)
        group.add(
            WARNING,
            "session-stale",
            f"{described} describes a backup session ({describe_session(data)}) that no process runs: its owner "
            "ended without ending it (killed, or it crashed)",
            described,
            "it blocks no backup (it is never trusted), but it reads as 'backup in progress'; 'shadowstore doctor "
            "--fix' sets it aside ('shadowstore backup abort' removes it)",
        )
    request = abort_request_path(config.system_dir, config.log_base)
    if fs.exists(request) and not owner_alive:
        group.add(
            INFO,
            "abort-request-stale",
            f"{request} asks to end a backup session that no process runs",
            request,
            "harmless (a new session ignores it); 'shadowstore doctor --fix' sets it aside",
        )


def _check_lock(fs: FileSystem, group: GroupFacts, lock: str) -> None:
    if group.holder is not None or not any(s.dirty for s in group.stores) or not fs.exists(lock):
        return
    owner = read_file(fs, lock).decode("utf-8", "replace").strip() or "a process"
    group.add(
        INFO,
        "lock-stale",
        f"{lock} was last taken by {owner}, which had the storage group mounted and ended without dismounting it; "
        "the lock died with that process",
        lock,
        "nothing to do: the lock blocks nothing (the next mount takes it); the stores it left in Dirty Shutdown "
        "are named above",
    )


def _check_snapshots(group: GroupFacts) -> None:
    config = group.config
    for folder in dict.fromkeys((config.log_dir, config.system_dir, config.data_dir)):
        snapshots = os.path.join(folder, snapshotfolders.SNAPSHOTS)
        for name in clone.folders_in(snapshots):
            path = os.path.join(snapshots, name)
            alive, why = snapshotfolders.judge_folder(path)
            if not alive:
                group.add(
                    WARNING,
                    "snapshot-leftover",
                    f"the shadow copy {path} was left by a job that did not finish ({why})",
                    path,
                    "the next shadow-copy backup removes it ('shadowstore backup run --method snapshot'); doctor "
                    "deletes nothing",
                )


def _lease_findings(target: Target, home_id: str) -> list[Finding]:
    try:
        sets = list_sets(target, home=home_id)
    except BackupTargetError as exc:
        return [Finding(INFO, "target-unreadable", exc.message, target.url, exc.hint or "check the target")]
    return [
        Finding(
            INFO,
            "lease-stale",
            f"backup set {info.backup_id} of {info.sg!r} has no manifest and its lease is dead "
            f"({info.lease_note or 'no lease'}): a backup that failed or was killed; it blocks no backup",
            f"{target.url}/{info.folder}",
            f"'shadowstore backup prune --to {target.url} --keep-full N --yes' removes incomplete sets",
            info.sg,
        )
        for info in sets
        if info.state == INCOMPLETE
    ]


def _read_json(fs: FileSystem, path: str) -> dict[str, object]:
    try:
        data = json.loads(read_file(fs, path))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
