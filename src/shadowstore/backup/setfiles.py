"""Storing one file of a backup set: hash the original bytes, compress (optionally), hash what is stored,
write it to the target atomically — all in one streaming pass."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

import zstandard

from shadowstore.backup.manifest import FileEntry
from shadowstore.backup.target import Buffer, Target
from shadowstore.format.common import crc32c
from shadowstore.io.blockread import Block, Countdown

ZSTD_SUFFIX = ".zst"
COMPRESS_THREADS = max(1, min(4, os.cpu_count() or 1))
COMPRESS_AHEAD = 2 * COMPRESS_THREADS  # chunks being compressed ahead of the writer
DEFAULT_ZSTD_LEVEL = 3
READ_AHEAD = 4  # chunks read ahead of their consumer (see read_ahead)


class BackgroundHash:
    """SHA-256 computed in a thread of its own (hashlib releases the interpreter lock), so hashing overlaps
    with reading, verifying and writing. ``update`` takes bytes that are not changed until ``done`` (if given)
    is called from the hashing thread."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[tuple[Buffer, Callable[[], None]] | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="backup-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            chunk, done = item
            self._sha.update(chunk)
            done()

    def update(self, chunk: Buffer, done: Callable[[], None] = lambda: None) -> None:
        self._queue.put((chunk, done))

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class _Counted:
    """Feeds chunks through, hashing and counting both sides of the compression. A chunk may be a
    :class:`Block` that lends its buffer; it is released once it is hashed and written (or compressed)."""

    def __init__(self, chunks: Iterable[bytes | Block], level: int | None, progress: Callable[[int], None]) -> None:
        self.chunks = chunks
        self.level = level
        self.progress = progress
        self.size = 0
        self.stored = 0
        self.sha = BackgroundHash()
        self.stored_crc = 0  # CRC-32C of the stored bytes: cheap, so compression and hashing get the CPU

    def __iter__(self) -> Iterator[Buffer]:
        try:
            if self.level is None:
                for item in self.chunks:
                    data, done = self._original(item)
                    try:
                        yield self._stored(data)  # why this order: the writer is done with it when we resume
                    finally:
                        done()
            else:
                yield from self._compressed(self.level)
        finally:
            self.sha.close()

    def _original(self, item: bytes | Block) -> tuple[Buffer, Callable[[], None]]:
        """Count and hash ``item``; returns its bytes and what to call (twice: once more by the hash) when
        this side is done with them."""
        if isinstance(item, Block):
            data: Buffer = item.data
            done: Callable[[], None] = Countdown(2, item.release)
        else:
            data, done = item, lambda: None
        self.size += len(data)
        self.sha.update(data, done)
        self.progress(len(data))
        return data, done

    def _compressed(self, level: int) -> Iterator[Buffer]:
        """Each chunk becomes a zstd frame of its own; the file is their concatenation, which every zstd
        decompressor reads as one stream. Frames are compressed on worker threads (zstd releases the
        interpreter lock) while the next chunks are read and verified, and are yielded in order."""
        compressors: queue.SimpleQueue[zstandard.ZstdCompressor] = queue.SimpleQueue()
        for _ in range(COMPRESS_THREADS):  # why one each: a compressor is not safe to share between threads
            compressors.put(zstandard.ZstdCompressor(level=level))

        def compress(chunk: Buffer) -> Buffer:
            compressor = compressors.get()
            try:
                return compressor.compress(chunk)
            finally:
                compressors.put(compressor)

        pending: deque[Future[Buffer]] = deque()
        with ThreadPoolExecutor(max_workers=COMPRESS_THREADS, thread_name_prefix="backup-zstd") as workers:
            try:
                for item in self.chunks:
                    data, done = self._original(item)
                    future = workers.submit(compress, data)
                    future.add_done_callback(lambda _, done=done: done())  # type: ignore[misc]
                    pending.append(future)
                    while len(pending) > COMPRESS_AHEAD or (pending and pending[0].done()):
                        yield self._stored(pending.popleft().result())
                while pending:
                    yield self._stored(pending.popleft().result())
            finally:
                for future in pending:  # why: a failed read or write must not wait for frames nobody wants
                    future.cancel()

    def _stored(self, data: Buffer) -> Buffer:
        self.stored += len(data)
        self.stored_crc = crc32c(data, self.stored_crc)
        return data


def store_file(
    target: Target,
    folder: str,
    source: str,
    role: str,
    chunks: Iterable[bytes | Block],
    *,
    level: int | None,
    generation: int | None = None,
    size: int | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> FileEntry:
    """Write ``chunks`` (the content of ``source``) into ``folder`` of ``target``; returns its manifest entry.

    With ``level`` the file is zstd-compressed and named ``source.zst``. ``size``, the bytes ``chunks`` will
    give when known, lets an object store choose its part size (a multi-terabyte store on S3). Raises what the
    target raises (BackupTargetError, BackupTargetFullError) and what the chunks raise (e.g. -1018 from a
    database copy).
    """
    name = source + (ZSTD_SUFFIX if level is not None else "")
    counted = _Counted(chunks, level, progress)
    target.write_file(f"{folder}/{name}", counted, size_hint=size)
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
    decompressor = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    for chunk in stored:
        out = decompressor.decompress(chunk)
        if out:
            yield out


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


def read_ahead(chunks: Iterator[bytes], depth: int = READ_AHEAD) -> Iterator[bytes]:
    """``chunks``, produced by a thread of their own up to ``depth`` ahead of the consumer (reading and
    decompressing overlap with hashing, checking and writing). An exception of the producer is raised here;
    leaving early stops and closes the producer."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                handoff.put(chunk)
            handoff.put(_END)
        except BaseException as exc:  # why: handed to the consumer, which raises it
            handoff.put(_Failed(exc))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="set-read", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # why: a producer blocked on a full queue must be able to see the stop
            with suppress(queue.Empty):
                handoff.get(timeout=0.05)
        thread.join()
