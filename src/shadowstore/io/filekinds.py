"""What kind of file a path on this machine's disks is, when it is neither a regular file nor a folder.

Why it matters: opening a FIFO for reading waits for a writer forever, a device is no file of ours, and a rename
onto a symbolic link or device replaces it. Every command that opens or replaces a path a user named asks here
first (the eseutil family, mail import and export)."""

from __future__ import annotations

import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(path: str, *, follow: bool = True) -> str | None:
    """ "a FIFO (named pipe)", "a socket", "a character device" or "a block device" for such a ``path``; "a
    symbolic link" for a link (a dangling one too) unless ``follow``; None for a regular file, a folder, or a
    path that does not exist or cannot be looked at."""
    try:
        mode = (Path(path).stat() if follow else Path(path).lstat()).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return next((what for test, what in _KINDS if test(mode)), None)
