"""Reads of mail through memory shared with the reading client: the messages' bytes go through two regions of
a memory file, and the socket carries only their properties and places.

Why: through the socket the kernel copies every byte twice (into the socket, out of it) and the first copy is
the service's time; it was the largest part of a read's work in the service after the store's own reading of
pages. Here the service copies each message's verified page payloads into a region once, as a reader in the
service's own process joins them, and the client copies them out once, on its own processor.

How (service/mailsocket.py has the rest of the protocol):

* A client that was told ``mail_shared_read`` by ``GET /v1/health`` asks for it with ``"shared": true`` in its
  read request. The service makes a memory file of two regions of ``REGION`` bytes, maps it, and passes the
  client a descriptor of it opened read-only, with the first byte of its answer (SCM_RIGHTS). The client maps
  it read-only: it reads what the service puts there and can change nothing of it.
* The body of a message that fits a region is a place in it: the body's length word has its top bit set
  (``PLACE``) and the frame holds runs, each an offset and a length (8 bytes each, big-endian), whose bytes in
  order are the message's. One run when the service copied the message there; one per page when the store read
  its pages straight into the region (``reserve``): then the runs skip the page headers. A message longer than
  a region is sent in the stream as usual.
* When a region has no room for the next message, the service sends a release mark (a frame of the single
  byte ``R`` where the next message's properties would be) and goes on in the other region. Before it writes
  a region again it waits for the client's acknowledgement of that region's mark: one byte on the socket, sent
  when the client has read every message before the mark (and so copied it out).
* A shared read ends its connection: acknowledgements the service did not wait for may follow the trailer.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import socket
import struct
from pathlib import Path

from shadowstore.errors import ServiceError
from shadowstore.service.unixsocket import send_pieces

REGION = 4 << 20  # bytes per region; two per read, so 8 MiB of memory per shared read at most
SHARED_FROM = 8 * REGION  # bytes a read must hold to go through shared memory (mailsocket.py ``_share``)
PLACE = 0x8000_0000  # the top bit of a body's length word: the frame holds a place, not the bytes
MAX_PLACE = 16 * (REGION // 1024)  # bytes of runs a place may hold: one run per page of a region, and to spare
RELEASE = b"R"  # the frame that marks a region's end
_PLACE = struct.Struct(">IQQ")


def shared_reads_work() -> bool:
    """True where this system can make and pass memory files (Linux)."""
    return hasattr(os, "memfd_create") and hasattr(socket, "send_fds") and Path("/proc/self/fd").is_dir()


class SharedRegions:
    """The service's side of one shared read on ``conn``: ``body`` places a message's bytes and gives the frames
    that say where; ``pending`` collects what is to be sent; ``send`` sends it."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        fd = os.memfd_create("shadowstore-read", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, 2 * REGION)
            self.map = mmap.mmap(fd, 2 * REGION)
            try:
                # why reopen: a descriptor opened read-only can only be mapped read-only by the client
                self._reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.map.close()
                raise
        finally:
            os.close(fd)
        self._region = 0
        self._used = 0
        self._reserved = 0  # where the last reserve began
        self._unacknowledged = [False, False]

    def offer(self, answer: bytes) -> None:
        """Send ``answer`` (the read's first frame) with the memory file's read-only descriptor."""
        try:
            socket.send_fds(self.conn, [answer[:1]], [self._reader])
            self.conn.sendall(answer[1:])
        finally:
            os.close(self._reader)

    def place(self, pieces: list[bytes | memoryview], size: int, pending: list[bytes | memoryview]) -> bytes | None:
        """Copy a message's ``pieces`` (``size`` bytes) into a region and return the body frame that says where,
        or None when the message is larger than a region (its bytes go in the stream). When the region in use
        has no room, ``pending`` and the region's mark are sent first, and the other region is taken once the
        client has acknowledged it."""
        start = self._room(size, pending)
        if start is None:
            return None
        at = start
        for piece in pieces:
            end = at + len(piece)
            self.map[at:end] = piece
            at = end
        return _PLACE.pack(PLACE | 16, start, size)

    def reserve(self, size: int, pending: list[bytes | memoryview]) -> memoryview | None:
        """``size`` bytes of a region for the store to read a message's pages into (``runs_frame`` then says
        where its bytes are), or None when they do not fit a region; the region is taken as ``place`` takes it."""
        start = self._room(size, pending)
        if start is None:
            return None
        self._reserved = start
        with memoryview(self.map) as whole:
            return whole[start : start + size]

    def runs_frame(self, runs: list[tuple[int, int]]) -> bytes:
        """The body frame of the message last read into ``reserve``'s bytes, whose ``runs`` are (offset in those
        bytes, length)."""
        words = [n for offset, length in runs for n in (self._reserved + offset, length)]
        return struct.pack(f">I{len(words)}Q", PLACE | 8 * len(words), *words)

    def _room(self, size: int, pending: list[bytes | memoryview]) -> int | None:
        """Where ``size`` bytes go in a region, or None when they are more than a region holds. When the region in
        use has no room, ``pending`` and its mark are sent first, and the other region is taken once the client
        has acknowledged it."""
        if size > REGION:
            return None
        if self._used + size > REGION:
            pending.append(_RELEASE_FRAME)
            send_pieces(self.conn, pending)
            pending.clear()
            self._unacknowledged[self._region] = True
            self._region ^= 1
            self._used = 0
            if self._unacknowledged[self._region]:
                self._wait_for(self._region)
        start = self._region * REGION + self._used
        self._used += size
        return start

    def close(self) -> None:
        # why suppressed: a view of a read that failed may still be held by its traceback; the map goes with it
        with contextlib.suppress(BufferError):
            self.map.close()

    def _wait_for(self, region: int) -> None:
        got = self.conn.recv(1)
        if got != bytes([region]):
            raise ConnectionResetError(f"the client acknowledged {got!r} where region {region} was due")
        self._unacknowledged[region] = False


