"""``restore abort``: undo a restore in place that was interrupted, from its journal alone.

A restore that stopped before placing anything changed nothing of the storage group: aborting it removes its
copies and its journal. One that stopped while placing files (restore/run.py, phase "place") has moved some
stores, and perhaps the old log stream, into its quarantine folders; aborting puts every displaced file back
where it was and moves what the restore had put in its place into ``aborted-restore-<time>/`` beside them.
Nothing is deleted but the restore's own copies, and every step can run again after a crash: each looks at
where the files are now. The storage group is then as it was before the restore, and mounts.

A restore killed once it had placed every file (its journal says "done") is finished, not undone: abort refuses
and names where the files it replaced are.

A restore into the recovery storage group never touches a live storage group: finishing it is always safe
(``restore finish``), so it is not aborted once it places files.
"""

from __future__ import annotations

import os

from shadowstore.config import SgConfig
from shadowstore.engine import layout
from shadowstore.engine.logstream import LogSet
from shadowstore.errors import RestoreError
from shadowstore.format.logfile import checkpoint_name
from shadowstore.home import ServerHome
from shadowstore.io.fs import FileSystem
from shadowstore.restore.journal import load_journal
from shadowstore.restore.phases import db_staging
from shadowstore.restore.run import (
    INTO_PLACE,
    INTO_RECOVERY_GROUP,
    RECOVERY_SG,
    clear_copies,
    interrupted_restore,
    lock_destination,
)


def abort_restore(home: ServerHome, sg_name: str) -> dict[str, object]:
    """Undo the interrupted restore into ``sg_name``; returns what was done. Raises NotFoundError (none to
    abort), RestoreInProgressError (one is running), RestoreError (mounted; a recovery-group restore that is
    placing files)."""
    dest, path = interrupted_restore(home, sg_name)
    into = INTO_RECOVERY_GROUP if dest.name == RECOVERY_SG else INTO_PLACE
    fs = home.fs
    lock = lock_destination(fs, dest, into)
    try:
        journal = load_journal(fs, path)
        staging = os.path.dirname(path)
        moved: list[str] = []
        if journal.data.get("phase") == "done":
            # why refuse: every file is in place and the journal only waits to be cleared; removing it as if
            # nothing had changed would leave the user believing the old stores were back
            stamp = f"restore-{journal.data.get('started')}"
            raise RestoreError(
                f"the restore into {dest.name!r} had finished: its stores are in place, and what it replaced is in "
                f"{os.path.join(dest.log_dir, 'quarantine', stamp)} (and the same folder beside the stores); "
                "there is nothing left to undo",
                hint=f"shadowstore restore finish --sg {dest.name!r} clears what it left behind",
            )
        if journal.data.get("phase") == "place":
            if into == INTO_RECOVERY_GROUP:
                raise RestoreError(
                    "the restore into the recovery storage group was placing its files; it touches no live "
                    "storage group, so finish it instead",
                    hint=f"shadowstore restore finish --sg '{RECOVERY_SG}'",
                )
            stamp = f"restore-{journal.data['started']}"
            moved += _put_back_stores(fs, dest, journal.data, stamp)
            moved += _put_back_stream(fs, dest, stamp)
            for folder in (dest.log_dir, dest.data_dir, dest.system_dir):
                _remove_empty(fs, os.path.join(folder, "quarantine", stamp))
        clear_copies(fs, dest, staging)
        home.events.emit(205, sg=dest.name, sync=True)
        return {"sg": dest.name, "phase": journal.data.get("phase"), "moved_back": moved}
    finally:
        lock.release()


def _remove_empty(fs: FileSystem, folder: str) -> None:
    """Remove ``folder`` and its subfolders if no file is left in them (everything was put back)."""
    try:
        names = fs.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return  # gone already, or a file: kept
    for name in names:
        _remove_empty(fs, os.path.join(folder, name))
    if not fs.listdir(folder):
        fs.rmdir(folder)
        fs.fsync_dir(os.path.dirname(folder))


def _aside(quarantine: str, stamp: str) -> str:
    return os.path.join(os.path.dirname(quarantine), f"aborted-{stamp}")


def _move(fs: FileSystem, source: str, target: str) -> None:
    """Rename ``source`` to ``target`` (within one file system) and make both folders durable."""
    fs.makedirs(os.path.dirname(target))
    fs.rename(source, target)
    fs.fsync_dir(os.path.dirname(target))
    fs.fsync_dir(os.path.dirname(source))


def _put_back_stores(fs: FileSystem, dest: SgConfig, data: dict[str, object], stamp: str) -> list[str]:
    quarantine = os.path.join(dest.data_dir, "quarantine", stamp)
    moved = []
    plan = data["plan"]
    assert isinstance(plan, dict)
    for d in plan["databases"]:
        name = d["file"]
        live, original = os.path.join(dest.data_dir, name), os.path.join(quarantine, name)
        placed = not fs.exists(os.path.join(db_staging(dest), name))  # the staged copy was moved in
        if placed and fs.exists(live):
            _move(fs, live, layout.free_name(fs, os.path.join(_aside(quarantine, stamp), name)))
        if fs.exists(original) and not fs.exists(live):
            _move(fs, original, live)
            moved.append(live)
    return moved


def _put_back_stream(fs: FileSystem, dest: SgConfig, stamp: str) -> list[str]:
    """Move the new log stream aside and the old one back, when the restore had replaced it."""
    logs_kept = os.path.join(dest.log_dir, "quarantine", stamp, "logs")
    checkpoint_kept = os.path.join(dest.system_dir, "quarantine", stamp, "logs", checkpoint_name(dest.log_base))
    if not fs.exists(logs_kept):
        return []
    aside = os.path.join(_aside(os.path.join(dest.log_dir, "quarantine", stamp), stamp), "logs")
    current = LogSet.scan(fs, dest.log_dir, dest.log_base)
    for file in [*current.archived.values(), current.current, current.tmp, *current.reserves]:
        if file is not None and fs.exists(file):
            _move(fs, file, layout.free_name(fs, os.path.join(aside, os.path.basename(file))))
    checkpoint = os.path.join(dest.system_dir, checkpoint_name(dest.log_base))
    if fs.exists(checkpoint_kept) and fs.exists(checkpoint):
        _move(fs, checkpoint, layout.free_name(fs, os.path.join(aside, os.path.basename(checkpoint))))
    moved = []
    for name in sorted(fs.listdir(logs_kept)):
        target = os.path.join(dest.system_dir if name == checkpoint_name(dest.log_base) else dest.log_dir, name)
        if not fs.exists(target):
            _move(fs, os.path.join(logs_kept, name), target)
            moved.append(target)
    if fs.exists(checkpoint_kept) and not fs.exists(checkpoint):
        _move(fs, checkpoint_kept, checkpoint)
        moved.append(checkpoint)
    return moved
