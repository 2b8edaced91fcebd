"""The single door between ShadowStore and the operating system.

Every byte the engine reads or writes goes through a :class:`FileSystem`. The real one, :class:`OsFileSystem`,
is a thin layer over ``os``; the fault-injecting one (:mod:`shadowstore.io.faulty`) keeps files in memory,
remembers what was synced, and can lose or tear what was not, fail an fsync, run out of space, or stop the
program at a named crash point. Engine code calls :meth:`FileSystem.crash_point` at the instants the crash
tests cut; on the real file system that call does nothing.

Durability contract assumed by the engine (POSIX on a local Linux file system):

* data written with ``pwrite`` is durable only after ``fsync``/``fdatasync`` of that file returns;
* a new name, a rename or an unlink is durable only after ``fsync_dir`` of the directory returns; a rename
  from one directory to another is made durable by syncing both;
* a new directory is durable only once its parent is synced: :meth:`FileSystem.makedirs` does that itself;
* a write that covers several sectors may reach the disk in part; a single 512-byte sector is atomic.

Files are replaced through a temporary file beside them (:mod:`shadowstore.io.replace`); the real file system's
locks are Linux OFD locks (:mod:`shadowstore.io.locks`).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from shadowstore.io import locks
from shadowstore.io.blockread import BlockReader, BufferedBlocks, open_direct
from shadowstore.io.directwrite import DirectWriter

SECTOR_SIZE = 512


@dataclass(frozen=True)
class FileStat:
    """What the engine needs to know about a file to notice that it was replaced."""

    size: int
    dev: int
    ino: int
    mtime_ns: int
    nlink: int


class FileHandle(Protocol):
    """An open file. Offsets are absolute; there is no file position."""

    path: str

    def pread(self, size: int, offset: int) -> bytes: ...

    def pread_into(self, buffer: memoryview, offset: int) -> int:
        """Fill ``buffer`` from ``offset``; returns the bytes read (fewer only at the end of the file)."""

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset`` or raise ``OSError``."""

    def fsync(self) -> None: ...

    def fdatasync(self) -> None: ...

    def size(self) -> int: ...

    def truncate(self, size: int) -> None: ...

    def allocate(self, offset: int, length: int) -> None:
        """Reserve disk space for ``[offset, offset+length)``; raises ``OSError(ENOSPC)`` if there is none."""

    def stat(self) -> FileStat: ...

    def read_blocks(self, offset: int, end: int, block_size: int) -> BlockReader:
        """``[offset, end)`` in blocks of ``block_size`` bytes, for reading a long stretch once (see
        :mod:`shadowstore.io.blockread`): every block must be released, and the reader closed."""

    def stream_writer(self) -> StreamWriter:
        """A writer that appends a long stream from offset 0 of this (empty) file, for writing it once (see
        :mod:`shadowstore.io.directwrite`); durable only after ``fsync``."""

    def close(self) -> None: ...


class StreamWriter(Protocol):
    def __enter__(self) -> StreamWriter: ...

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None: ...

    def write(self, chunk: bytes | memoryview) -> None:
        """Append ``chunk`` (copied before returning); raises the OSError of an earlier write."""

    def finish(self) -> int:
        """Write what remains, wait for every write; returns the bytes written."""

    def close(self) -> None: ...


class Lock(Protocol):
    """A held exclusive lock on a file (see :meth:`FileSystem.lock`)."""

    def path_intact(self) -> bool:
        """Whether the lock file's path still names the file this lock holds (one ``stat``): False once it was
        deleted, moved or replaced. The lock stays exclusive either way; the holder should report it."""

    def release(self) -> None: ...


class FileSystem(Protocol):
    """Operations on paths. Paths are ``str``; directories are created by :meth:`makedirs`."""

    def open(self, path: str, *, create: bool = False, exclusive: bool = False, readonly: bool = False) -> FileHandle:
        """Open ``path``. ``create`` makes it if missing; ``exclusive`` fails if it exists."""

    def exists(self, path: str) -> bool: ...

    def stat(self, path: str) -> FileStat | None:
        """The file's identity and size, or None when there is no such file."""

    def listdir(self, path: str) -> list[str]: ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src`` (durable after :meth:`fsync_dir`)."""

    def unlink(self, path: str) -> None: ...

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its missing parents durably: the parent of each directory created is fsynced
        before this returns. An existing directory is left as it is."""

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path`` (durable after :meth:`fsync_dir` of its parent)."""

    def fsync_dir(self, path: str) -> None: ...

    def append(self, path: str, data: bytes, *, sync: bool = False) -> None:
        """Append all of ``data`` at the end of ``path`` (created if missing; the new name is not synced); with
        ``sync`` the file's data is fsynced before this returns. Raises ``OSError``."""

    def lock(self, path: str, owner: str) -> Lock:
        """Take an exclusive lock on the file ``path`` (created if missing) that dies with this process, and
        write ``owner`` into the file. Raises StorageGroupBusyError naming the holder if it is held, also when
        the holder's file was deleted or replaced since it took the lock."""

    def lock_holder(self, path: str) -> str | None:
        """The owner text of whoever holds the lock on ``path`` (this process included), or None. Looks without
        taking the lock, so it never makes a :meth:`lock` elsewhere fail."""

    def locked(self, path: str) -> AbstractContextManager[None]:
        """Wait for an exclusive lock on the file ``path`` (created if missing) and hold it for a ``with`` block:
        a short critical section shared by every process (the event log's rotation). Writes nothing."""

    def free_space(self, path: str) -> int: ...

    def crash_point(self, name: str) -> None:
        """Called by the engine at named instants; the fault-injecting layer may stop the program here."""


