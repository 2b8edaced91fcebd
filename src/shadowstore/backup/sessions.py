"""Backup sessions seen from another process: ``backup status`` and ``backup abort``.

A session lives in the memory of the process that owns the storage group; that process describes it in
``E00.backup.json`` and watches for ``E00.backup-abort`` (engine/backupslot.py). A description whose owner no
longer holds the storage group's lock is stale: reported as such and removed, never trusted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time

from shadowstore.engine.backup import describe_session
from shadowstore.engine.backupslot import abort_request_path, status_path
from shadowstore.errors import BackupInProgressError, NoBackupError
from shadowstore.home import ServerHome, is_locked
from shadowstore.io.fs import read_file
from shadowstore.io.replace import atomic_write

ABORT_WAIT_SECONDS = 5.0
_OWNER_PROCESS = re.compile(r"\(pid (\d+) on ([^)\s]+)\)")  # as default_owner names a program


def default_owner() -> str:
    """How a backup program names itself as a session's owner: ``shadowstore backup run (pid N on HOST)``."""
    return f"shadowstore backup run (pid {os.getpid()} on {socket.gethostname()})"


def owner_gone(owner: str) -> bool:
    """Whether the program an owner text names (``... (pid N on HOST)``) is known to be gone: a process of this
    host that no longer exists. An owner on another host, or one the text does not name, is never judged gone."""
    match = _OWNER_PROCESS.search(owner)
    if match is None or match.group(2) != socket.gethostname():
        return False
    pid = int(match.group(1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether process ``pid`` has exited and waits only to be reaped (state Z): killed, under a parent that
    does not reap at once (a container's first process, a shell in the background)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"  # why after ')': the name may hold blanks
    except (OSError, IndexError):
        return False


def running_sessions(home: ServerHome) -> list[dict[str, object]]:
    """Every described session, with ``alive`` telling whether its owner still holds the storage group."""
    found = []
    for config in home.config.storage_groups:
        sg = config.resolved(home.path)
        path = status_path(sg.system_dir, sg.log_base)
        if not home.fs.exists(path):
            continue
        try:
            data = json.loads(read_file(home.fs, path))
        except (OSError, ValueError):
            continue
        data["alive"] = is_locked(home.fs, f"{sg.system_dir}/{sg.log_base}.lock")
        found.append(data)
    return found


def request_abort(home: ServerHome, sg_name: str) -> dict[str, object]:
    """Ask the owner of ``sg_name``'s backup session to end it, and wait (a few seconds) until it has.

    Raises NoBackupError (-520) when no session is running; removes a stale description on the way.
    """
    sg = home.config.find(sg_name).resolved(home.path)
    described = status_path(sg.system_dir, sg.log_base)
    alive = is_locked(home.fs, f"{sg.system_dir}/{sg.log_base}.lock")
    if not home.fs.exists(described):
        raise NoBackupError(f"no backup session is running for {sg_name!r}")
    if not alive:
        with contextlib.suppress(FileNotFoundError):
            home.fs.unlink(described)
        raise NoBackupError(
            f"no backup session is running for {sg_name!r}: its last owner is gone (a stale description was "
            "removed); the next backup can start at once"
        )
    request = abort_request_path(sg.system_dir, sg.log_base)
    atomic_write(home.fs, request, json.dumps({"requester": f"shadowstore backup abort (pid {os.getpid()})"}).encode())
    deadline = time.monotonic() + ABORT_WAIT_SECONDS
    while time.monotonic() < deadline:
        if not home.fs.exists(described):
            return {"sg": sg_name, "ended": True, "message": f"The backup session of {sg_name!r} was ended."}
        time.sleep(0.05)
    return {
        "sg": sg_name,
        "ended": False,
        "message": f"Asked the owner to end the backup session of {sg_name!r}; it has not answered within "
        f"{ABORT_WAIT_SECONDS:.0f} s (it ends the session at its next maintenance cycle).",
    }


def running_elsewhere(home: ServerHome, sg_name: str) -> BackupInProgressError | None:
    """The -505 for a backup of ``sg_name`` that another live process runs, naming its owner, start and lease;
    None when no live process describes one."""
    for session in running_sessions(home):
        if session.get("sg") == sg_name and session["alive"]:
            return BackupInProgressError(
                f"a backup session is already running for {sg_name!r} in another process: {describe_session(session)}"
            )
    return None
