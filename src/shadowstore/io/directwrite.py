"""Writing a long stream to a local file without copying it through the page cache.

A backup or a restore writes gigabytes that nobody reads soon. Through the page cache each byte costs a copy
into the cache and, later, writeback, and the copy competes for the CPU with verifying, hashing and
compressing. A ``DirectWriter`` gathers the chunks into page-aligned buffers and writes each full buffer with
``O_DIRECT`` from threads of their own: the device reads the buffer itself, and the write overlaps with
producing the next chunks. The tail that does not fill a buffer is written through the page cache. Where the
file system refuses ``O_DIRECT`` (tmpfs, some FUSE file systems) everything goes through the page cache.
Either way the data are durable only after the caller's fsync, which also covers the file's size and extents.
``PositionalWriter`` offers the same interface over any ``pwrite`` (the fault-injecting file system).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import queue
import threading
from collections.abc import Callable

BUFFER = 8 << 20  # a multiple of every logical block size O_DIRECT may require
WRITERS = 2  # writes in flight: a virtual disk moved ~15% more with two than with one (docs/performance.md)


class DirectWriter:
    """Writes chunks one after another into the open file ``fd`` from offset 0 (opened without ``O_DIRECT``).

    ``write`` raises the OSError of an earlier failed write (the writes run behind); ``finish`` writes the
    tail, waits for everything and returns the bytes written; ``close`` releases the buffers and is safe to
    call after a failure. Use as a context manager. Full buffers are written by ``writers`` threads at once,
    each at its own offset.
    """

    def __init__(self, fd: int, buffer_size: int = BUFFER, writers: int = WRITERS) -> None:
        self.fd = fd
        self.buffer_size = buffer_size
        self.direct = _set_direct(fd, True)
        self._writers = writers if self.direct else 0
        count = writers + 2 if self.direct else 1  # one being filled, one waiting, the others being written
        self._buffers = [mmap.mmap(-1, buffer_size) for _ in range(count)]
        self._free: queue.Queue[mmap.mmap] = queue.Queue()
        for buf in self._buffers[1:]:
            self._free.put(buf)
        self._current = self._buffers[0]
        self._filled = 0
        self._offset = 0  # of the buffer being filled
        self._full: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._error: OSError | None = None

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    def write(self, chunk: bytes | memoryview) -> None:
        with memoryview(chunk) as data:
            while data:
                room = self.buffer_size - self._filled
                take = min(room, len(data))
                self._current[self._filled : self._filled + take] = data[:take]
                self._filled += take
                data = data[take:]
                if self._filled == self.buffer_size:
                    self._submit()

    def finish(self) -> int:
        """Write what remains, wait for every write and return the number of bytes written."""
        self._drain()
        if self._filled:
            _set_direct(self.fd, False)  # the tail is not a whole number of blocks
            self._write_out(self._current, self._filled, self._offset)
            self._offset += self._filled
            self._filled = 0
        return self._offset

    def close(self) -> None:
        self._drain(raise_error=False)
        for buf in self._buffers:
            buf.close()
        self._buffers = []

    def _submit(self) -> None:
        if not self._writers:
            self._write_out(self._current, self._filled, self._offset)
        else:
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name="stream-write", daemon=True) for _ in range(self._writers)
                ]
                for thread in self._threads:
                    thread.start()
            self._full.put((self._current, self._offset))
            self._current = self._free.get()
        self._offset += self._filled
        self._filled = 0
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._full.get()) is not None:
            buf, offset = item
            if self._error is None:
                try:
                    self._write_out(buf, self.buffer_size, offset)
                except OSError as exc:
                    self._error = exc
            self._free.put(buf)

    def _drain(self, raise_error: bool = True) -> None:
        for _ in self._threads:
            self._full.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []
        if raise_error and self._error is not None:
            raise self._error

    def _write_out(self, buf: mmap.mmap, length: int, offset: int) -> None:
        done = 0
        with memoryview(buf) as whole:
            while done < length:
                with whole[done:length] as view:  # why: released even when the exception outlives us
                    try:
                        count = os.pwrite(self.fd, view, offset + done)
                    except OSError as exc:
                        # why: a device may want bigger blocks than ours, or a short write left the offset
                        # unaligned; the page cache takes any size
                        if exc.errno == errno.EINVAL and self.direct:
                            self.direct = _set_direct(self.fd, False)
                            continue
                        raise
                done += count


class PositionalWriter:
    """The same interface over any ``pwrite``: for files that are not OS files (the fault-injecting file
    system)."""

    def __init__(self, pwrite: Callable[[bytes | bytearray | memoryview, int], None]) -> None:
        self._pwrite = pwrite
        self.written = 0

    def __enter__(self) -> PositionalWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    def write(self, chunk: bytes | memoryview) -> None:
        self._pwrite(chunk, self.written)
        self.written += len(chunk)

    def finish(self) -> int:
        return self.written

    def close(self) -> None:
        pass


def _set_direct(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for ``fd``; returns whether it is now on (False if the file system
    refuses it)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    wanted = flags | os.O_DIRECT if on else flags & ~os.O_DIRECT
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, wanted)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    return on
