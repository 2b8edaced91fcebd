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
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shadowstore.config import SgConfig
from shadowstore.engine.mountlog import restore_journal_path
from shadowstore.errors import RestoreError
from shadowstore.io.fs import FileSystem, read_file
from shadowstore.io.replace import atomic_write, remove_temporaries_of

if TYPE_CHECKING:
    from shadowstore.home import ServerHome

JOURNAL_FORMAT = "shadowstore-restore"
# What each phase of an unfinished restore means for the storage group it restores into.
PHASES = {
    "fetch": "copying the backup files into the staging folder; the storage group is not changed yet",
    "recover": "replaying logs in the staging folder; the storage group is not changed yet",
    "place": "putting the restored files in place; the storage group does not mount until the restore is finished",
}


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


# --- reading journals (status, restore plan) --------------------------------------------------------------------


def unfinished_restores(home: ServerHome) -> list[dict[str, Any]]:
    """Every restore into a storage group of ``home`` that was started and not finished (killed, or stopped by
    an error it left to be resumed), read from the journals alone: which storage group (``sg``), from which
    (``source_sg``, ``from_home``), the ``phase`` it reached and what that means (``reached``), when it
    started, the ``journal`` path, and ``resume``, the command that carries it on (``discard``, when the phase
    leaves the storage group unchanged, the command that drops its copies instead). Reads only; never raises
    for a journal it cannot read (it is reported with phase "unknown")."""
    found = []
    for config in _destinations(home):
        path = restore_journal_path(config)
        if not home.fs.exists(path):
            continue
        try:
            data = load_journal(home.fs, path).data
        except OSError:
            data = {}
        if data.get("phase") != "done":
            found.append(_unfinished(config.name, path, data, home.home_id))
    return found


def _destinations(home: ServerHome) -> list[SgConfig]:
    """The storage groups a restore may go into: the configured ones, and the recovery storage group where a
    first restore into it works before the configuration names it."""
    from shadowstore.restore.run import RECOVERY_BASE, RECOVERY_SG  # why here: run.py imports this module

    groups = [g.resolved(home.path) for g in home.config.storage_groups]
    if all(g.name != RECOVERY_SG for g in groups):
        groups.append(SgConfig(RECOVERY_SG, RECOVERY_BASE, RECOVERY_SG, RECOVERY_SG, RECOVERY_SG).resolved(home.path))
    return groups


def _unfinished(dest: str, path: str, data: dict[str, Any], home_id: str) -> dict[str, Any]:
    plan = data.get("plan") if isinstance(data.get("plan"), dict) else {}
    assert isinstance(plan, dict)
    phase = str(data.get("phase") or "unknown")
    finish = shlex.join(["shadowstore", "restore", "finish", "--sg", dest])
    entry: dict[str, Any] = {
        "sg": dest,
        "source_sg": str(plan.get("sg") or ""),
        "from_home": str(plan.get("home") or ""),
        "into": str(data.get("into") or ""),
        "phase": phase,
        "reached": PHASES.get(phase, f"its journal {path} cannot be read"),
        "started": str(data.get("started") or ""),
        "journal": path,
    }
    if phase in ("fetch", "recover") and plan:
        entry["resume"] = _run_again(plan, str(data.get("into") or ""), home_id)
        entry["discard"] = finish
    else:
        entry["resume"] = finish
    return entry


def _run_again(plan: dict[str, Any], into: str, home_id: str) -> str:
    """The ``restore run`` command that resumes the restore of ``plan`` (with the --from the first run had)."""
    args = ["shadowstore", "restore", "run", "--sg", str(plan.get("sg"))]
    if plan.get("home") and plan.get("home") != home_id:
        args += ["--from-home", str(plan["home"])]
    target = plan.get("target") if isinstance(plan.get("target"), dict) else {}
    assert isinstance(target, dict)
    if target.get("until"):
        args += ["--until", str(target["until"])]
    elif target.get("until_gen"):
        args += ["--until-gen", str(target["until_gen"])]
    if plan.get("live_from") is not None:
        args.append("--roll-forward-live")
    args += ["--in-place", "--yes"] if into == "in-place" else ["--into-recovery-group"]
    return shlex.join(args) + " (and the --from it was started with, if any)"
