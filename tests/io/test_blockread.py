"""Reading long stretches in lent blocks: O_DIRECT on a real file system, plain reads where it cannot be."""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any

import pytest

from shadowstore.io.blockread import Block, BufferedBlocks, Countdown, DirectBlocks, open_direct, owned
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.io.fs import OsFileSystem

BLOCK = 64 * 1024


@pytest.fixture
def content(tmp_path: os.PathLike[str]) -> tuple[str, bytes]:
    data = os.urandom(10 * BLOCK + 12345)  # the file does not end on a block or page boundary
    path = os.path.join(tmp_path, "store.edb")
    with open(path, "wb") as f:
        f.write(data)
    return path, data


def read_all(blocks: DirectBlocks | BufferedBlocks) -> list[tuple[int, bytes]]:
    return [(block.offset, b"".join(owned([block]))) for block in blocks]


@pytest.mark.parametrize(
    ("offset", "end"),
    [(0, 10 * BLOCK), (8192, 7 * BLOCK + 8192), (4096, 11 * BLOCK), (0, 10 * BLOCK + 12345), (BLOCK, BLOCK + 4096)],
)
def test_direct_blocks_hold_exactly_the_stretch(content: tuple[str, bytes], offset: int, end: int) -> None:
    path, data = content
    reader = open_direct(path, offset, end, BLOCK)
    if reader is None:
        pytest.skip(f"the file system under {path} refuses O_DIRECT")
    with reader:
        got = read_all(reader)
    stop = min(end, len(data))
    assert b"".join(chunk for _, chunk in got) == data[offset:stop]
    assert [o for o, _ in got] == list(range(offset, stop, BLOCK))


def test_a_held_block_keeps_its_bytes_while_later_blocks_are_read(content: tuple[str, bytes]) -> None:
    path, data = content
    reader = open_direct(path, 0, len(data), BLOCK)
    if reader is None:
        pytest.skip(f"the file system under {path} refuses O_DIRECT")
    with reader:
        blocks = iter(reader)
        first = next(blocks)
        for block in blocks:  # more blocks than the ring holds: every other buffer is reused many times
            assert bytes(block.data) == data[block.offset : block.offset + len(block)]
            block.release()
        assert bytes(first.data) == data[:BLOCK]
        first.release()
        first.release()  # idempotent


class SlowEvenBlocks(DirectBlocks):
    """Every other read takes longer, so that reads in flight finish out of order."""

    def _read(self, buf: Any, offset: int) -> int:
        if offset // BLOCK % 2 == 0:
            time.sleep(0.01)
        return super()._read(buf, offset)


@pytest.mark.parametrize("readers", [1, 2, 4])
def test_blocks_come_in_file_order_however_the_reads_finish(content: tuple[str, bytes], readers: int) -> None:
    path, data = content
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        pytest.skip(f"the file system under {path} refuses O_DIRECT")
    with SlowEvenBlocks(fd, 0, len(data), BLOCK, depth=readers + 2, readers=readers) as reader:
        got = read_all(reader)
    assert [o for o, _ in got] == list(range(0, len(data), BLOCK))
    assert b"".join(chunk for _, chunk in got) == data


def test_a_failed_read_is_raised_where_its_block_would_have_been(content: tuple[str, bytes]) -> None:
    path, data = content

    class FailsAtThird(DirectBlocks):
        def _read(self, buf: Any, offset: int) -> int:
            if offset == 2 * BLOCK:
                raise OSError(errno.EIO, "Input/output error")
            return super()._read(buf, offset)

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        pytest.skip(f"the file system under {path} refuses O_DIRECT")
    offsets = []

    def consume(reader: DirectBlocks) -> None:
        for block in reader:
            offsets.append(block.offset)
            block.release()

    with FailsAtThird(fd, 0, len(data), BLOCK) as reader, pytest.raises(OSError, match="Input/output"):
        consume(reader)
    assert offsets == [0, BLOCK]


def test_closing_early_stops_the_reader(content: tuple[str, bytes]) -> None:
    path, data = content
    reader = open_direct(path, 0, len(data), BLOCK)
    if reader is None:
        pytest.skip(f"the file system under {path} refuses O_DIRECT")
    block = next(iter(reader))
    reader.close()
    reader.close()
    assert not any(t.name.startswith("backup-read") and t.is_alive() for t in threading.enumerate())
    assert bytes(block.data) == data[:BLOCK]  # still valid: not released


def test_the_os_file_system_reads_blocks_of_the_open_file_even_if_the_name_now_leads_elsewhere(
    content: tuple[str, bytes],
) -> None:
    path, data = content
    fs = OsFileSystem()
    handle = fs.open(path, readonly=True)
    try:
        os.rename(path, path + ".moved")
        with open(path, "wb") as f:
            f.write(b"a stranger" * 1000)
        with handle.read_blocks(8192, len(data), BLOCK) as blocks:
            assert b"".join(owned(blocks)) == data[8192:]
        with handle.read_blocks(100, 5000, BLOCK) as blocks:  # unaligned: read through the page cache
            assert isinstance(blocks, BufferedBlocks)
            assert b"".join(owned(blocks)) == data[100:5000]
    finally:
        handle.close()


def test_the_fault_file_system_lends_plain_bytes() -> None:
    fs = FaultFileSystem(seed=1)
    fs.makedirs("/d")
    handle = fs.open("/d/f", create=True)
    handle.pwrite(b"x" * 5000 + b"y" * 5000, 0)
    with handle.read_blocks(1000, 20000, 4096) as blocks:
        got = list(blocks)
    assert [b.offset for b in got] == [1000, 5096, 9192]
    assert b"".join(bytes(b.data) for b in got) == (b"x" * 5000 + b"y" * 5000)[1000:]


def test_countdown_acts_once_after_the_last_call_from_any_thread() -> None:
    fired: list[int] = []
    countdown = Countdown(8, lambda: fired.append(1))
    threads = [threading.Thread(target=countdown) for _ in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fired == []
    countdown()
    assert fired == [1]


def test_owned_copies_and_releases() -> None:
    released: list[int] = []
    buf = bytearray(b"abc")
    block = Block(0, memoryview(buf), lambda: released.append(1))
    [copy] = list(owned([block]))
    buf[:] = b"zzz"
    assert copy == b"abc"
    assert released == [1]
    assert list(owned([b"plain"])) == [b"plain"]
