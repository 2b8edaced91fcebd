"""Whether one of our files may change while a tool reads it: a process has it open for writing, or it is a
store, the current log or the checkpoint of a storage group that is mounted (its lock is held).

eseutil /k and /g read a file front to back and must see one state of it; they refuse a file in use rather
than read a consistent copy of a mounted store (out of scope: dismount first). Only looks: nothing is locked.
"""

from __future__ import annotations

import os

from shadowstore import config as cfg
from shadowstore.errors import ShadowStoreError, StorageGroupBusyError
from shadowstore.format.logfile import checkpoint_name, current_log_name
from shadowstore.io.fs import FileSystem

ROLE_STORE, ROLE_LOG, ROLE_CHECKPOINT = "store", "log", "checkpoint"


def refuse_if_in_use(fs: FileSystem, path: str, home: str | None, role: str) -> None:
    """Raise StorageGroupBusyError when ``path`` may change while it is read: a process has it open for
    writing, or it is a store, the current log or the checkpoint (``role``: "store", "log", "checkpoint") of
    a storage group of the server home ``home`` whose lock is held. Looks only: nothing is locked."""
    writers = _writers(path)
    holder = None
    group = _owning_group(fs, path, home, role) if home else None
    if group is not None:
        holder = fs.lock_holder(os.path.join(group.system_dir, f"{group.log_base}.lock"))
    if not writers and holder is None:
        return
    who = holder or "; ".join(writers)
    where = f"storage group {group.name!r} ({group.log_base}), " if group is not None else ""
    named = f'--home {home} dismount "{group.name}"' if group is not None else 'dismount "<storage group>"'
    raise StorageGroupBusyError(
        f"{path} is in use: {where}mounted or held open by {who}; it can change while it is read, so "
        "dismount the storage group first",
        hint=f"dismount the storage group first with: shadowstore {named} (or stop that process), then run eseutil "
        "again; checking a consistent copy of a mounted store is not supported",
        file=path,
    )


def _owning_group(fs: FileSystem, path: str, home: str, role: str) -> cfg.SgConfig | None:
    """The storage group of ``home``'s configuration that ``path`` is the store, current log or checkpoint
    of; None when there is none or no readable configuration."""
    try:
        config = cfg.load(fs, home)
    except (ShadowStoreError, OSError):
        return None
    for group in (g.resolved(home) for g in config.storage_groups):
        if role == "store":
            places = [group.store_path(s) for s in group.stores]
        elif role == "log":
            places = [os.path.join(group.log_dir, current_log_name(group.log_base))]
        else:
            places = [os.path.join(group.system_dir, checkpoint_name(group.log_base))]
        if any(_same_file(fs, path, place) for place in places):
            return group
    return None


def _same_file(fs: FileSystem, a: str, b: str) -> bool:
    first, second = fs.stat(a), fs.stat(b)
    return first is not None and second is not None and (first.dev, first.ino) == (second.dev, second.ino)


def _writers(path: str) -> list[str]:
    """ "pid N (command)" of each process that has ``path`` open for writing, as far as /proc lets us see
    (this process included; other users' processes are not visible unless we are root)."""
    # why a door to the OS outside io/: a read-only probe of /proc, Linux's list of open files, that only this
    # check needs; it touches no store, log or checkpoint file
    try:
        target = os.stat(path)  # noqa: PTH116
    except OSError:
        return []
    found = []
    for pid in filter(str.isdigit, _listdir("/proc")):
        for fd in _listdir(f"/proc/{pid}/fd"):
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")  # noqa: PTH116
                if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino) or not _writable(pid, fd):
                    continue
            except OSError:
                continue
            found.append(f"pid {pid} ({_command(pid)})")
            break
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)  # noqa: PTH208
    except OSError:
        return []


def _writable(pid: str, fd: str) -> bool:
    with open(f"/proc/{pid}/fdinfo/{fd}") as info:
        for line in info:
            if line.startswith("flags:"):
                return int(line.split()[1], 8) & os.O_ACCMODE != os.O_RDONLY
    return False


def _command(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return "?"
    return " ".join(w.decode("utf-8", "replace") for w in words[:4] if w)
