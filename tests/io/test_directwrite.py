"""Writing a backup file with O_DIRECT from aligned buffers, and through the page cache where it cannot."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from shadowstore.io import directwrite
from shadowstore.io.directwrite import DirectWriter

BUFFER = 64 * 1024


def write(path: str, pieces: list[bytes], **kwargs: int) -> tuple[int, bool]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with DirectWriter(fd, buffer_size=BUFFER, **kwargs) as writer:
            direct = writer.direct
            for piece in pieces:
                writer.write(piece)
            written = writer.finish()
        os.fsync(fd)
    finally:
        os.close(fd)
    return written, direct


@pytest.mark.parametrize("size", [0, 1, BUFFER - 1, BUFFER, BUFFER + 1, 3 * BUFFER + BUFFER // 2, 8 * BUFFER])
@pytest.mark.parametrize("piece", [1000, BUFFER, 3 * BUFFER + 7])
@pytest.mark.parametrize("writers", [1, 3])
def test_the_file_holds_exactly_what_was_written(
    tmp_path: os.PathLike[str], size: int, piece: int, writers: int
) -> None:
    data = os.urandom(size)
    path = os.path.join(tmp_path, "f")
    pieces = [data[i : i + piece] for i in range(0, size, piece)]
    written, direct = write(path, pieces, writers=writers)
    assert written == size
    with open(path, "rb") as f:
        assert f.read() == data
    if size >= BUFFER:
        assert direct, "tmp_path is on a local file system, which takes O_DIRECT"


def test_without_o_direct_the_page_cache_takes_everything(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directwrite, "_set_direct", lambda fd, on: False)  # a file system that refuses it
    data = os.urandom(5 * BUFFER + 3)
    path = os.path.join(tmp_path, "f")
    written, direct = write(path, [data[i : i + 5000] for i in range(0, len(data), 5000)])
    assert not direct
    assert written == len(data)
    with open(path, "rb") as f:
        assert f.read() == data


def test_a_failed_write_is_raised_and_close_still_releases_everything(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "f")
    with open(path, "wb"):
        pass
    fd = os.open(path, os.O_RDONLY)  # every write fails
    try:
        writer = DirectWriter(fd, buffer_size=BUFFER)
        failure = None
        try:  # the failure surfaces at a later write or at finish
            for _ in range(10):
                writer.write(bytes(BUFFER))
            writer.finish()
        except OSError as exc:
            failure = exc
        assert failure is not None
        assert failure.errno == errno.EBADF
        writer.close()
        writer.close()
    finally:
        os.close(fd)
    assert not any(t.name == "stream-write" and t.is_alive() for t in threading.enumerate())
