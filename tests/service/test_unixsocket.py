"""Sending pieces on a socket without joining them (service/unixsocket.py ``send_pieces``)."""

from __future__ import annotations

import socket
import threading
import time

from shadowstore.service.unixsocket import IOV_MAX, send_pieces


class _Counting(socket.socket):
    """A socket that counts the sends the kernel took only part of."""

    partial = 0

    def sendmsg(self, buffers, *args):  # type: ignore[no-untyped-def,override]
        buffers = list(buffers)
        sent = super().sendmsg(buffers, *args)
        if sent < sum(len(b) for b in buffers):
            _Counting.partial += 1
        return sent


def _receive_all(sock: socket.socket, into: list[bytes], slow: bool) -> None:
    while chunk := sock.recv(1 << 16):
        into.append(chunk)
        if slow:
            time.sleep(0.0005)  # why: the sender's buffer fills and its sends come back partial


def test_pieces_arrive_whole_and_in_order_through_partial_sends_and_over_the_vector_bound() -> None:
    pieces: list[bytes | memoryview] = []
    for i in range(3 * IOV_MAX + 7):
        size = (i * 7919) % 5000  # some empty
        block = bytes([i % 251]) * size
        pieces.append(memoryview(block)[1:] if i % 3 == 0 and size else block)
    big = bytes(range(256)) * 8000  # one piece larger than the socket's buffer
    pieces.insert(100, big)
    plain, receiver = socket.socketpair()
    sender = _Counting(fileno=plain.detach())
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    sender.settimeout(30)  # why: as the mail socket's connections have; sends may then be partial
    got: list[bytes] = []
    reader = threading.Thread(target=_receive_all, args=(receiver, got, True))
    reader.start()
    send_pieces(sender, pieces)
    sender.close()
    reader.join(30)
    receiver.close()
    assert b"".join(got) == b"".join(pieces)
    assert _Counting.partial > 0  # the partial sends were met, not avoided


def test_nothing_to_send_sends_nothing() -> None:
    sender, receiver = socket.socketpair()
    send_pieces(sender, [])
    send_pieces(sender, [b"", memoryview(b"")])
    sender.close()
    assert receiver.recv(10) == b""
    receiver.close()
