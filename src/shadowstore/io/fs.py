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

Files are replaced through a temporary file beside them (:func:`replace_durably`), named ``.<name>.tmp-<16 hex
digits>`` and opened with ``O_EXCL``: it starts with a dot and ends in hex digits, so no log, checkpoint or store
file name looks like one. A crash can leave one behind; :func:`remove_temporaries_of` clears those of a file.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import secrets
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
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


# Locks are Linux open-file-description (OFD) locks. Like flock they belong to the open file and die with it,
# and with the process; unlike flock they can be tested without being taken (F_OFD_GETLK), so a status probe
# never makes a mount fail as busy; unlike classic POSIX locks, closing another descriptor of the same file (a
# probe in the holder's own process) does not release them.
#
# A holder also read-locks one byte of the lock file's folder, at an offset given by the file's name: the
# guard. A lock file deleted and made again while held is a new file anyone could lock, but the folder is the
# same, so a taker that finds the guard held knows the lock is. Read locks never conflict with one another;
# two takers are kept apart by the file lock and by checking that the path still names the file they locked.
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid
assert _FLOCK.size == 32
_LOCK_ATTEMPTS = 100  # times a lock file may be replaced under a taker before it gives up
_GUARD_HOLDER = "another process, whose lock file was deleted or replaced"


def _ofd(fd: int, command: int, kind: int, start: int = 0, length: int = 0) -> int:
    """One OFD lock call on ``[start, start + length)`` (length 0: to any end); returns the l_type reported."""
    reply = fcntl.fcntl(fd, command, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))
    return int(_FLOCK.unpack(reply)[0])


def _ofd_take(fd: int, kind: int, start: int = 0, length: int = 0) -> bool:
    try:
        _ofd(fd, fcntl.F_OFD_SETLK, kind, start, length)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _ofd_held(fd: int, kind: int, start: int = 0, length: int = 0) -> bool:
    """Whether another open file holds a lock there that conflicts with ``kind``; takes nothing."""
    return _ofd(fd, fcntl.F_OFD_GETLK, kind, start, length) != fcntl.F_UNLCK


def _guard_offset(path: str) -> int:
    return int.from_bytes(hashlib.sha256(os.path.basename(path).encode()).digest()[:7], "big")


