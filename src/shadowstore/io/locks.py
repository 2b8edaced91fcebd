"""File locks on the real file system: the implementation of :meth:`OsFileSystem.lock`, ``lock_holder`` and
``locked`` (:mod:`shadowstore.io.fs` defines the interface; this module knows nothing of it).

The locks are Linux open-file-description (OFD) locks. Like ``flock`` they belong to the open file and die with
it and with the process. Unlike ``flock`` they can be tested without being taken (``F_OFD_GETLK``), so a status
probe never makes a mount fail as busy. Unlike classic POSIX locks they are not released when another descriptor
of the same file is closed, so a probe in the holder's own process leaves them held.

A lock file deleted and made again while its lock is held is a new file that anyone could lock. So a holder
also read-locks one byte of the lock file's folder, at an offset derived from the file's name: the guard. The
folder is the same whatever happened to the file, so a taker that finds the guard held knows the lock is held.
Read locks never conflict with one another; two takers are kept apart by the write lock on the file and by
checking that the path still names the file they locked.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import struct
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from shadowstore.errors import StorageGroupBusyError

_FLOCK = struct.Struct("hhqqi4x")  # struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid
assert _FLOCK.size == 32
_LOCK_ATTEMPTS = 100  # times a lock file may be replaced under a taker before it gives up
_GUARD_HOLDER = "another process, whose lock file was deleted or replaced"


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


def this_command() -> str:
    """This process's command as a person recognises it in a lock error: the program and its first words,
    ``--home`` and its folder left out (the folder is the one the error is about)."""
    words: list[str] = []
    args = iter(sys.argv[1:])
    for arg in args:
        if arg == "--home":
            next(args, None)
        elif not arg.startswith("--home="):
            words.append(arg)
    return " ".join([os.path.basename(sys.argv[0]), *words[:3]])


def lock(path: str, owner: str) -> OsLock:
    """Take the exclusive lock on ``path`` (created if missing) and write ``owner`` into the file. Raises
    StorageGroupBusyError naming the holder if it is held, also when the holder's file was deleted or replaced
    since it took the lock, and when the file is replaced under this taker too many times in a row."""
    for _attempt in range(_LOCK_ATTEMPTS):
        held = _lock_once(path, owner)
        if held is not None:
            return held
    raise StorageGroupBusyError(f"{path} was replaced {_LOCK_ATTEMPTS} times while this process locked it")


def lock_holder(path: str) -> str | None:
    """The owner text of whoever holds the lock on ``path`` (this process included), or None; takes nothing."""
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
def locked(path: str) -> Iterator[None]:
    """Wait for the write lock on the file ``path`` (created if missing) and hold it for a ``with`` block."""
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


def _lock_once(path: str, owner: str) -> OsLock | None:
    """One try of :func:`lock`: the lock, or None when the file was replaced meanwhile."""
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
            os.pwrite(fd, f"{owner}\n".encode(), 0)
        opened_here.pop_all()
        return OsLock(path, fd, folder_fd)


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
