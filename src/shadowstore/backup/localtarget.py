"""A backup target that is a directory on a local (or mounted) file system.

Durability assumption (POSIX on a local Linux file system, as in :mod:`shadowstore.io.fs`): file data is durable
once ``fsync`` of the file returns; a new name, a rename or an unlink once ``fsync`` of its directory returns.
``write_file`` therefore writes ``.<name>.tmp-<random>`` in the file's directory, fsyncs it, renames it over the
final name and fsyncs the directory; a crash leaves either the old file or the new one, plus at most a temporary
file that ``list`` never shows.
"""

# why: like src/shadowstore/io/fs.py this module is a door to the OS and calls os.* on purpose.
# ruff: noqa: PTH102, PTH105, PTH106, PTH108, PTH110, PTH112, PTH116, PTH208

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

from shadowstore.backup.target import CHUNK, Buffer, Names, check_name
from shadowstore.errors import (
    BackupTargetError,
    BackupTargetFullError,
    BackupTargetNotFoundError,
    InvalidParameterError,
)
from shadowstore.io.directwrite import BUFFER, WRITERS, DirectWriter

_TEMPORARY = re.compile(r"\.(.+)\.tmp-[0-9a-f]{16}")  # group 1: the name being written
_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)
Entries = list[os.DirEntry[str]]  # why an alias: inside LocalTarget, ``list`` names its method


def is_temporary(basename: str) -> bool:
    """True if ``basename`` is the name of a temporary file made by ``write_file`` (never listed)."""
    return _TEMPORARY.fullmatch(basename) is not None


