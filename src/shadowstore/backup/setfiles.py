"""Storing one file of a backup set: hash the original bytes, compress (optionally), hash what is stored,
write it to the target atomically — all in one streaming pass."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import zstandard

from shadowstore.backup.manifest import FileEntry
from shadowstore.backup.target import Target
from shadowstore.format.common import crc32c

ZSTD_SUFFIX = ".zst"
COMPRESS_AHEAD = 4  # chunks compressed ahead of the writer
DEFAULT_ZSTD_LEVEL = 3


class BackgroundHash:
    """SHA-256 computed in a thread of its own (hashlib releases the interpreter lock), so hashing overlaps
    with reading, verifying and writing. ``update`` takes bytes that are not changed afterwards."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="backup-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._sha.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class _Counted:
    """Feeds chunks through, hashing and counting both sides of the compression."""

    def __init__(self, chunks: Iterable[bytes], level: int | None, progress: Callable[[int], None]) -> None:
        self.chunks = chunks
        self.level = level
        self.progress = progress
        self.size = 0
        self.stored = 0
        self.sha = BackgroundHash()
        self.stored_crc = 0  # CRC-32C of the stored bytes: cheap, so compression and hashing get the CPU

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self.level is None:
                for chunk in self.chunks:
                    self._original(chunk)
                    yield self._stored(chunk)
            else:
                yield from self._compressed(self.level)
        finally:
            self.sha.close()

    def _original(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.sha.update(chunk)
        self.progress(len(chunk))

    def _compressed(self, level: int) -> Iterator[bytes]:
        """One zstd stream; the compression of each chunk runs in a worker thread (zstd releases the
        interpreter lock) while the next chunk is read and verified."""
        compressor = zstandard.ZstdCompressor(level=level).compressobj()
        pending: deque[Future[bytes]] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup-zstd") as worker:
            for chunk in self.chunks:
                self._original(chunk)
                pending.append(worker.submit(compressor.compress, chunk))
                while len(pending) > COMPRESS_AHEAD or (pending and pending[0].done()):
                    out = pending.popleft().result()
                    if out:
                        yield self._stored(out)
            while pending:
                out = pending.popleft().result()
                if out:
                    yield self._stored(out)
        tail = compressor.flush()
        if tail:
            yield self._stored(tail)

    def _stored(self, data: bytes) -> bytes:
        self.stored += len(data)
        self.stored_crc = crc32c(data, self.stored_crc)
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
        stored_crc32c=f"{counted.stored_crc:08x}",
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
