"""Copying one file of a backup set out of its target, checking it as it streams.

The stored bytes are read and decompressed by a thread as they arrive; the original bytes are hashed (SHA-256)
and counted, and written (with O_DIRECT where the file system allows) to a temporary name beside the
destination. Only a file whose size and hash match the manifest is fsynced and renamed into place (then the
folder is fsynced), so a destination file either is a verified copy or does not exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import zstandard

from shadowstore.backup.manifest import FileEntry
from shadowstore.backup.setfiles import original_chunks, read_ahead
from shadowstore.backup.target import Target
from shadowstore.errors import BackupSetError
from shadowstore.io.fs import FileHandle, FileSystem, StreamWriter
from shadowstore.io.replace import replace_durably

READ_CHUNK = 8 << 20  # bytes per read from the target


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

    def fill(handle: FileHandle) -> None:
        with handle.stream_writer() as writer:
            _copy_checked(target, f"{folder}/{entry.name}", entry, writer, progress)

    replace_durably(fs, destination, fill, suffix=".restoring")


def _copy_checked(
    target: Target, name: str, entry: FileEntry, writer: StreamWriter, progress: Callable[[int], None]
) -> None:
    """Three stages at once: a thread reads (and decompresses), this one hashes, the writer's thread writes."""
    sha = hashlib.sha256()
    size = 0
    try:
        for chunk in read_ahead(original_chunks(target.read_file(name, READ_CHUNK), entry.compression)):
            sha.update(chunk)
            writer.write(chunk)
            size += len(chunk)
            progress(len(chunk))
    except zstandard.ZstdError as exc:
        raise BackupSetError(f"{target.url}/{name} does not decompress: {exc}", file=name) from None
    writer.finish()
    if size != entry.size:
        raise BackupSetError(
            f"{target.url}/{name} holds {size} bytes, the manifest says {entry.size}: the set is damaged", file=name
        )
    if sha.hexdigest() != entry.sha256:
        raise BackupSetError(
            f"{target.url}/{name} does not match the SHA-256 in its manifest: the set is damaged", file=name
        )