class LocalTarget:
    """Files under the directory ``path``. Creating the object touches nothing; the first write creates the
    directories it needs. Every error is raised as BackupTargetError (or a subclass) naming the target."""

    def __init__(self, path: str) -> None:
        if not path:
            raise InvalidParameterError("a backup target directory must be named")
        self.url = os.path.abspath(os.path.expanduser(path))
        self.write_buffer, self.writers = BUFFER, WRITERS  # a paced copy writes less at a time (backup/pace.py)

    def __repr__(self) -> str:
        return f"LocalTarget({self.url!r})"

    # --- writing --------------------------------------------------------------------------------------------

    def write_file(self, name: str, chunks: Iterable[Buffer], *, size_hint: int | None = None) -> int:
        """Store ``chunks`` as ``name`` atomically and durably; returns the bytes written. ``size_hint`` is
        ignored: a file grows as it is written.

        Raises BackupTargetFullError when the file system is full, BackupTargetError when the target is not
        writable or fails; an exception raised by ``chunks`` itself propagates unchanged. On any failure the
        temporary file is removed and ``name`` keeps its previous content (or stays absent).
        """
        path = self._path(name)
        if is_temporary(os.path.basename(path)):
            raise InvalidParameterError(f"{name!r} looks like a temporary file name; choose another name")
        directory = os.path.dirname(path)
        tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{secrets.token_hex(8)}")
        with self._wrapped("write", name):
            self._make_dirs(directory)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            try:
                total = self._write_all(fd, chunks, name)
                with self._wrapped("write", name):
                    self._sync_file(fd)
            finally:
                os.close(fd)
            with self._wrapped("write", name):
                os.replace(tmp, path)
        except BaseException:
            _remove_quietly(tmp)
            raise
        # If this last fsync fails the complete file is already under its name, but may not survive a crash.
        with self._wrapped("write", name):
            self._sync_dir(directory)
        return total

    def _write_all(self, fd: int, chunks: Iterable[Buffer], name: str) -> int:
        with self._wrapped("write", name):
            writer = DirectWriter(fd, self.write_buffer, self.writers)
        with writer:
            for chunk in chunks:  # why outside _wrapped: the iterable's own exceptions propagate unchanged
                with self._wrapped("write", name):
                    writer.write(chunk)
            with self._wrapped("write", name):
                return writer.finish()

    def _make_dirs(self, directory: str) -> None:
        """Create ``directory`` and its missing parents, fsyncing each new entry's parent (so it survives)."""
        if os.path.isdir(directory):
            return
        parent = os.path.dirname(directory)
        if parent != directory:
            self._make_dirs(parent)
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            return
        self._sync_dir(parent)

    # --- reading --------------------------------------------------------------------------------------------

    def read_file(self, name: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The content of ``name`` in chunks of at most ``chunk_size`` bytes. The file is opened now, so a
        missing file raises BackupTargetNotFoundError at the call; later read errors raise BackupTargetError."""
        path = self._path(name)
        with self._wrapped("read", name):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
        return self._chunks(fd, chunk_size, name)

    def _chunks(self, fd: int, chunk_size: int, name: str) -> Iterator[bytes]:
        try:
            while True:
                with self._wrapped("read", name):
                    chunk = os.read(fd, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            os.close(fd)

    def read_bytes(self, name: str) -> bytes:
        """All of ``name``; raises like :meth:`read_file`."""
        return b"".join(self.read_file(name))

    def exists(self, name: str) -> bool:
        """True if ``name`` is a file in the target. Raises BackupTargetError if the target cannot be read."""
        try:
            return stat.S_ISREG(os.stat(self._path(name)).st_mode)
        except OSError as exc:
            if exc.errno in _MISSING:
                return False
            raise self._error(exc, "look up", name) from exc

    def size(self, name: str) -> int:
        """Size of ``name`` in bytes. Raises BackupTargetNotFoundError if it is not a file."""
        path = self._path(name)
        with self._wrapped("look up", name):
            st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise BackupTargetNotFoundError(
                f"{name!r} in backup target {self.url} is not a file", file=name, target=self.url
            )
        return st.st_size

    def list(self, prefix: str = "") -> list[str]:
        """Sorted names of the files whose name starts with ``prefix``, without temporary files. A target
        directory that does not exist yet lists nothing; a file or folder removed while the listing runs is left
        out; any other error raises BackupTargetError."""
        return sorted(name for name, entry in self._files(prefix) if not is_temporary(entry.name))

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Size in bytes of each file :meth:`list` names (a file removed before its size is read is left out).
        Raises BackupTargetError."""
        found = {}
        for name, entry in self._files(prefix):
            if not is_temporary(entry.name):
                with self._wrapped("look up", name):
                    size = _size_unless_gone(entry)
                if size is not None:
                    found[name] = size
        return dict(sorted(found.items()))

    def _files(self, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """(name, directory entry) of every file, temporary ones included, whose name starts with ``prefix`` (a
        temporary file's name is that of its folder and its own base name). A folder that vanishes before it is
        read (ENOENT, or ENOTDIR when a file took its place) is skipped: a prune may be deleting sets meanwhile.
        Only the target directory itself being a file is an error; a missing one lists nothing."""
        if prefix:
            check_name(prefix.rstrip("/") or "/")
        folder = prefix.rpartition("/")[0]
        pending = [folder]  # names of folders still to read, relative to the target ("": the target itself)
        with self._wrapped("list", prefix or "/"):
            while pending:
                relative = pending.pop()
                for entry in self._entries(relative):
                    name = f"{relative}/{entry.name}" if relative else entry.name
                    if not entry.is_dir():
                        if name.startswith(prefix):
                            yield name, entry
                    elif not entry.is_symlink() and _may_hold(name, prefix):
                        pending.append(name)  # why not a symlink: like os.walk, links to folders are not followed

    def _entries(self, relative: str) -> Entries:
        """The entries of folder ``relative`` ([] if it is gone or, below the target, is no longer a folder)."""
        try:
            with os.scandir(os.path.join(self.url, relative) if relative else self.url) as entries:
                return list(entries)
        except OSError as exc:
            if exc.errno == errno.ENOENT or (exc.errno == errno.ENOTDIR and relative):
                return []
            raise

    # --- what killed writes left behind ----------------------------------------------------------------------

    def partial(self, prefix: str = "") -> Names:
        """Names whose temporary files are still in the target: a process writing them was killed (a write
        that fails removes its own). A listed name may be one being written right now."""
        folder_prefix = prefix.rpartition("/")[0]
        names = set()
        for name, entry in self._files(folder_prefix + "/" if folder_prefix else ""):
            match = _TEMPORARY.fullmatch(entry.name)
            if match is not None:
                written = f"{name.rpartition('/')[0]}/{match.group(1)}" if "/" in name else match.group(1)
                if written.startswith(prefix):
                    names.add(written)
        return sorted(names)

    def discard_partial(self, name: str) -> None:
        """Remove the temporary files of ``name``, then the folders that leaves empty; fsynced."""
        path = self._path(name)
        directory, base = os.path.split(path)
        with self._wrapped("discard a partial", name):
            try:
                entries = os.listdir(directory)
            except FileNotFoundError:
                return
            for entry in entries:
                match = _TEMPORARY.fullmatch(entry)
                if match is not None and match.group(1) == base:
                    with suppress(FileNotFoundError):
                        os.unlink(os.path.join(directory, entry))
            while directory != self.url and _rmdir_if_empty(directory):
                directory = os.path.dirname(directory)
            self._sync_dir(directory)

    # --- deleting and space ---------------------------------------------------------------------------------

    def delete(self, name: str) -> None:
        """Remove ``name`` (nothing happens if there is no such file), then the folders it leaves empty, up to
        but not including the target directory; the change is fsynced. Raises BackupTargetError."""
        path = self._path(name)
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno in _MISSING:
                return
            raise self._error(exc, "delete", name) from exc
        directory = os.path.dirname(path)
        with self._wrapped("delete", name):
            while directory != self.url and _rmdir_if_empty(directory):
                directory = os.path.dirname(directory)
            self._sync_dir(directory)

    def free_space(self) -> int:
        """Bytes available to us on the target's file system (of its nearest existing parent if the target
        directory does not exist yet). Raises BackupTargetError."""
        path = self.url
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        with self._wrapped("measure free space for", "/"):
            st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    # --- hooks and helpers ----------------------------------------------------------------------------------

    def _sync_file(self, fd: int) -> None:
        """Make the file's data durable. A method so tests can observe the durability steps."""
        os.fsync(fd)

    def _sync_dir(self, path: str) -> None:
        """Make the names in directory ``path`` durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _free_or_none(self) -> int | None:
        try:
            return self.free_space()
        except BackupTargetError:
            return None

    def _path(self, name: str) -> str:
        return os.path.join(self.url, check_name(name))

    @contextmanager
    def _wrapped(self, action: str, name: str) -> Iterator[None]:
        """Raise an OSError from the block as the matching BackupTargetError (see :meth:`_error`)."""
        try:
            yield
        except OSError as exc:
            raise self._error(exc, action, name) from exc

    def _error(self, exc: OSError, action: str, name: str) -> BackupTargetError:
        """``exc`` as a BackupTargetError naming the file and the target. A missing file is
        BackupTargetNotFoundError only when reading or looking up."""
        where = f"{action} {name!r} in backup target {self.url}"
        if exc.errno in _FULL:
            free = self._free_or_none()
            space = f" ({free} bytes free)" if free is not None else ""
            return BackupTargetFullError(f"no space left to {where}{space}", file=name, target=self.url)
        if exc.errno in _NOT_WRITABLE:
            state = "not writable" if action in ("write", "delete") else "not readable"
            message = f"cannot {action} {name!r}: backup target {self.url} is {state} ({exc.strerror})"
            return BackupTargetError(message, file=name, target=self.url)
        if exc.errno in (errno.EEXIST, errno.ENOTDIR) and os.path.exists(self.url) and not os.path.isdir(self.url):
            return BackupTargetError(
                f"cannot {where}: the backup target is a file, not a folder", file=name, target=self.url
            )
        if exc.errno in _MISSING and action in ("read", "look up"):
            return BackupTargetNotFoundError(f"cannot {where}: no such file", file=name, target=self.url)
        return BackupTargetError(f"cannot {where}: {exc.strerror or exc}", file=name, target=self.url)


def _rmdir_if_empty(path: str) -> bool:
    try:
        os.rmdir(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        if exc.errno != errno.ENOENT:  # why: already removed (by a concurrent delete) counts as removed
            raise
    return True


def _may_hold(folder: str, prefix: str) -> bool:
    """True if folder ``folder`` can hold files whose names start with ``prefix``."""
    return f"{folder}/".startswith(prefix) or prefix.startswith(f"{folder}/")


def _size_unless_gone(entry: os.DirEntry[str]) -> int | None:
    """``entry``'s size in bytes (following a symbolic link, like :meth:`LocalTarget.size`), or None if it was
    removed (or its folder replaced) after its folder was read."""
    try:
        return entry.stat().st_size
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _remove_quietly(path: str) -> None:
    with suppress(OSError):  # why: best effort while the original failure is raised; list() hides temporaries
        os.unlink(path)
