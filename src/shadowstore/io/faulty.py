"""A fault-injecting, in-memory file system for crash and corruption tests.

:class:`FaultFileSystem` implements :class:`shadowstore.io.fs.FileSystem` in memory and keeps, for every file
and directory, what is durable (synced) apart from what the program sees. :meth:`FaultFileSystem.crash` turns
the current state into the state a machine would find after power loss, under one of three policies:

* ``"drop"``: every unsynced write and every unsynced directory change is lost (a new directory is a change of
  its parent: it is lost with everything in it until the parent is synced, which ``makedirs`` does);
* ``"tear"``: each unsynced write reaches the disk only in part, whole 512-byte sectors chosen at random,
  and each directory keeps a random prefix of its unsynced changes;
* ``"keep"``: everything written reached the disk (a process crash rather than a power loss).

Faults are armed explicitly: :meth:`arm_crash` stops the program at a named crash point (the engine calls
``fs.crash_point(name)`` at the instants the tests cut), :meth:`fail_fsync` makes the next fsync fail with EIO
the way Linux fails one (the file's unsynced writes are dropped for good and the error is reported once: a
later fsync succeeds and makes nothing durable), and ``capacity`` makes writes beyond that many bytes fail with
ENOSPC. A crashed file system refuses every further call with :class:`SimulatedCrash`, a ``BaseException`` so
that no engine error handler swallows it.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from shadowstore.errors import StorageGroupBusyError
from shadowstore.io.blockread import BlockReader, BufferedBlocks
from shadowstore.io.directwrite import PositionalWriter
from shadowstore.io.fs import SECTOR_SIZE, FileStat

_inode_numbers = itertools.count(1)


class SimulatedCrash(BaseException):
    """The program 'lost power' here. Raised at an armed crash point and by every call after a crash."""


@dataclass
class _Inode:
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
class _DirOp:
    """One directory change not yet durable. A rename is one op: it happens entirely or not at all."""

    kind: str  # "link", "unlink", "rename" or "mkdir" (dst names the new directory; inode is None)
    src: tuple[str, str] | None  # (directory, name) removed
    dst: tuple[str, str] | None  # (directory, name) added
    inode: _Inode | None
    done: bool = False


@dataclass
class _Dir:
    volatile: dict[str, _Inode] = field(default_factory=dict)
    durable: dict[str, _Inode] = field(default_factory=dict)


class FaultFile:
    """An open file of a :class:`FaultFileSystem`; it follows its inode across renames and unlinks."""

    def __init__(self, fs: FaultFileSystem, inode: _Inode, path: str, readonly: bool) -> None:
        self._fs = fs
        self._inode = inode
        self.path = path
        self._readonly = readonly
        self._closed = False

    def pread(self, size: int, offset: int) -> bytes:
        with self._fs._guard():
            return bytes(self._inode.data[offset : offset + size])

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        with self._fs._guard():
            self._fs._check_write(self, "write")
            data = bytes(data)
            end = offset + len(data)
            grow = max(0, end - len(self._inode.data))
            self._fs._reserve(grow)
            if grow:
                self._inode.data.extend(bytes(grow))
            self._inode.data[offset:end] = data
            self._inode.pending.append(("write", offset, data))
            self._fs._tick(self._inode)

    def fsync(self) -> None:
        with self._fs._guard():
            try:
                self._fs._check_fsync(self.path)
            except OSError:
                self._inode.lose_pending()
                raise
            self._inode.sync()

    fdatasync = fsync

    def size(self) -> int:
        with self._fs._guard():
            return len(self._inode.data)

    def truncate(self, size: int) -> None:
        with self._fs._guard():
            self._fs._check_write(self, "truncate")
            grow = max(0, size - len(self._inode.data))
            self._fs._reserve(grow)
            if size < len(self._inode.data):
                del self._inode.data[size:]
            else:
                self._inode.data.extend(bytes(grow))
            self._inode.pending.append(("size", size))

    def allocate(self, offset: int, length: int) -> None:
        with self._fs._guard():
            end = offset + length
            if end > len(self._inode.data):
                self._fs._check_write(self, "allocate")
                grow = end - len(self._inode.data)
                self._fs._reserve(grow)
                self._inode.data.extend(bytes(grow))
                self._inode.pending.append(("size", end))

    def stat(self) -> FileStat:
        with self._fs._guard():
            return self._fs._stat_inode(self._inode)

    def read_blocks(self, offset: int, end: int, block_size: int) -> BlockReader:
        return BufferedBlocks(self.pread, offset, end, block_size)

    def stream_writer(self) -> PositionalWriter:
        return PositionalWriter(self.pwrite)

    def close(self) -> None:
        self._closed = True


class _Lock:
    def __init__(self, fs: FaultFileSystem, path: str, inode: _Inode) -> None:
        self._fs = fs
        self._path = path
        self._inode = inode

    def path_intact(self) -> bool:
        with self._fs._guard():
            directory = self._fs._dirs.get(os.path.dirname(self._path))
            return directory is not None and directory.volatile.get(os.path.basename(self._path)) is self._inode

    def release(self) -> None:
        with self._fs._mutex:
            self._fs._locks.pop(self._path, None)


class FaultFileSystem:
    """In-memory file system with durable/volatile state and armed faults. Thread-safe."""

    def __init__(self, *, capacity: int | None = None, seed: int = 0) -> None:
        self._dirs: dict[str, _Dir] = {"/": _Dir()}
        self._ops: list[_DirOp] = []
        self._mutex = threading.RLock()
        self._locks: dict[str, str] = {}  # path -> owner; kept by path: a file recreated there is still locked
        self._mutexes: dict[str, threading.Lock] = {}  # path -> the lock of locked(path)
        self._crashed = False
        self._crash_points: dict[str, int] = {}
        self._fsync_failures: list[list] = []  # [path_contains or None, fsyncs to let through first]
        self._clock = itertools.count(1)
        self.capacity = capacity
        self.rng = random.Random(seed)
        self.points_seen: list[str] = []
        self.fsyncs_seen: list[str] = []  # the path of every fsync asked for, failed or not (directories too)

    # --- faults ------------------------------------------------------------------------------------------

    def arm_crash(self, point: str, after: int = 0) -> None:
        """Raise :class:`SimulatedCrash` the ``after``-th time (from 0) the engine reaches ``point``."""
        with self._mutex:
            self._crash_points[point] = after

    def fail_fsync(self, path_contains: str | None = None, *, after: int = 0) -> None:
        """Make the next fsync (of a path containing ``path_contains``, if given) fail with EIO; with ``after``,
        the one after that many matching fsyncs succeeded. Each armed failure fires once."""
        with self._mutex:
            self._fsync_failures.append([path_contains, after])

    def copy(self) -> FaultFileSystem:
        """An independent image of everything written so far (like copying a disk); this one goes on."""
        with self._mutex:
            return self._image("keep", random.Random(0))

    def crash(self, mode: str = "drop", seed: int | None = None) -> FaultFileSystem:
        """Return the file system a restarted machine would see; this one refuses every further call."""
        if mode not in ("drop", "tear", "keep"):
            raise ValueError(f"unknown crash mode {mode!r}")
        with self._mutex:
            self._crashed = True
            return self._image(mode, random.Random(seed) if seed is not None else self.rng)

    def _image(self, mode: str, rng: random.Random) -> FaultFileSystem:
        """The disk image under crash policy ``mode``. Requires: _mutex is held."""
        after = FaultFileSystem(capacity=self.capacity, seed=rng.randrange(1 << 30))
        # Directory changes reach the disk in the order they were made (a journaling file system):
        # every change made durable by fsync_dir, plus a prefix of the others.
        entries = {path: dict(d.durable) for path, d in self._dirs.items()}
        pending = [op for op in self._ops if not op.done]
        keep = len(pending) if mode == "keep" else 0 if mode == "drop" else rng.randint(0, len(pending))
        for op in pending[:keep]:
            _apply_op(entries, op)
        lost = [_join(op.dst) for op in pending[keep:] if op.kind == "mkdir"]
        images: dict[int, _Inode] = {}
        for path, names in entries.items():
            if any(path == d or path.startswith(d + "/") for d in lost):
                continue  # its folder, or a folder above it, never reached the disk
            new_dir = _Dir()
            for name, inode in names.items():
                if inode.ino not in images:
                    images[inode.ino] = _crash_image(inode, mode, rng)
                new_dir.volatile[name] = images[inode.ino]
            new_dir.durable = dict(new_dir.volatile)
            after._dirs[path] = new_dir
        return after

    # --- FileSystem ------------------------------------------------------------------------------------

    def open(self, path: str, *, create: bool = False, exclusive: bool = False, readonly: bool = False) -> FaultFile:
        with self._guard():
            directory, name = self._parent(path)
            inode = directory.volatile.get(name)
            if inode is not None and exclusive:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            if inode is None:
                if not (create or exclusive):
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
                inode = _Inode()
                self._link(directory, name, inode)
            return FaultFile(self, inode, _norm(path), readonly)

    def exists(self, path: str) -> bool:
        with self._guard():
            p = _norm(path)
            if p in self._dirs:
                return True
            parent, name = os.path.split(p)
            directory = self._dirs.get(parent)
            return directory is not None and name in directory.volatile

    def stat(self, path: str) -> FileStat | None:
        with self._guard():
            parent, name = os.path.split(_norm(path))
            directory = self._dirs.get(parent)
            inode = directory.volatile.get(name) if directory else None
            return None if inode is None else self._stat_inode(inode)

    def listdir(self, path: str) -> list[str]:
        with self._guard():
            p = _norm(path)
            if p not in self._dirs:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            names = list(self._dirs[p].volatile)
            names += [os.path.basename(d) for d in self._dirs if d != p and os.path.dirname(d) == p]
            return sorted(names)

    def rename(self, src: str, dst: str) -> None:
        with self._guard():
            sdir, sname = self._parent(src)
            ddir, dname = self._parent(dst)
            inode = sdir.volatile.get(sname)
            if inode is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), src)
            del sdir.volatile[sname]
            ddir.volatile[dname] = inode
            self._ops.append(_DirOp("rename", _split(src), _split(dst), inode))

    def unlink(self, path: str) -> None:
        with self._guard():
            directory, name = self._parent(path)
            if name not in directory.volatile:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            self._unlink(directory, name)

    def makedirs(self, path: str) -> None:
        with self._guard():
            missing = []
            p = _norm(path)
            while p not in self._dirs:
                missing.append(p)
                p = os.path.dirname(p)
            for p in reversed(missing):
                self._dirs[p] = _Dir()
                self._ops.append(_DirOp("mkdir", None, _split(p), None))
            for p in reversed(missing):  # as OsFileSystem.makedirs does: the new entry is durable once synced
                self.fsync_dir(os.path.dirname(p))

    def rmdir(self, path: str) -> None:
        with self._guard():
            p = _norm(path)
            if p not in self._dirs:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            directory = self._dirs[p]
            # why durable too: an unlink not yet made durable could bring a name back after a crash
            if directory.volatile or directory.durable or any(os.path.dirname(d) == p for d in self._dirs if d != p):
                raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), path)
            del self._dirs[p]  # modelled as durable at once

    def fsync_dir(self, path: str) -> None:
        with self._guard():
            self._check_fsync(path)
            p = _norm(path)
            entries = {d: self._dirs[d].durable for d in self._dirs}
            for op in self._ops:
                if not op.done and p in (op.src[0] if op.src else None, op.dst[0] if op.dst else None):
                    _apply_op(entries, op)
                    op.done = True
            self._ops = [op for op in self._ops if not op.done]

    def append(self, path: str, data: bytes, *, sync: bool = False) -> None:
        with self._guard():
            handle = self.open(path, create=True)
            handle.pwrite(data, handle.size())
            if sync:
                handle.fsync()

    def lock(self, path: str, owner: str) -> _Lock:
        with self._guard():
            p = _norm(path)
            if p in self._locks:
                raise StorageGroupBusyError(f"{path} is locked by {self._locks[p]}")
            handle = self.open(p, create=True)  # as on the real one: the file exists and names its owner,
            with suppress(OSError):  # unless the disk is full
                handle.truncate(0)
                handle.pwrite(f"{owner}\n".encode(), 0)
            self._locks[p] = owner
            return _Lock(self, p, handle._inode)

    def lock_holder(self, path: str) -> str | None:
        with self._guard():
            return self._locks.get(_norm(path))

    @contextmanager
    def locked(self, path: str) -> Iterator[None]:
        with self._guard():
            self.open(path, create=True).close()
            mutex = self._mutexes.setdefault(_norm(path), threading.Lock())
        with mutex:
            yield

    def free_space(self, path: str) -> int:
        with self._guard():
            if self.capacity is None:
                return 1 << 40
            return max(0, self.capacity - self._used())

    def crash_point(self, name: str) -> None:
        with self._guard():
            self.points_seen.append(name)
            remaining = self._crash_points.get(name)
            if remaining is None:
                return
            if remaining > 0:
                self._crash_points[name] = remaining - 1
                return
            del self._crash_points[name]
            self._crashed = True
            raise SimulatedCrash(name)

    # --- helpers for tests -----------------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        with self._mutex:
            directory, name = self._parent(path)
            return bytes(directory.volatile[name].data)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace a file's content durably, as a user editing the disk would (corruption tests)."""
        with self._mutex:
            directory, name = self._parent(path)
            inode = directory.volatile.get(name)
            if inode is None:
                inode = _Inode()
                directory.volatile[name] = inode
                directory.durable[name] = inode
            inode.data = bytearray(data)
            inode.durable = bytes(data)
            inode.pending.clear()
            self._tick(inode)

    # --- internals -------------------------------------------------------------------------------------

    def _guard(self) -> _Guard:
        return _Guard(self)

    def _parent(self, path: str) -> tuple[_Dir, str]:
        parent, name = os.path.split(_norm(path))
        directory = self._dirs.get(parent)
        if directory is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), parent)
        return directory, name

    def _link(self, directory: _Dir, name: str, inode: _Inode) -> None:
        directory.volatile[name] = inode
        path = next(p for p, d in self._dirs.items() if d is directory)
        self._ops.append(_DirOp("link", None, (path, name), inode))

    def _unlink(self, directory: _Dir, name: str) -> None:
        del directory.volatile[name]
        path = next(p for p, d in self._dirs.items() if d is directory)
        self._ops.append(_DirOp("unlink", (path, name), None, None))

    def _stat_inode(self, inode: _Inode) -> FileStat:
        nlink = sum(1 for d in self._dirs.values() for i in d.volatile.values() if i is inode)
        return FileStat(len(inode.data), 1, inode.ino, inode.mtime_ns, nlink)

    def _used(self) -> int:
        seen: dict[int, int] = {}
        for directory in self._dirs.values():
            for inode in directory.volatile.values():
                seen[inode.ino] = len(inode.data)
        return sum(seen.values())

    def _reserve(self, grow: int) -> None:
        if grow and self.capacity is not None and self._used() + grow > self.capacity:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _check_write(self, handle: FaultFile, what: str) -> None:
        if handle._readonly:
            raise OSError(errno.EBADF, f"{what} on a file opened read-only", handle.path)

    def _check_fsync(self, path: str) -> None:
        self.fsyncs_seen.append(path)
        for i, armed in enumerate(self._fsync_failures):
            pattern = armed[0]
            if pattern is None or pattern in path:
                if armed[1] > 0:
                    armed[1] -= 1
                    continue
                del self._fsync_failures[i]
                raise OSError(errno.EIO, os.strerror(errno.EIO), path)

    def _tick(self, inode: _Inode) -> None:
        inode.mtime_ns = next(self._clock)


