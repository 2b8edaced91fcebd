"""What a path given to ``mail import`` or ``mail export`` is on this machine, and the refusals for one that
cannot be used: an OS error as a ShadowStore error naming the file, a target that holds something, and the
kinds of file (links, devices, FIFOs, sockets) that look empty and are not.
"""

from __future__ import annotations

import errno
import mailbox
import os
from collections.abc import Iterator
from contextlib import contextmanager

from shadowstore.errors import DiskIOError, InvalidParameterError, NotFoundError
from shadowstore.io.filekinds import special_kind
from shadowstore.io.fs import FileSystem, OsFileSystem
from shadowstore.oserrors import os_refusal


@contextmanager
def os_errors(path: str, doing: str) -> Iterator[None]:
    """Turn what the OS or the ``mailbox`` module raises into a ShadowStore error naming the file and a hint."""
    try:
        yield
    except mailbox.NoSuchMailboxError:
        raise NotFoundError(f"{path} does not exist (any more)", hint="name an mbox file or a Maildir folder") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise InvalidParameterError(
                f"{doing} {exc.filename or path} failed: {exc.strerror or exc}",
                hint="choose a shorter name: an export is written under a temporary name beside its target first, "
                "'.' + its name + '.tmp-' and 16 hex digits, which must fit in the file system's 255 bytes",
            ) from exc
        # the command line's own mapping (oserrors.py): permission, a missing folder, a file where a folder must
        # be, a full disk; anything else an I/O error naming the path
        refusal = os_refusal(exc, f"{doing} {path}")
        if refusal is not None:
            raise refusal from exc
        raise DiskIOError(
            f"{doing} {exc.filename or path} failed: {exc.strerror or exc}",
            hint="check the disk and the path, then run the command again",
        ) from exc


# --- targets ------------------------------------------------------------------------------------------------------


def check_target(fs: FileSystem, path: str, *, folder: bool) -> None:
    """Refuse a target that holds something (an export never overwrites): InvalidParameterError, or
    NotFoundError when the folder it would go in does not exist. A symbolic link, device, FIFO or socket there
    is something too, empty as it may look: the export's rename would put a file in its place (/dev/null
    replaced by an mbox file, a link by the file instead of writing where it points)."""
    special = special_file(fs, path)
    if special is not None:
        raise InvalidParameterError(f"{path} exists and is {special}; nothing is overwritten", hint=NEW_TARGET)
    try:
        names = fs.listdir(path)
    except FileNotFoundError:
        if not is_folder(fs, os.path.dirname(path)):
            raise NotFoundError(f"the folder {os.path.dirname(path)} does not exist", hint="create it first") from None
        return
    except NotADirectoryError:
        stat = fs.stat(path)
        if folder or (stat is not None and stat.size > 0):
            kind = "a file" if folder else "a file that is not empty"
            raise InvalidParameterError(
                f"{path} exists and is {kind}; nothing is overwritten", hint=NEW_TARGET
            ) from None
        return
    if not folder:
        raise InvalidParameterError(f"{path} is a folder; an mbox export writes one file", hint=NEW_TARGET)
    if names:
        raise InvalidParameterError(f"{path} is a folder that is not empty; nothing is overwritten", hint=NEW_TARGET)


def special_file(fs: FileSystem, path: str, *, follow: bool = False) -> str | None:
    """What ``path`` is when it is neither a regular file nor a folder (io/filekinds.py: a symbolic link, even
    a dangling one, unless ``follow``; a FIFO, socket or device), else None. Only for OsFileSystem: the
    FileSystem interface knows no kinds of file, and no other file system has them."""
    return special_kind(path, follow=follow) if isinstance(fs, OsFileSystem) else None


NEW_TARGET = "choose a path that does not exist (or an empty file for mbox, an empty folder for Maildir)"


def is_folder(fs: FileSystem, path: str) -> bool:
    """Whether ``path`` is a folder that can be listed."""
    try:
        fs.listdir(path)
    except OSError:
        return False
    return True