_RELEASE_FRAME = struct.pack(">I", len(RELEASE)) + RELEASE


class SharedView:
    """The client's side: the regions mapped read-only, and the acknowledgement of their marks."""

    def __init__(self, fd: int, size: int) -> None:
        try:
            self.map = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self._next = 0  # the region whose mark comes next

    def bytes_at(self, place: bytes) -> bytes:
        """The message bytes a place frame's runs name, copied out of the regions."""
        if len(place) == 16:  # one run: the common case, one copy
            offset, size = struct.unpack(">QQ", place)
            self._check(offset, size)
            return self.map[offset : offset + size]
        words = struct.unpack(f">{len(place) // 8}Q", place)
        for offset, size in zip(words[0::2], words[1::2], strict=True):
            self._check(offset, size)
        with memoryview(self.map) as whole:
            return b"".join([whole[o : o + n] for o, n in zip(words[0::2], words[1::2], strict=True)])

    def _check(self, offset: int, size: int) -> None:
        if offset + size > len(self.map):
            raise ServiceError(f"the service named bytes {offset:,}+{size:,} outside the shared regions")

    def release(self, sock: socket.socket) -> None:
        """Acknowledge the next region's mark. The service may have sent its last frame and closed: it waits for
        no acknowledgement after that, and a service that failed shows in the stream, so a refused one is
        ignored."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(bytes([self._next]))
        self._next ^= 1

    def close(self) -> None:
        self.map.close()


def receive_head(sock: socket.socket) -> tuple[bytes, int | None]:
    """The first four bytes of a read's answer (its first frame's length), and the memory file's descriptor
    when the service passed one with them."""
    data, fds, _flags, _address = socket.recv_fds(sock, 4, 1)
    head = data
    while len(head) < 4:
        more = sock.recv(4 - len(head))
        if not more:
            raise ConnectionResetError("the service closed the connection")
        head += more
    for extra in fds[1:]:
        os.close(extra)
    return head, (fds[0] if fds else None)