def _open_folder(path: str) -> int:
    return os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _names(path: str, fd: int) -> bool:
    """Whether ``path`` names the file open as ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _owner_text(fd: int) -> str:
    return os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"


class OsLock:
    """A held lock: an OFD write lock on the whole file and a read lock on its guard byte of the folder."""

    def __init__(self, path: str, fd: int, folder_fd: int) -> None:
        self.path = path
        self._fd = fd
        self._folder_fd = folder_fd

    def path_intact(self) -> bool:
        return self._fd >= 0 and _names(self.path, self._fd)

    def release(self) -> None:
        if self._fd >= 0:
            # why unlock before closing: a child forked without exec shares these open files and would keep them
            _ofd(self._fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK)
            _ofd(self._folder_fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, _guard_offset(self.path), 1)
            os.close(self._fd)
            os.close(self._folder_fd)
            self._fd = self._folder_fd = -1


def _lock_once(path: str, owner: str) -> OsLock | None:
    """One try of :meth:`OsFileSystem.lock`: the lock, or None when the file was replaced meanwhile."""
    with ExitStack() as opened_here:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        opened_here.callback(os.close, fd)  # closing releases whatever was taken on it
        if not _ofd_take(fd, fcntl.F_WRLCK):
            raise StorageGroupBusyError(f"{path} is locked by {_owner_text(fd)}")
        folder_fd = _open_folder(path)
        opened_here.callback(os.close, folder_fd)
        # why check the name: if the file was replaced between our open and our lock, whoever opens the new one
        # can lock it too
        if not _names(path, fd):
            return None
        guard = _guard_offset(path)
        if _ofd_held(folder_fd, fcntl.F_WRLCK, guard, 1):
            raise StorageGroupBusyError(f"{path} is locked by {_GUARD_HOLDER}")
        _ofd_take(folder_fd, fcntl.F_RDLCK, guard, 1)
        if not _names(path, fd):  # checked again with the guard held: a taker after this one meets the guard
            return None
        with suppress(OSError):  # why: the owner text is advice for people; a full disk must not refuse the lock
            os.ftruncate(fd, 0)
            OsFile(fd, path).pwrite(f"{owner}\n".encode(), 0)
        opened_here.pop_all()
        return OsLock(path, fd, folder_fd)


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

    def lock(self, path: str, owner: str) -> OsLock:
        for _attempt in range(_LOCK_ATTEMPTS):
            held = _lock_once(path, owner)
            if held is not None:
                return held
        raise StorageGroupBusyError(f"{path} was replaced {_LOCK_ATTEMPTS} times while this process locked it")

    def lock_holder(self, path: str) -> str | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        else:
            try:
                if _ofd_held(fd, fcntl.F_RDLCK):  # only a write lock conflicts with a read lock: a holder's
                    return _owner_text(fd)
            finally:
                os.close(fd)
        try:
            folder_fd = _open_folder(path)
        except FileNotFoundError:
            return None
        try:
            return _GUARD_HOLDER if _ofd_held(folder_fd, fcntl.F_WRLCK, _guard_offset(path), 1) else None
        finally:
            os.close(folder_fd)

    @contextmanager
    def locked(self, path: str) -> Iterator[None]:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                _ofd(fd, fcntl.F_OFD_SETLKW, fcntl.F_WRLCK)
            except BaseException:
                os.close(fd)
                raise
            if _names(path, fd):
                break
            os.close(fd)  # why: it was replaced while we waited, and a process opening it now would not wait
        try:
            yield
        finally:
            os.close(fd)

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
    """Replace ``path`` with what ``fill`` writes into a new temporary file beside it (:func:`temporary_name`,
    opened with O_EXCL, so never anyone else's): the file is fsynced, renamed over ``path`` and the directory
    fsynced, so a crash leaves the old or the new content, and perhaps the temporary file. Whatever ``fill`` or
    the file system raises (a failed check, say) propagates after the temporary file is removed."""
    tmp = temporary_name(path, suffix)
    handle = fs.open(tmp, exclusive=True)
    try:
        fill(handle)
        handle.fsync()
    except BaseException:
        handle.close()
        _unlink_quietly(fs, tmp)
        raise
    handle.close()
    try:
        fs.rename(tmp, path)
    except BaseException:
        _unlink_quietly(fs, tmp)
        raise
    fs.fsync_dir(os.path.dirname(path) or ".")


TEMP_SUFFIXES = (".tmp", ".restoring")
_TEMPORARY = re.compile(r"\.(.+)(?:\.tmp|\.restoring)-[0-9a-f]{16}")  # group 1: the name it replaces


def temporary_name(path: str, suffix: str = ".tmp") -> str:
    """A new name for a temporary file that will replace ``path``: ``.<name><suffix>-<16 random hex digits>``
    in the same folder. ``suffix`` is one of ``TEMP_SUFFIXES``; raises ValueError otherwise."""
    if suffix not in TEMP_SUFFIXES:
        raise ValueError(f"temporary suffix {suffix!r} is not one of {TEMP_SUFFIXES}")
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}{suffix}-{secrets.token_hex(8)}")


def temporary_target(name: str) -> str | None:
    """The name of the file that the temporary file ``name`` was made to replace, or None if it is not one."""
    match = _TEMPORARY.fullmatch(name)
    return match.group(1) if match else None


def temporaries_of(fs: FileSystem, path: str) -> list[str]:
    """The temporary files beside ``path`` that were made to replace it (and nothing else), sorted."""
    folder, name = os.path.split(path)
    try:
        names = fs.listdir(folder or ".")
    except FileNotFoundError:
        return []
    return sorted(os.path.join(folder, n) for n in names if temporary_target(n) == name)


def remove_temporaries_of(fs: FileSystem, path: str) -> list[str]:
    """Delete the temporary files a crash left beside ``path`` (see :func:`temporaries_of`), sync the folder,
    and return their paths. Requires: no one is replacing ``path`` meanwhile (the caller holds the lock that
    keeps its writers out); a temporary file still being written would be removed and that replace fail."""
    found = temporaries_of(fs, path)
    for tmp in found:
        _unlink_quietly(fs, tmp)
    if found:
        fs.fsync_dir(os.path.dirname(path) or ".")
    return found


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
