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
    "done": "every file is in place and the storage group mounts; the copies the restore made are still in its "
    "staging folder",
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
    started, the ``journal`` path, ``resume``, the command that carries it on, ``undo``, the one that undoes it
    ("" when there is none), a ``note`` (before phase "place": the resume command needs the --from the first
    run had), and ``running``: the owner of the storage group's lock when a process holds it (the restore may
    be running). Reads
    only; a journal that cannot be read is reported with phase "unknown" and ``restore finish`` to resume."""
    return [entry for config in _destinations(home) if (entry := unfinished_restore(home, config)) is not None]


def unfinished_restore(home: ServerHome, config: SgConfig) -> dict[str, Any] | None:
    """The unfinished restore into storage group ``config`` (resolved), as ``unfinished_restores`` describes
    each, or None when there is none."""
    path = restore_journal_path(config)
    if not home.fs.exists(path):
        return None
    try:
        data = load_journal(home.fs, path).data
    except OSError:
        data = {}
    entry = _unfinished(config.name, path, data, home.home_id)
    # why look at the lock: a restore running now has a journal too; it is not one to resume
    holder = home.fs.lock_holder(os.path.join(config.system_dir, f"{config.log_base}.lock"))
    entry["running"] = holder or ""
    return entry


def _destinations(home: ServerHome) -> list[SgConfig]:
    """The storage groups a restore may go into: the configured ones, and the recovery storage group where a
    first restore into it works before the configuration names it."""
    from shadowstore.restore.run import RECOVERY_BASE, RECOVERY_SG  # why here: run.py imports this module

    groups = [g.resolved(home.path) for g in home.config.storage_groups]
    if all(g.name != RECOVERY_SG for g in groups):
        groups.append(SgConfig(RECOVERY_SG, RECOVERY_BASE, RECOVERY_SG, RECOVERY_SG, RECOVERY_SG).resolved(home.path))
    return groups


def _unfinished(dest: str, path: str, data: dict[str, Any], home_id: str) -> dict[str, Any]:
    from shadowstore.restore.run import INTO_PLACE  # why here: run.py imports this module

    plan = _table(data, "plan")
    phase = str(data.get("phase") or "unknown")
    into = str(data.get("into") or "")
    before_place = phase in ("fetch", "recover")
    entry: dict[str, Any] = {
        "sg": dest,
        "source_sg": str(plan.get("sg") or ""),
        "from_home": str(plan.get("home") or ""),
        "into": into,
        "phase": phase,
        "reached": PHASES.get(phase, f"its journal {path} cannot be read"),
        "started": _started(data.get("started")),
        "journal": path,
        "resume": shlex.join(["shadowstore", "restore", "finish", "--sg", dest]),
        # why no undo for the recovery group once it places files: finishing it is always safe (restore/abort.py)
        "undo": shlex.join(["shadowstore", "restore", "abort", "--sg", dest])
        if (into == INTO_PLACE and phase != "done") or before_place
        else "",
        "note": "",
    }
    if before_place and plan:
        entry["resume"] = _run_again(data, home_id)
        entry["note"] = "give it the --from the restore was started with, if it was not the configured backup target"
    return entry


def _run_again(data: dict[str, Any], home_id: str) -> str:
    """The ``restore run`` command that resumes the restore of journal ``data``: the command line the journal
    recorded (``command``, a list of arguments after ``shadowstore``), else one made from its plan: the
    storage group, the home, how far, and where to. The backup target is not in the journal (the caller says to
    add the --from the first run had), nor sets left out with --skip-set: a command that plans differently
    starts the restore again from the beginning, which is safe before phase "place"."""
    from shadowstore.restore.run import INTO_PLACE  # why here: run.py imports this module

    recorded = data.get("command")
    if isinstance(recorded, list) and all(isinstance(a, str) for a in recorded):
        return shlex.join(["shadowstore", *recorded])
    plan = _table(data, "plan")
    in_place = data.get("into") == INTO_PLACE
    args = ["shadowstore", "restore", "run", "--sg", str(plan.get("sg"))]
    if plan.get("home") and plan.get("home") != home_id:
        args += ["--from-home", str(plan["home"])]
    target = _table(plan, "target")
    if target.get("until"):
        args += ["--until", str(target["until"])]
    elif target.get("until_gen"):
        args += ["--until-gen", str(target["until_gen"])]
    elif in_place and plan.get("live_from") is None:
        args.append("--stop-at-backup")  # why: in place, rolling forward through the live logs is the default
    if not in_place and plan.get("live_from") is not None:
        args.append("--roll-forward-live")
    args += ["--in-place", "--yes"] if in_place else ["--into-recovery-group"]
    return shlex.join(args)


def _started(stamp: object) -> str:
    """The journal's start stamp (``20261125T084500.123456Z``, made by open_journal) as ISO 8601 UTC."""
    try:
        return dt.datetime.strptime(str(stamp), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC).isoformat()
    except ValueError:
        return str(stamp or "")


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    """``data[key]`` when it is a table, else an empty one (a journal is read, never trusted to be whole)."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}
