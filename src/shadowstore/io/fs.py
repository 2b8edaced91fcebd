"""The single door between ShadowStore and the operating system.

Every byte the engine reads or writes goes through a :class:`FileSystem`. The real one, :class:`OsFileSystem`,
is a thin layer over ``os``; the fault-injecting one (:mod:`shadowstore.io.faulty`) keeps files in memory,
remembers what was synced, and can lose or tear what was not, fail an fsync, run out of space, or stop the
program at a named crash point. Engine code calls :meth:`FileSystem.crash_point` at the instants the crash
tests cut; on the real file system that call does nothing.

Durability contract assumed by the engine (POSIX on a local Linux file system):

* data written with ``pwrite`` is durable only after ``fsync``/``fdatasync`` of that file returns;
* a new name, a rename or an unlink is durable only after ``fsync_dir`` of the directory returns;
* a write that covers several sectors may reach the disk in part; a single 512-byte sector is atomic.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Protocol

from shadowstore.errors import StorageGroupBusyError
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

    def makedirs(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path`` (durable after :meth:`fsync_dir` of its parent)."""

    def fsync_dir(self, path: str) -> None: ...

    def append(self, path: str, data: bytes) -> None:
        """Append ``data`` to ``path`` (created if missing) in one write; not synced."""

    def lock(self, path: str, owner: str) -> Lock:
        """Take an exclusive lock that dies with this process; raise StorageGroupBusyError if held."""

    def free_space(self, path: str) -> int: ...

    def crash_point(self, name: str) -> None:
        """Called by the engine at named instants; the fault-injecting layer may stop the program here."""


# --- the real file system -------------------------------------------------------------------------------------


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

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        written = os.pwrite(self.fd, data, offset)
        if written == len(data):
            return
        view = memoryview(data)[written:]
        offset += written
        while view:
            written = os.pwrite(self.fd, view, offset)
            view = view[written:]
            offset += written

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


class _FlockLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


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
        os.makedirs(path, exist_ok=True)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, path: str, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def lock(self, path: str, owner: str) -> _FlockLock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise StorageGroupBusyError(f"{path} is locked by {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{owner}\n".encode(), 0)
        return _FlockLock(fd)

    def free_space(self, path: str) -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    def crash_point(self, name: str) -> None:
        if name == self.pause_at:
            os.write(2, f"paused at {name}\n".encode())
            threading.Event().wait()


def atomic_write(fs: FileSystem, path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content.

    Writes a temporary file in the same directory, fsyncs it, renames it over ``path`` and fsyncs the
    directory. Raises ``OSError`` from the file system; the temporary file is removed on failure.
    """
    replace_durably(fs, path, lambda handle: handle.pwrite(data, 0))


def replace_durably(fs: FileSystem, path: str, fill: Callable[[FileHandle], None], suffix: str = ".tmp") -> None:
    """Replace ``path`` with what ``fill`` writes into an empty temporary file ``path + suffix``: the file is
    fsynced, renamed over ``path`` and the directory fsynced, so a crash leaves the old or the new content.
    Whatever ``fill`` raises (a failed check, say) propagates after the temporary file is removed."""
    tmp = f"{path}{suffix}"
    handle = fs.open(tmp, create=True)
    try:
        handle.truncate(0)
        fill(handle)
        handle.fsync()
    except BaseException:
        handle.close()
        _unlink_quietly(fs, tmp)
        raise
    handle.close()
    fs.rename(tmp, path)
    fs.fsync_dir(os.path.dirname(path) or ".")


def read_file(fs: FileSystem, path: str) -> bytes:
    """All bytes of ``path``."""
    handle = fs.open(path, readonly=True)
    try:
        return handle.pread(handle.size(), 0)
    finally:
        handle.close()


def _unlink_quietly(fs: FileSystem, path: str) -> None:
    with suppress(OSError):
        fs.unlink(path)


@contextmanager
def opened(fs: FileSystem, path: str, *, readonly: bool = True) -> Iterator[FileHandle]:
    """Open ``path`` for the duration of a ``with`` block."""
    handle = fs.open(path, readonly=readonly)
    try:
        yield handle
    finally:
        handle.close()
