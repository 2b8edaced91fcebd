"""Copying one file of a backup set out of its target, checking it as it streams.

The stored bytes are decompressed as they arrive; the original bytes are hashed (SHA-256) and counted, and
written to a temporary name beside the destination. Only a file whose size and hash match the manifest is
fsynced and renamed into place (then the folder is fsynced), so a destination file either is a verified copy
or does not exist.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from contextlib import suppress

import zstandard

from shadowstore.backup.manifest import FileEntry
from shadowstore.backup.setfiles import original_chunks
from shadowstore.backup.target import Target
from shadowstore.errors import BackupSetError
from shadowstore.io.fs import FileHandle, FileSystem

WRITE_CHUNK = 8 << 20  # bytes gathered before each write


def fetch_file(
    target: Target,
    folder: str,
    entry: FileEntry,
    fs: FileSystem,
    destination: str,
    *,
    progress: Callable[[int], None] = lambda n: None,
) -> None:
    """Copy ``entry`` of the set in ``folder`` of ``target`` to ``destination`` (replacing it), verified.

    Raises BackupSetError naming the set file when its size or SHA-256 differs from the manifest or it does
    not decompress, BackupTargetError when the target cannot be read, OSError from the local file system.
    """
    tmp = f"{destination}.restoring"
    handle = fs.open(tmp, create=True)
    try:
        handle.truncate(0)
        _copy_checked(target, f"{folder}/{entry.name}", entry, handle, progress)
        handle.fsync()
    except BaseException:
        handle.close()
        _remove(fs, tmp)
        raise
    handle.close()
    fs.rename(tmp, destination)
    fs.fsync_dir(os.path.dirname(destination))


def _copy_checked(
    target: Target, name: str, entry: FileEntry, handle: FileHandle, progress: Callable[[int], None]
) -> None:
    sha = hashlib.sha256()
    size = 0
    pending: list[bytes] = []
    pending_size = 0

    def write_pending() -> None:
        nonlocal size, pending, pending_size
        handle.pwrite(b"".join(pending), size)
        size += pending_size
        progress(pending_size)
        pending, pending_size = [], 0

    try:
        for chunk in original_chunks(target.read_file(name), entry.compression):
            sha.update(chunk)
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= WRITE_CHUNK:
                write_pending()
    except zstandard.ZstdError as exc:
        raise BackupSetError(f"{target.url}/{name} does not decompress: {exc}", file=name) from None
    write_pending()
    if size != entry.size:
        raise BackupSetError(
            f"{target.url}/{name} holds {size} bytes, the manifest says {entry.size}: the set is damaged", file=name
        )
    if sha.hexdigest() != entry.sha256:
        raise BackupSetError(
            f"{target.url}/{name} does not match the SHA-256 in its manifest: the set is damaged", file=name
        )


def _remove(fs: FileSystem, path: str) -> None:
    with suppress(FileNotFoundError):  # why: the temporary file may not have been created
        fs.unlink(path)
