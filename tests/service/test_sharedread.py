"""Shared memory for large reads (service/sharedread.py): places, release marks and acknowledgements between
the service's side and the client's, on a socket pair in this process."""

from __future__ import annotations

import fcntl
import mmap
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import BinaryIO

import pytest

from shadowstore.errors import ServiceError
from shadowstore.service.sharedread import (
    PLACE,
    REGION,
    RELEASE,
    SharedRegions,
    SharedView,
    receive_head,
    shared_reads_work,
)
from shadowstore.service.unixsocket import send_pieces

pytestmark = pytest.mark.skipif(not shared_reads_work(), reason="this system cannot make or pass memory files")


def read_places(stream: BinaryIO, view: SharedView, client_end: socket.socket) -> tuple[list[bytes], int]:
    """What a client reads of a shared read up to the end frame: each placed message's bytes, and how many
    region marks it acknowledged."""
    got, acknowledged = [], 0
    while True:
        (length,) = struct.unpack(">I", stream.read(4))
        if length == 0:
            return got, acknowledged
        if length & PLACE:
            got.append(view.bytes_at(stream.read(length & ~PLACE)))
        else:
            assert stream.read(length) == RELEASE
            acknowledged += 1
            view.release(client_end)


def shared_read(frames: Callable[[SharedRegions, list[bytes | memoryview]], None]) -> tuple[list[bytes], int]:
    """A shared read over a socket pair: the service's side (a thread) offers the regions, lets ``frames`` place
    the messages and append their frames, and sends them with the end frame; the client's side checks that it
    can only read the regions and reads the places back. Returns what ``read_places`` returns."""
    service_end, client_end = socket.socketpair()
    service_end.settimeout(30)

    def serve() -> None:
        regions = SharedRegions(service_end)
        regions.offer(struct.pack(">I", 2) + b"{}")
        pending: list[bytes | memoryview] = []
        frames(regions, pending)
        pending.append(struct.pack(">I", 0))  # the end
        send_pieces(service_end, pending)
        regions.close()

    server = threading.Thread(target=serve)
    server.start()
    head, fd = receive_head(client_end)
    assert fd is not None
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY  # the client can only read the regions
    with pytest.raises(PermissionError):
        mmap.mmap(fd, 2 * REGION, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    view = SharedView(fd, 2 * REGION)
    stream = client_end.makefile("rb")
    assert stream.read(struct.unpack(">I", head)[0]) == b"{}"
    try:
        return read_places(stream, view, client_end)
    finally:
        server.join(30)
        view.close()
        stream.close()
        client_end.close()
        service_end.close()


def test_messages_placed_in_the_regions_arrive_whole_and_a_region_is_reused_only_once_acknowledged() -> None:
    messages = [bytes([n % 251]) * size for n, size in enumerate([10, REGION // 3, REGION // 2, REGION, 5] * 4)]

    def frames(regions: SharedRegions, pending: list[bytes | memoryview]) -> None:
        for message in messages:
            # a message in two pieces, as the store gives a long value's page payloads
            place = regions.place([message[: len(message) // 2], memoryview(message)[len(message) // 2 :]],
                                  len(message), pending)  # fmt: skip
            assert place is not None
            pending.append(place)

    got, acknowledged = shared_read(frames)
    assert got == messages
    assert acknowledged >= 8  # the regions were taken in turn many times


def test_a_message_larger_than_a_region_is_not_placed() -> None:
    service_end, client_end = socket.socketpair()
    regions = SharedRegions(service_end)
    assert regions.place([b"x" * (REGION + 1)], REGION + 1, []) is None
    assert regions.reserve(REGION + 1, []) is None
    regions.close()
    service_end.close()
    client_end.close()


def test_a_place_outside_the_regions_is_refused() -> None:
    fd = os.memfd_create("test", os.MFD_CLOEXEC)
    os.ftruncate(fd, 4096)
    view = SharedView(fd, 4096)
    with pytest.raises(ServiceError, match="outside the shared regions"):
        view.bytes_at(struct.pack(">QQ", 4000, 200))
    with pytest.raises(ServiceError, match="outside the shared regions"):  # one run of several
        view.bytes_at(struct.pack(">QQQQ", 0, 100, 4090, 10))
    assert view.bytes_at(struct.pack(">QQQQ", 0, 2, 10, 3)) == bytes(5)
    view.close()


def test_a_client_that_acknowledges_the_wrong_region_ends_the_read() -> None:
    service_end, client_end = socket.socketpair()
    service_end.settimeout(30)
    regions = SharedRegions(service_end)
    pending: list[bytes | memoryview] = []
    client_end.sendall(b"\x01")  # region 0 is due first
    regions.place([b"x" * REGION], REGION, pending)  # region 0
    regions.place([b"x" * REGION], REGION, pending)  # region 1
    with pytest.raises(ConnectionResetError, match="region 0 was due"):
        regions.place([b"x" * REGION], REGION, pending)  # region 0 again: its acknowledgement is wrong
    regions.close()
    service_end.close()
    client_end.close()


def test_pages_read_straight_into_a_region_arrive_as_the_runs_of_their_payloads() -> None:
    page, head = 4096, 24
    messages = [os.urandom(n) for n in (100, 5000, 9000, REGION // 2, REGION // 3, 1, 12_345)] * 3

    def frames(regions: SharedRegions, pending: list[bytes | memoryview]) -> None:
        for message in messages:
            chunks = [message[i : i + page - head] for i in range(0, len(message), page - head)]
            memory = regions.reserve(len(chunks) * page, pending)  # as the store reads a long value's pages
            assert memory is not None
            runs = []
            for n, chunk in enumerate(chunks):
                memory[n * page : n * page + head] = b"h" * head  # a page header: not the message's
                memory[n * page + head : n * page + head + len(chunk)] = chunk
                runs.append((n * page + head, len(chunk)))
            memory.release()
            pending.append(regions.runs_frame(runs))

    got, _acknowledged = shared_read(frames)
    assert got == messages
