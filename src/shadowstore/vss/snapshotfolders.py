"""Snapshot folders: where a provider puts a shadow copy, who made it, and how the next job finds and removes
one that a dead job left (the layout is in vss/providers.py's module documentation and docs/formats.md).

A folder is ``<base>/.shadowstore-snapshots/<snapshot id>/`` holding ``owner.json`` and ``data``; it is built
as ``.<id>.<pid>.new`` with its owner file and renamed, so every folder with a final name has one. A process keeps
a registry of the folders it is building or whose ``Snapshot`` is still referenced, so that a long-lived
process (the service) never removes its own live snapshot while sweeping.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from shadowstore.errors import SnapshotProviderError
from shadowstore.io import clone

SNAPSHOTS = ".shadowstore-snapshots"
OWNER = "owner.json"
DATA = "data"
STAGING = ".new"

# The snapshot folders this process uses, for judging its own folders (module docstring, "Removal"). Requires:
# _in_use_lock for both. Process-wide on purpose: any thread's sweep must see any thread's snapshots.
_in_use_lock = threading.Lock()
_building: set[str] = set()  # folders (final and .new) of snapshot calls still running
_made: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()  # root -> its live Snapshot


def adopt(roots: list[str], snapshot: object, building: list[str]) -> None:
    """A snapshot call finished: its folders are in use while ``snapshot`` is referenced, no longer building."""
    with _in_use_lock:
        _made.update((root, snapshot) for root in roots)
        _building.difference_update(building)


# --- owner files ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The process that made a snapshot folder, as written in its ``owner.json``."""

    pid: int
    start: int  # the process's start time in clock ticks since boot: tells it from a later one with its pid
    boot_id: str
    host: str
    pid_ns: int
    provider: str
    created: float  # seconds since the epoch, for people

    @classmethod
    def this_process(cls, provider: str) -> Owner:
        pid = os.getpid()
        start = clone.process_start(pid) or 0
        return cls(pid, start, clone.boot_id(), socket.gethostname(), clone.pid_namespace(), provider, time.time())

    def to_json(self) -> bytes:
        return json.dumps({"format": "shadowstore-snapshot-owner", **asdict(self)}).encode()

    def is_this_process(self) -> bool:
        return (self.pid, self.boot_id, self.host, self.pid_ns) == (
            os.getpid(),
            clone.boot_id(),
            socket.gethostname(),
            clone.pid_namespace(),
        ) and self.start == clone.process_start(self.pid)

    def judge(self) -> tuple[bool, str]:
        """(alive?, why): alive unless its process is known to be gone (a process of this host, boot and pid
        namespace that no longer runs); a snapshot of another host or namespace is never judged dead."""
        job = f"its job (pid {self.pid}, {self.provider})"
        if self.host != socket.gethostname():
            return True, f"{job} runs on host {self.host}, where this process cannot look"
        if self.boot_id != clone.boot_id():
            return False, f"{job} ran before the last reboot"
        if self.pid_ns != clone.pid_namespace():
            return True, f"{job} runs in another pid namespace, where this process cannot look"
        start = clone.process_start(self.pid)
        if start is None or start != self.start:
            return False, f"{job} is gone"
        return True, f"{job} is running"


def parse_owner(data: bytes | None) -> Owner | None:
    """The owner in ``data``; None when it is not one (a torn or foreign file)."""
    try:
        raw: Any = json.loads(data or b"")
        if not isinstance(raw, dict) or raw.pop("format", None) != "shadowstore-snapshot-owner":
            return None
        owner = Owner(**raw)
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return owner if isinstance(owner.pid, int) and isinstance(owner.start, int) else None


def judge_folder(path: str) -> tuple[bool, str]:
    """(alive?, why) for the snapshot folder ``path``. Without a readable owner file (a crash while it was
    built, or an owner file lost with the page cache) it is dead when its builder's pid, from a ``.new`` name,
    is gone, or when it is older than this boot; otherwise it is kept."""
    with _in_use_lock:
        if path in _building or path in _made:
            return True, "this process is using it"
    owner = parse_owner(clone.read_small(os.path.join(path, OWNER)))
    if owner is not None and owner.is_this_process():
        return False, "this process made it and no longer uses it (a commit the job gave up waiting for)"
    if owner is not None:
        return owner.judge()
    name = os.path.basename(path)
    if name.startswith(".") and name.endswith(STAGING):
        pid = name[: -len(STAGING)].rpartition(".")[2]
        if pid.isdigit() and clone.process_start(int(pid)) is None:
            return False, f"the job that began it (pid {pid}) is gone"
    modified = clone.modified_at(path)
    if modified is not None and modified < clone.boot_time():
        return False, "it has no owner file and is older than this boot"
    return True, "it has no owner file yet; kept until its builder is known to be gone"


