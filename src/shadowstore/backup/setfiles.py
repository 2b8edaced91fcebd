"""Storing one file of a backup set: hash the original bytes, compress (optionally), hash what is stored,
write it to the target atomically — all in one streaming pass."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator

import zstandard

from shadowstore.backup.manifest import FileEntry
from shadowstore.backup.target import Target

ZSTD_SUFFIX = ".zst"
DEFAULT_ZSTD_LEVEL = 3


class _Counted:
    """Feeds chunks through, hashing and counting both sides of the compression."""

    def __init__(self, chunks: Iterable[bytes], level: int | None, progress: Callable[[int], None]) -> None:
        self.chunks = chunks
        self.level = level
        self.progress = progress
        self.size = 0
        self.stored = 0
        self.sha = hashlib.sha256()
        self.stored_sha = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        compressor = zstandard.ZstdCompressor(level=self.level).compressobj() if self.level is not None else None
        for chunk in self.chunks:
            self.size += len(chunk)
            self.sha.update(chunk)
            self.progress(len(chunk))
            out = compressor.compress(chunk) if compressor is not None else chunk
            if out:
                yield self._stored(out)
        if compressor is not None:
            tail = compressor.flush()
            if tail:
                yield self._stored(tail)

    def _stored(self, data: bytes) -> bytes:
        self.stored += len(data)
        self.stored_sha.update(data)
        return data


def store_file(
    target: Target,
    folder: str,
    source: str,
    role: str,
    chunks: Iterable[bytes],
    *,
    level: int | None,
    generation: int | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> FileEntry:
    """Write ``chunks`` (the content of ``source``) into ``folder`` of ``target``; returns its manifest entry.

    With ``level`` the file is zstd-compressed and named ``source.zst``. Raises what the target raises
    (BackupTargetError, BackupTargetFullError) and what the chunks raise (e.g. -1018 from a database copy).
    """
    name = source + (ZSTD_SUFFIX if level is not None else "")
    counted = _Counted(chunks, level, progress)
    target.write_file(f"{folder}/{name}", counted)
    return FileEntry(
        name=name,
        role=role,
        source=source,
        size=counted.size,
        sha256=counted.sha.hexdigest(),
        stored_size=counted.stored,
        stored_sha256=counted.stored_sha.hexdigest(),
        compression="zstd" if level is not None else None,
        generation=generation,
    )


def original_chunks(stored: Iterable[bytes], compression: str | None) -> Iterator[bytes]:
    """The original bytes of a stored file, from its stored chunks."""
    if compression is None:
        yield from stored
        return
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    for chunk in stored:
        out = decompressor.decompress(chunk)
        if out:
            yield out
