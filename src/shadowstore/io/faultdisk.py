"""The disk model behind the fault-injecting file system (:mod:`shadowstore.io.faulty`), and what a crash leaves.

A file is an :class:`Inode`: the bytes the program sees (``data``), the bytes on the disk (``durable``) and, in
order, the changes made since the last fsync (``pending``). A folder is a :class:`Dir` with the entries the
program sees and the entries on the disk; a change to its entries that is not durable yet is a :class:`DirOp`,
kept in one list for the whole file system in the order the changes were made. Paths are absolute and
normalized (:func:`norm`).

:func:`crash_dirs` turns that state into the folders a restarted machine finds, under the crash policies that
:mod:`shadowstore.io.faulty` describes: folder changes reach the disk in the order they were made (a journaling
file system), so a crash keeps every synced change and a prefix of the others; each file keeps its durable bytes
plus none, some sectors of, or all of its pending changes.
"""

from __future__ import annotations

import itertools
import os
import random
from dataclasses import dataclass, field

from shadowstore.io.fs import SECTOR_SIZE

_inode_numbers = itertools.count(1)


@dataclass
class Inode:
    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""
    # Unsynced changes in order: ("write", offset, bytes) or ("size", new_size).
    pending: list[tuple] = field(default_factory=list)
    ino: int = field(default_factory=lambda: next(_inode_numbers))
    mtime_ns: int = 0

    def sync(self) -> None:
        """The pending changes reach the disk (not ``data``: what an earlier failed fsync lost stays lost)."""
        if self.pending:
            self.durable = bytes(_apply(bytearray(self.durable), self.pending))
            self.pending.clear()

    def lose_pending(self) -> None:
        """A failed fsync, as Linux has it: the unsynced changes never reach the disk, the program still reads
        them from the page cache, and the next fsync has nothing to write and succeeds."""
        self.pending.clear()


@dataclass
class DirOp:
    """One directory change not yet durable. A rename is one op: it happens entirely or not at all."""

    kind: str  # "link", "unlink", "rename" or "mkdir" (dst names the new directory; inode is None)
    src: tuple[str, str] | None  # (directory, name) removed
    dst: tuple[str, str] | None  # (directory, name) added
    inode: Inode | None
    done: bool = False


@dataclass
class Dir:
    volatile: dict[str, Inode] = field(default_factory=dict)
    durable: dict[str, Inode] = field(default_factory=dict)


def crash_dirs(dirs: dict[str, Dir], ops: list[DirOp], mode: str, rng: random.Random) -> dict[str, Dir]:
    """The folders, by path, that a machine finds after a crash under policy ``mode`` ("drop", "tear" or
    "keep") of the file system whose folders are ``dirs`` and whose folder changes are ``ops``; ``rng`` chooses
    what a torn crash keeps. The files in them are new inodes whose content is all durable."""
    # Directory changes reach the disk in the order they were made (a journaling file system):
    # every change made durable by fsync_dir, plus a prefix of the others.
    entries = {path: dict(d.durable) for path, d in dirs.items()}
    pending = [op for op in ops if not op.done]
    keep = len(pending) if mode == "keep" else 0 if mode == "drop" else rng.randint(0, len(pending))
    for op in pending[:keep]:
        apply_op(entries, op)
    lost = [_join(op.dst) for op in pending[keep:] if op.kind == "mkdir"]
    images: dict[int, Inode] = {}
    after: dict[str, Dir] = {}
    for path, names in entries.items():
        if any(path == d or path.startswith(d + "/") for d in lost):
            continue  # its folder, or a folder above it, never reached the disk
        new_dir = Dir()
        for name, inode in names.items():
            if inode.ino not in images:
                images[inode.ino] = _crash_image(inode, mode, rng)
            new_dir.volatile[name] = images[inode.ino]
        new_dir.durable = dict(new_dir.volatile)
        after[path] = new_dir
    return after


def apply_op(entries: dict[str, dict[str, Inode]], op: DirOp) -> None:
    if op.kind == "mkdir":
        return  # a folder's existence is kept by FaultFileSystem._dirs, not in its parent's entries
    if op.src is not None:
        entries.setdefault(op.src[0], {}).pop(op.src[1], None)
    if op.dst is not None:
        assert op.inode is not None
        entries.setdefault(op.dst[0], {})[op.dst[1]] = op.inode


def norm(path: str) -> str:
    return os.path.normpath(os.path.join("/", path))


def split(path: str) -> tuple[str, str]:
    parent, name = os.path.split(norm(path))
    return parent, name


def _join(entry: tuple[str, str] | None) -> str:
    assert entry is not None
    return os.path.join(*entry)


def _apply(data: bytearray, changes: list[tuple]) -> bytearray:
    """``data`` with every change of a pending list applied in order."""
    for change in changes:
        if change[0] == "size":
            size = change[1]
            if size < len(data):
                del data[size:]
            else:
                data.extend(bytes(size - len(data)))
            continue
        _, offset, payload = change
        end = offset + len(payload)
        if end > len(data):
            data.extend(bytes(end - len(data)))
        data[offset:end] = payload
    return data


def _crash_image(inode: Inode, mode: str, rng: random.Random) -> Inode:
    """The content a file has after a crash: its durable bytes plus some or all unsynced changes."""
    data = bytearray(inode.durable)
    if mode == "keep":  # a process crash: the page cache survives, failed fsync or not
        return Inode(data=bytearray(inode.data), durable=bytes(inode.data))
    for change in inode.pending:
        if change[0] == "size":
            if mode == "keep" or (mode == "tear" and rng.random() < 0.5):
                size = change[1]
                if size < len(data):
                    del data[size:]
                else:
                    data.extend(bytes(size - len(data)))
            continue
        _, offset, payload = change
        if mode == "drop":
            continue
        end = offset + len(payload)
        if mode == "keep":
            pieces = [(offset, end)]
        else:
            first = offset - offset % SECTOR_SIZE
            bounds = [max(offset, s) for s in range(first, end, SECTOR_SIZE)] + [end]
            pieces = [(a, b) for a, b in itertools.pairwise(bounds) if rng.random() < 0.5]
        for a, b in pieces:
            if b > len(data):
                data.extend(bytes(b - len(data)))
            data[a:b] = payload[a - offset : b - offset]
    return Inode(data=data, durable=bytes(data))
