"""Streaming the files of a backup set: reading ahead in a thread, hashing in a thread, the stored form."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import pytest
import zstandard

from shadowstore.backup.setfiles import BackgroundHash, original_chunks, read_ahead


def test_read_ahead_passes_chunks_in_order_and_raises_the_producers_error() -> None:
    assert list(read_ahead(iter([b"a", b"b", b"c"]), depth=1)) == [b"a", b"b", b"c"]

    def failing() -> Iterator[bytes]:
        yield b"first"
        raise OSError(5, "Input/output error")

    reader = read_ahead(failing())
    assert next(reader) == b"first"
    with pytest.raises(OSError, match="Input/output error"):
        next(reader)


def test_leaving_read_ahead_early_stops_and_closes_the_producer() -> None:
    closed = threading.Event()

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield b"x" * 1000
        finally:
            closed.set()

    reader = read_ahead(endless(), depth=2)
    assert next(reader) == b"x" * 1000
    reader.close()
    assert closed.wait(5)
    assert not [t for t in threading.enumerate() if t.name == "set-read"]


def test_a_background_hash_is_the_sha256_of_every_chunk_in_order() -> None:
    chunks = [os.urandom(n) for n in (0, 1, 4096, 100_000, 3)]
    released: list[int] = []
    digest = BackgroundHash()
    for i, chunk in enumerate(chunks):
        digest.update(chunk, lambda i=i: released.append(i))
    assert digest.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert released == list(range(len(chunks)))  # each chunk is handed back once hashed, in order
    digest.close()  # idempotent


def test_the_original_bytes_of_concatenated_zstd_frames() -> None:
    parts = [os.urandom(5000), b"z" * 70_000, b""]
    frames = [zstandard.ZstdCompressor(level=3).compress(p) for p in parts]
    stored = b"".join(frames)
    pieces = [stored[i : i + 777] for i in range(0, len(stored), 777)]  # cut anywhere, not at frame ends
    assert b"".join(original_chunks(pieces, "zstd")) == b"".join(parts)
    assert list(original_chunks([b"plain"], None)) == [b"plain"]
    with pytest.raises(zstandard.ZstdError):
        list(original_chunks([b"not zstd at all"], "zstd"))
