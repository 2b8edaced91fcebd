"""Replacing a file so that a crash leaves either its old or its new content, over any :class:`FileSystem`.

A file is replaced through a temporary file beside it (:func:`replace_durably`): write, fsync, rename over the
file, fsync the folder. The temporary file is named ``.<name>.tmp-<16 hex digits>`` (``.restoring`` instead of
``.tmp`` for a restore's copies) and opened with ``O_EXCL``: it starts with a dot and ends in hex digits, so no
log, checkpoint or store file name looks like one, and it is never anyone else's file. A crash can leave one
behind; :func:`remove_temporaries_of` clears those of a file.

Durability assumption: that of :mod:`shadowstore.io.fs` (a rename is durable once its folder is synced).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from contextlib import suppress

from shadowstore.io.fs import FileHandle, FileSystem

TEMP_SUFFIXES = (".tmp", ".restoring")
_TEMPORARY = re.compile(r"\.(.+)(?:\.tmp|\.restoring)-[0-9a-f]{16}")  # group 1: the name it replaces


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
    folder, name = os.path.split(path)
    return remove_temporaries_in(fs, folder or ".", lambda target: target == name)


def remove_temporaries_in(fs: FileSystem, folder: str, replaces: Callable[[str], bool]) -> list[str]:
    """Delete the temporary files in ``folder`` made to replace a file whose name ``replaces`` accepts, with one
    listing and one folder sync; returns their paths, sorted. Requires what :func:`remove_temporaries_of`
    requires, for every such file."""
    try:
        names = fs.listdir(folder)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        target = temporary_target(name)
        if target is not None and replaces(target):
            found.append(os.path.join(folder, name))
    for tmp in sorted(found):
        _unlink_quietly(fs, tmp)
    if found:
        fs.fsync_dir(folder)
    return sorted(found)


def _unlink_quietly(fs: FileSystem, path: str) -> None:
    with suppress(OSError):
        fs.unlink(path)
