"""The journal of a restore: ``<system folder>/restore/restore.json`` of the destination storage group.

It records the plan, the destination and the phase reached ("fetch", "recover", "place", "done") and is replaced
atomically at each step, so a restore killed at any point can be continued by running it again (or, once it
is placing files, finished with ``restore finish`` from the journal alone). The staging folder beside it holds
``db/`` and ``logs/``: copies fetched from the backups and their recovered forms, always made again on demand.
A mount reads the journal only to refuse a storage group a restore is half-way through filling
(engine/mountlog.py). Layout: docs/formats.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from typing import Any

from shadowstore.errors import RestoreError
from shadowstore.io.fs import FileSystem, read_file
from shadowstore.io.replace import atomic_write, remove_temporaries_of

JOURNAL_FORMAT = "shadowstore-restore"


@dataclass
class Journal:
    path: str
    data: dict[str, Any] = field(default_factory=dict)

    def save(self, fs: FileSystem) -> None:
        atomic_write(fs, self.path, (json.dumps(self.data, indent=2) + "\n").encode())


def load_journal(fs: FileSystem, path: str) -> Journal:
    """The journal at ``path`` (an unreadable one reads as empty: it predates any placing of files)."""
    try:
        data = json.loads(read_file(fs, path))
    except ValueError:
        data = {}
    return Journal(path, data if isinstance(data, dict) else {})


def open_journal(fs: FileSystem, path: str, plan: dict[str, Any], into: str, dest: str) -> tuple[Journal, bool]:
    """The journal of this restore: the one left by an interrupted run of the same restore, or a new one.

    Requires: the destination storage group's lock is held (no other process saves this journal), since the
    temporary files an interrupted save left beside it are removed here."""
    staging = os.path.dirname(path)
    remove_temporaries_of(fs, path)
    journal = Journal(path)
    wanted = {"format": JOURNAL_FORMAT, "plan": plan, "into": into, "destination": dest}
    if fs.exists(journal.path):
        old = load_journal(fs, journal.path).data
        same = all(old.get(k) == v for k, v in wanted.items())
        if same and old.get("phase") != "done":
            journal.data = old
            return journal, True
        if old.get("phase") == "place" and not same:
            raise RestoreError(
                f"an earlier restore into {dest!r} (started {old.get('started')}) was interrupted while putting its "
                f"files in place ({journal.path})",
                hint=f"finish it first: shadowstore restore finish --sg {dest!r} (it needs no backup target)",
            )
        clear_staging(fs, staging)
    fs.makedirs(staging)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")  # names this restore's quarantine folder
    journal.data = {**wanted, "phase": "fetch", "started": stamp}
    journal.save(fs)
    return journal, False


def clear_staging(fs: FileSystem, staging: str) -> None:
    """Remove the staging folder: copies of backup files and their recovered forms, all made again on demand."""
    if not fs.exists(staging):
        return
    for sub in ("db", "logs"):
        folder = os.path.join(staging, sub)
        if fs.exists(folder):
            for name in fs.listdir(folder):
                fs.unlink(os.path.join(folder, name))
            fs.fsync_dir(folder)
            fs.rmdir(folder)
    for name in fs.listdir(staging):
        fs.unlink(os.path.join(staging, name))
    fs.fsync_dir(staging)
    fs.rmdir(staging)
    fs.fsync_dir(os.path.dirname(staging))