class _Guard:
    __slots__ = ("_fs",)

    def __init__(self, fs: FaultFileSystem) -> None:
        self._fs = fs

    def __enter__(self) -> None:
        self._fs._mutex.acquire()
        if self._fs._crashed:
            self._fs._mutex.release()
            raise SimulatedCrash("the file system has crashed")

    def __exit__(self, *exc: object) -> None:
        self._fs._mutex.release()


def _split(path: str) -> tuple[str, str]:
    parent, name = os.path.split(_norm(path))
    return parent, name


def _join(entry: tuple[str, str] | None) -> str:
    assert entry is not None
    return os.path.join(*entry)


def _apply_op(entries: dict[str, dict[str, _Inode]], op: _DirOp) -> None:
    if op.kind == "mkdir":
        return  # a folder's existence is kept by FaultFileSystem._dirs, not in its parent's entries
    if op.src is not None:
        entries.setdefault(op.src[0], {}).pop(op.src[1], None)
    if op.dst is not None:
        assert op.inode is not None
        entries.setdefault(op.dst[0], {})[op.dst[1]] = op.inode


def _norm(path: str) -> str:
    return os.path.normpath(os.path.join("/", path))


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


def _crash_image(inode: _Inode, mode: str, rng: random.Random) -> _Inode:
    """The content a file has after a crash: its durable bytes plus some or all unsynced changes."""
    data = bytearray(inode.durable)
    if mode == "keep":  # a process crash: the page cache survives, failed fsync or not
        return _Inode(data=bytearray(inode.data), durable=bytes(inode.data))
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
    return _Inode(data=data, durable=bytes(data))
