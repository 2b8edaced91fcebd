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

The disk model (inodes, folders, the unsynced folder changes) and what a crash leaves of it are in
:mod:`shadowstore.io.faultdisk`; this module is the file system over it and its faults.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from shadowstore.errors import StorageGroupBusyError
from shadowstore.io.blockread import BlockReader, BufferedBlocks
from shadowstore.io.directwrite import PositionalWriter
from shadowstore.io.faultdisk import Dir, DirOp, Inode, apply_op, crash_dirs, norm, split
from shadowstore.io.fs import FileStat


class SimulatedCrash(BaseException):
    """The program 'lost power' here. Raised at an armed crash point and by every call after a crash."""


class FaultFile:
    """An open file of a :class:`FaultFileSystem`; it follows its inode across renames and unlinks."""

    def __init__(self, fs: FaultFileSystem, inode: Inode, path: str, readonly: bool) -> None:
        self._fs = fs
        self._inode = inode
        self.path = path
        self._readonly = readonly
        self._closed = False

    def pread(self, size: int, offset: int) -> bytes:
        with self._fs._guard():
            self._live()
            return bytes(self._inode.data[offset : offset + size])

    def pread_into(self, buffer: memoryview, offset: int) -> int:
        data = self.pread(len(buffer), offset)
        buffer[: len(data)] = data
        return len(data)

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        with self._fs._guard():
            self._live()
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
            self._live()
            try:
                self._fs._check_fsync(self.path)
            except OSError:
                self._inode.lose_pending()
                raise
            self._inode.sync()

    fdatasync = fsync

    def size(self) -> int:
        with self._fs._guard():
            self._live()
            return len(self._inode.data)

    def truncate(self, size: int) -> None:
        with self._fs._guard():
            self._live()
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
            self._live()
            end = offset + length
            if end > len(self._inode.data):
                self._fs._check_write(self, "allocate")
                grow = end - len(self._inode.data)
                fits = self._fs._room(grow)
                if fits:
                    self._inode.data.extend(bytes(fits))
                    self._inode.pending.append(("size", len(self._inode.data)))
                if fits < grow:
                    # why: as on ext4, a fallocate that runs out of space keeps what it got, the file grown to it
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def stat(self) -> FileStat:
        with self._fs._guard():
            self._live()
            return self._fs._stat_inode(self._inode)

    def read_blocks(self, offset: int, end: int, block_size: int) -> BlockReader:
        return BufferedBlocks(self.pread, offset, end, block_size)

    def stream_writer(self) -> PositionalWriter:
        return PositionalWriter(self.pwrite)

    def close(self) -> None:
        self._closed = True

    def _live(self) -> None:
        """A closed descriptor is EBADF, as on the real system (where its number may even name another file)."""
        if self._closed:
            raise OSError(errno.EBADF, "the file was closed", self.path)


class _Lock:
    def __init__(self, fs: FaultFileSystem, path: str, inode: Inode) -> None:
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
        self._dirs: dict[str, Dir] = {"/": Dir()}
        self._ops: list[DirOp] = []
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
        after._dirs.update(crash_dirs(self._dirs, self._ops, mode, rng))
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
                inode = Inode()
                self._link(directory, name, inode)
            return FaultFile(self, inode, norm(path), readonly)

    def exists(self, path: str) -> bool:
        with self._guard():
            p = norm(path)
            if p in self._dirs:
                return True
            parent, name = os.path.split(p)
            directory = self._dirs.get(parent)
            return directory is not None and name in directory.volatile

    def stat(self, path: str) -> FileStat | None:
        with self._guard():
            parent, name = os.path.split(norm(path))
            directory = self._dirs.get(parent)
            inode = directory.volatile.get(name) if directory else None
            return None if inode is None else self._stat_inode(inode)

    def listdir(self, path: str) -> list[str]:
        with self._guard():
            p = norm(path)
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
            self._ops.append(DirOp("rename", split(src), split(dst), inode))

    def unlink(self, path: str) -> None:
        with self._guard():
            directory, name = self._parent(path)
            if name not in directory.volatile:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            self._unlink(directory, name)

    def makedirs(self, path: str) -> None:
        with self._guard():
            missing = []
            p = norm(path)
            while p not in self._dirs:
                missing.append(p)
                p = os.path.dirname(p)
            for p in reversed(missing):
                self._dirs[p] = Dir()
                self._ops.append(DirOp("mkdir", None, split(p), None))
            for p in reversed(missing):  # as OsFileSystem.makedirs does: the new entry is durable once synced
                self.fsync_dir(os.path.dirname(p))

    def rmdir(self, path: str) -> None:
        with self._guard():
            p = norm(path)
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
            p = norm(path)
            entries = {d: self._dirs[d].durable for d in self._dirs}
            for op in self._ops:
                if not op.done and p in (op.src[0] if op.src else None, op.dst[0] if op.dst else None):
                    apply_op(entries, op)
                    op.done = True
            self._ops = [op for op in self._ops if not op.done]

    def append(self, path: str, data: bytes, *, sync: bool = False) -> None:
        with self._guard():
            handle = self.open(path, create=True)
            fits = self._room(len(data))
            handle.pwrite(data[:fits], handle.size())
            if fits < len(data):
                # why: as on Linux, the writes of an append that runs out of space leave the part that fitted
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if sync:
                handle.fsync()

    def lock(self, path: str, owner: str) -> _Lock:
        with self._guard():
            p = norm(path)
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
            return self._locks.get(norm(path))

    @contextmanager
    def locked(self, path: str) -> Iterator[None]:
        with self._guard():
            self.open(path, create=True).close()
            mutex = self._mutexes.setdefault(norm(path), threading.Lock())
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
                inode = Inode()
                directory.volatile[name] = inode
                directory.durable[name] = inode
            inode.data = bytearray(data)
            inode.durable = bytes(data)
            inode.pending.clear()
            self._tick(inode)

    # --- internals -------------------------------------------------------------------------------------

    def _guard(self) -> _Guard:
        return _Guard(self)

    def _parent(self, path: str) -> tuple[Dir, str]:
        parent, name = os.path.split(norm(path))
        directory = self._dirs.get(parent)
        if directory is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), parent)
        return directory, name

    def _link(self, directory: Dir, name: str, inode: Inode) -> None:
        directory.volatile[name] = inode
        path = next(p for p, d in self._dirs.items() if d is directory)
        self._ops.append(DirOp("link", None, (path, name), inode))

    def _unlink(self, directory: Dir, name: str) -> None:
        del directory.volatile[name]
        path = next(p for p, d in self._dirs.items() if d is directory)
        self._ops.append(DirOp("unlink", (path, name), None, None))

    def _stat_inode(self, inode: Inode) -> FileStat:
        nlink = sum(1 for d in self._dirs.values() for i in d.volatile.values() if i is inode)
        return FileStat(len(inode.data), 1, inode.ino, inode.mtime_ns, nlink)

    def _used(self) -> int:
        seen: dict[int, int] = {}
        for directory in self._dirs.values():
            for inode in directory.volatile.values():
                seen[inode.ino] = len(inode.data)
        return sum(seen.values())

    def _room(self, grow: int) -> int:
        """How many of ``grow`` more bytes fit on the disk."""
        return grow if self.capacity is None else max(0, min(grow, self.capacity - self._used()))

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

    def _tick(self, inode: Inode) -> None:
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