def sweep_leftovers(paths: list[str]) -> list[str]:
    """Remove the snapshot folders that dead jobs left beside these files (and in their btrfs subvolumes'
    roots); returns the folders removed. A live job's folder is kept (see :func:`judge_folder`). Tries every
    folder, then raises the first failure as a SnapshotProviderError."""
    removed: list[str] = []
    failures: list[SnapshotProviderError] = []
    for base in _sweep_bases(paths):
        snapshots = os.path.join(base, SNAPSHOTS)
        for name in clone.folders_in(snapshots):
            folder = os.path.join(snapshots, name)
            alive, _why = judge_folder(folder)
            if alive:
                continue
            try:
                remove_root(folder)
            except SnapshotProviderError as exc:
                failures.append(exc)
            else:
                removed.append(folder)
    if failures:
        raise failures[0]
    return removed


def _sweep_bases(paths: Iterable[str]) -> list[str]:
    bases: set[str] = set()
    for path in paths:
        folder = os.path.dirname(os.path.realpath(path))
        if clone.modified_at(folder) is None:
            continue
        bases.add(folder)
        try:
            if clone.fs_type(folder) == clone.BTRFS_SUPER_MAGIC:
                bases.update(root for root in [clone.subvolume_root(folder)] if root)
        except OSError:
            continue
    return sorted(bases)


def build_folder(base: str, snapshot_id: str, provider: str, building: list[str]) -> str:
    """Make ``base/.shadowstore-snapshots/<id>`` with its owner file: built under a ``.new`` name and renamed,
    so a folder with the final name always has its owner file. Both names are added to ``building`` and to
    this process's folders in use first. Raises OSError (EEXIST: the id is in use)."""
    snapshots = os.path.join(base, SNAPSHOTS)
    root = os.path.join(snapshots, snapshot_id)
    staging = os.path.join(snapshots, f".{snapshot_id}.{os.getpid()}{STAGING}")
    with _in_use_lock:
        _building.update((root, staging))
    building += [root, staging]
    for attempt in range(3):
        clone.make_folder(snapshots, parents=True)
        try:
            clone.make_folder(staging)
            break
        except FileNotFoundError:  # why: another job removed the empty snapshots folder just then
            if attempt == 2:
                raise
    try:
        clone.write_new(os.path.join(staging, OWNER), Owner.this_process(provider).to_json())
        _check_free(root)
        clone.rename(staging, root)
    except OSError:
        clone.remove_tree(staging)
        raise
    return root


def give_up(roots: list[str], building: list[str]) -> None:
    """Remove the folders of a snapshot call that failed or was interrupted (errors ignored: the failure to
    report is the one that stopped the call; the next sweep retries)."""
    for root in roots:
        with contextlib.suppress(SnapshotProviderError):
            remove_root(root)
    with _in_use_lock:
        _building.difference_update(building)


def _check_free(root: str) -> None:
    # why not rely on rename: renaming a folder onto an empty folder replaces it without a word
    if clone.modified_at(root) is not None:
        raise OSError(errno.EEXIST, "a snapshot with this id exists", root)


def remove_root(root: str) -> None:
    """Remove one snapshot folder (and the snapshots folder holding it, once empty). Raises
    SnapshotProviderError."""
    try:
        clone.remove_tree(root)
        clone.remove_if_empty(os.path.dirname(root))
    except OSError as exc:
        hint = "remove it by hand"
        if exc.errno == errno.EPERM:
            hint = f"deleting a btrfs snapshot needs root: run 'btrfs subvolume delete {exc.filename}' as root"
        raise SnapshotProviderError(
            f"could not remove snapshot {root}: {exc.strerror} ({exc.filename})", hint=hint
        ) from exc