# --- the real file system -------------------------------------------------------------------------------------


def write_all(
    write: Callable[[memoryview, int], int], data: bytes | bytearray | memoryview, offset: int, path: str
) -> None:
    """Call ``write(rest, offset)`` (one system call, returning the bytes it wrote) until all of ``data`` is
    written, moving ``offset`` on by what each call wrote. Raises ``OSError(EIO)`` naming ``path`` when a call
    writes nothing: the system gave neither progress nor a reason, and asking again could ask forever."""
    view = memoryview(data).cast("B")
    while view:
        written = write(view, offset)
        if written <= 0:
            raise OSError(errno.EIO, f"writing {len(view)} bytes at offset {offset} wrote nothing", path)
        view = view[written:]
        offset += written


class OsFile:
    """A file opened with ``os.open``; every call maps to one system call."""

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    def pread(self, size: int, offset: int) -> bytes:
        chunks = []
        while size > 0:
            chunk = os.pread(self.fd, size, offset)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
            offset += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def pread_into(self, buffer: memoryview, offset: int) -> int:
        done = 0
        while done < len(buffer):
            got = os.preadv(self.fd, [buffer[done:]], offset + done)
            if not got:
                break
            done += got
        return done

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        written = os.pwrite(self.fd, data, offset)
        if written != len(data):  # a short write, or none: go on from where it stopped
            write_all(self._pwrite, memoryview(data).cast("B")[written:], offset + written, self.path)

    def _pwrite(self, view: memoryview, offset: int) -> int:
        return os.pwrite(self.fd, view, offset)

    def fsync(self) -> None:
        os.fsync(self.fd)

    def fdatasync(self) -> None:
        os.fdatasync(self.fd)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def allocate(self, offset: int, length: int) -> None:
        try:
            os.posix_fallocate(self.fd, offset, length)
        except OSError as exc:
            # why: some file systems (tmpfs on old kernels, network mounts) do not implement fallocate;
            # writing zeros reserves the space just as well.
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            end = offset + length
            pos = max(offset, self.size())
            zeros = bytes(1 << 20)
            while pos < end:
                n = min(len(zeros), end - pos)
                self.pwrite(zeros[:n], pos)
                pos += n

    def stat(self) -> FileStat:
        st = os.fstat(self.fd)
        return FileStat(st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_nlink)

    def read_blocks(self, offset: int, end: int, block_size: int) -> BlockReader:
        direct = open_direct(f"/proc/self/fd/{self.fd}", offset, end, block_size)  # the same open file
        if direct is not None:
            return direct
        os.posix_fadvise(self.fd, offset, end - offset, os.POSIX_FADV_SEQUENTIAL)
        return BufferedBlocks(self.pread, offset, end, block_size)

    def stream_writer(self) -> StreamWriter:
        return DirectWriter(self.fd)  # it writes from offset 0 with pwrite, whatever the file offset

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class OsFileSystem:
    """The real file system.

    Its crash points do nothing, except one named in ``$SHADOWSTORE_PAUSE_AT`` (read when the object is made):
    there the program prints ``paused at <name>`` to stderr and stops until it is killed. The kill -9 tests
    of real processes use it to stop a program at an exact instant.
    """

    def __init__(self) -> None:
        self.pause_at = os.environ.get("SHADOWSTORE_PAUSE_AT") or None

    def open(self, path: str, *, create: bool = False, exclusive: bool = False, readonly: bool = False) -> OsFile:
        flags = os.O_RDONLY if readonly else os.O_RDWR
        if create:
            flags |= os.O_CREAT
        if exclusive:
            flags |= os.O_EXCL | os.O_CREAT
        return OsFile(os.open(path, flags | os.O_CLOEXEC, 0o644), path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def stat(self, path: str) -> FileStat | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return FileStat(st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_nlink)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def makedirs(self, path: str) -> None:
        missing = []
        folder = os.path.abspath(path)
        while not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for folder in reversed(missing):
            try:
                os.mkdir(folder)
            except FileExistsError:
                if not os.path.isdir(folder):
                    raise
        for folder in reversed(missing):  # why: a new directory is durable only once its parent is synced
            self.fsync_dir(os.path.dirname(folder))

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, path: str, data: bytes, *, sync: bool = False) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            # why a loop is enough: O_APPEND puts each write at the end, and a caller sharing the file with other
            # processes holds a lock around the append (events.py), so nothing lands between two parts of it
            write_all(lambda view, _offset: os.write(fd, view), data, 0, path)
            if sync:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    def lock(self, path: str, owner: str) -> locks.OsLock:
        return locks.lock(path, owner)

    def lock_holder(self, path: str) -> str | None:
        return locks.lock_holder(path)

    def locked(self, path: str) -> AbstractContextManager[None]:
        return locks.locked(path)

    def free_space(self, path: str) -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    def crash_point(self, name: str) -> None:
        if name == self.pause_at:
            os.write(2, f"paused at {name}\n".encode())
            threading.Event().wait()


def read_file(fs: FileSystem, path: str) -> bytes:
    """All bytes of ``path``."""
    handle = fs.open(path, readonly=True)
    try:
        return handle.pread(handle.size(), 0)
    finally:
        handle.close()


@contextmanager
def opened(fs: FileSystem, path: str, *, readonly: bool = True) -> Iterator[FileHandle]:
    """Open ``path`` for the duration of a ``with`` block."""
    handle = fs.open(path, readonly=readonly)
    try:
        yield handle
    finally:
        handle.close()
