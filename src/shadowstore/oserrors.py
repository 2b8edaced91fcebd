"""OS errors that are not bugs: a path without permission, a file where a folder must be, a full disk, an
address in use. Each becomes a refusal that names the path and what is wrong with it, with a hint and the exit
code of its kind; any other OSError stays a bug, shown with its crash file (cli/main.py). The command line maps
what a command raises; a backup maps what its copy meets, so its report says the same (backup/run.py)."""

from __future__ import annotations

import errno
import os
import pwd
from pathlib import Path

from shadowstore.errors import (
    AccessDeniedError,
    DiskFullError,
    DiskIOError,
    FileNotFoundError_,
    InvalidParameterError,
    ShadowStoreError,
)

_NO_PERMISSION = (errno.EACCES, errno.EPERM)
_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)
_ADDRESS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL)
# why these and no more: each says something about the machine that the user can change; any other errno
# (EBADF, EINVAL, ...) means our code asked for something wrong, a bug shown as one
_REFUSED = (*_NO_PERMISSION, *_FULL, *_NOT_A_FOLDER, *_ADDRESS, errno.ENOENT, errno.EISDIR, errno.EROFS, errno.EIO)


def os_refusal(exc: OSError, doing: str) -> ShadowStoreError | None:
    """``exc`` as a refusal naming the path it names (``exc.filename``) and what is wrong with it, a hint saying
    what to do, and the exit code of its kind: permission or a read-only file system 3 (AccessDeniedError), no
    such file or folder 4, a file where a folder must be (or the reverse) or an address that cannot be listened
    on 3, no space 14, an I/O error 15. None for any other errno: a bug. ``doing`` says what was running."""
    if exc.errno not in _REFUSED:
        return None
    path = os.fsdecode(exc.filename) if isinstance(exc.filename, str | bytes) and exc.filename else None
    if path is None or exc.errno in _ADDRESS:
        return _pathless_refusal(exc, path, doing)
    while_ = f", while {doing}"
    if exc.errno in _NO_PERMISSION:
        return AccessDeniedError(
            f"permission denied: {path}{while_}",
            hint=f"check the permissions of {path} and of the folders above it: ShadowStore runs as {_user()}",
            file=path,
        )
    if exc.errno == errno.EROFS:
        return AccessDeniedError(
            f"read-only file system: {path}{while_}",
            hint="remount that file system read-write, or choose a path on another one",
            file=path,
        )
    if exc.errno == errno.ENOENT:
        missing = _first_missing(path)
        what = f"no such folder: {missing} (for {path})" if missing != path else f"no such file or folder: {path}"
        return FileNotFoundError_(
            f"{what}{while_}",
            hint="check the path and that its disk is mounted ('shadowstore status' shows the folders each "
            "storage group uses)",
            file=path,
        )
    if exc.errno in _NOT_A_FOLDER:
        return _not_a_folder(exc, path, while_)
    if exc.errno == errno.EISDIR:
        return InvalidParameterError(
            f"{path} is a folder, not a file{while_}", hint="name a file, or move the folder away", file=path
        )
    if exc.errno in _FULL:
        return DiskFullError(
            f"no space left for {path}{while_}",
            hint="free space on that disk, or choose a path on another disk (a storage group moves with "
            "'shadowstore sg move')",
            file=path,
        )
    return DiskIOError(f"I/O error on {path}{while_}", file=path)  # default hint: check the disk


def _not_a_folder(exc: OSError, path: str, while_: str) -> ShadowStoreError:
    """ENOTDIR or EEXIST: the file that stands where a folder must be, or the path that exists already."""
    file = next((p for p in [Path(path), *Path(path).parents] if p.exists() and not p.is_dir()), None)
    if file is not None:
        tail = f" (for {path})" if str(file) != path else ""
        return InvalidParameterError(
            f"{file} is a file, not a folder{tail}{while_}",
            hint=f"choose another path, or move the file {file} away",
            file=path,
        )
    if exc.errno == errno.EEXIST:
        return InvalidParameterError(
            f"{path} exists already{while_}", hint="choose a path that does not exist yet", file=path
        )
    return InvalidParameterError(f"not a folder: {path}{while_}", hint="choose another path", file=path)


def _pathless_refusal(exc: OSError, path: str | None, doing: str) -> ShadowStoreError | None:
    """An OSError about a socket's address (``serve --listen`` names its own), or one that names no file. None
    when nothing but the path could say what is wrong."""
    text = f"{exc.strerror or exc}{f': {path}' if path else ''}, while {doing}"
    if exc.errno == errno.EADDRINUSE:
        return InvalidParameterError(text, hint="another program listens there: stop it, or choose another port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return InvalidParameterError(text, hint="name an address of this machine (127.0.0.1 for itself alone)")
    if exc.errno in _NO_PERMISSION:
        return AccessDeniedError(text, hint=f"check the permissions: ShadowStore runs as {_user()}")
    if exc.errno in _FULL:
        return DiskFullError(text, hint="free space on the disk, or choose another disk")
    if exc.errno == errno.EIO:
        return DiskIOError(text)
    return None


def _first_missing(path: str) -> str:
    """The highest folder of ``path`` that does not exist (``path`` itself when its folder exists)."""
    missing = Path(path)
    while missing.parent != missing and not missing.parent.exists():
        missing = missing.parent
    return str(missing)


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
