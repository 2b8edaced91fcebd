"""Reading a long stretch of a file once, in big blocks, without copying it through the page cache.

A backup reads every page of a store exactly once. Through the page cache each byte is first placed in the
cache, then copied into a new buffer; on a small machine that costs about as much CPU as compressing it. A
:class:`DirectBlocks` reader instead reads with ``O_DIRECT`` into a ring of page-aligned buffers from threads
of its own, a few blocks ahead of the consumer. The consumer gets :class:`Block` objects that *lend* a buffer:
the bytes stay valid until ``release`` is called, and the buffer is then filled again. Every block must be
released (a :class:`Countdown` helps when several threads use it), or the reader stops when it runs out.

``O_DIRECT`` reads are coherent with buffered writes to the same file (the kernel writes dirty cached pages of
the range before reading), so a reader can run while the engine writes other pages of the store. Where the file
system refuses ``O_DIRECT`` the blocks are plain ``pread`` results that need no release.
"""

# why: a door to the OS like fs.py; it calls os.* on purpose

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

DEPTH = 6  # buffers in the ring: the reader runs up to this many blocks ahead
READERS = 2  # reads in flight: a virtual disk moved ~15% more with two than with one (docs/performance.md)
ALIGNMENT = 4096  # of offsets and sizes: the largest logical block size O_DIRECT asks for in practice


class Block:
    """``data`` is the content of ``[offset, offset + len(data))``, valid until :meth:`release`."""

    __slots__ = ("_release", "data", "offset")

    def __init__(self, offset: int, data: memoryview | bytes, release: Callable[[], None] | None = None) -> None:
        self.offset = offset
        self.data = data
        self._release = release

    def __len__(self) -> int:
        return len(self.data)

    def release(self) -> None:
        """Give the buffer back (idempotent). Whoever holds ``data`` after this sees other bytes."""
        release, self._release = self._release, None
        if release is not None:
            release()


class Countdown:
    """Calls ``action`` once, when it has itself been called ``count`` times (from any threads)."""

    def __init__(self, count: int, action: Callable[[], None]) -> None:
        self._count = count
        self._action = action
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self._count -= 1
            fire = self._count == 0
        if fire:
            self._action()


def owned(chunks: Iterable[bytes | Block]) -> Iterator[bytes]:
    """Each chunk as bytes of its own: a block is copied, then released. For a consumer that keeps chunks."""
    for chunk in chunks:
        if isinstance(chunk, Block):
            data = bytes(chunk.data)
            chunk.release()
            yield data
        else:
            yield chunk


class BufferedBlocks:
    """Blocks of ``[offset, end)`` read with ``pread(size, offset)`` when asked for; each owns its bytes. The
    last block is short at the end of the file. The same interface as :class:`DirectBlocks`."""

    def __init__(self, pread: Callable[[int, int], bytes], offset: int, end: int, block_size: int) -> None:
        self._pread = pread
        self._offset = offset
        self._end = end
        self._block_size = block_size

    def __enter__(self) -> BufferedBlocks:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Block]:
        offset, end = self._offset, self._end
        while offset < end:
            want = min(self._block_size, end - offset)
            data = self._pread(want, offset)
            if data:
                yield Block(offset, data)
            if len(data) < want:
                return
            offset += want

    def close(self) -> None:
        pass


class DirectBlocks:
    """Blocks of ``[offset, end)`` of the open file ``fd`` read with ``O_DIRECT`` ahead of the consumer.

    ``offset`` and ``block_size`` must be multiples of ``ALIGNMENT``. Use as a context manager, or call :meth:`close`:
    it stops the reader. Raises the reader's OSError where the block would have been. The last block is short
    at the end of the file. Use :func:`open_direct` to get one, which falls back to buffered reads.

    ``readers`` reads are in flight at once, and blocks are delivered in file order whichever finishes first.
    """

    def __init__(
        self, fd: int, offset: int, end: int, block_size: int, depth: int = DEPTH, readers: int = READERS
    ) -> None:
        self._fd = fd
        self._block_size = block_size
        self._free: queue.SimpleQueue[mmap.mmap | None] = queue.SimpleQueue()
        for _ in range(depth):
            self._free.put(mmap.mmap(-1, block_size))
        self._ready: queue.SimpleQueue[Future[tuple[Block, int]] | None] = queue.SimpleQueue()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, args=(offset, end, readers), name="backup-read", daemon=True)
        self._thread.start()

    def __enter__(self) -> DirectBlocks:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Block]:
        while (future := self._ready.get()) is not None:
            block, count = future.result()  # raises the read's OSError
            if len(block):
                yield block
            else:
                block.release()
            if count < self._block_size:  # the end of the file
                return

    def close(self) -> None:
        """Stop the reader and close the file. Blocks not yet released stay valid until they are."""
        if self._fd < 0:
            return
        self._stopped = True
        self._free.put(None)  # wakes the reader if it waits for a buffer
        self._thread.join()
        os.close(self._fd)
        self._fd = -1

    def _run(self, offset: int, end: int, readers: int) -> None:
        """Hand out buffers and offsets to the read threads, in file order, until ``end`` or ``close``."""
        try:
            with ThreadPoolExecutor(readers, thread_name_prefix="backup-read") as pool:
                while offset < end and not self._stopped:
                    buf = self._free.get()
                    if buf is None:
                        return
                    self._ready.put(pool.submit(self._fill, buf, offset, end))
                    offset += self._block_size
        finally:
            self._ready.put(None)

    def _fill(self, buf: mmap.mmap, offset: int, end: int) -> tuple[Block, int]:
        """The block at ``offset`` and the number of bytes the read returned."""
        try:
            count = self._read(buf, offset)
        except BaseException:
            self._free.put(buf)
            raise
        data = memoryview(buf)[: max(0, min(count, end - offset))]
        return Block(offset, data, lambda: self._free.put(buf)), count

    def _read(self, buf: mmap.mmap, offset: int) -> int:
        try:
            return os.preadv(self._fd, [buf], offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        # why: the device wants a larger alignment than ours; the page cache takes any
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)
        return os.preadv(self._fd, [buf], offset)


def open_direct(path: str, offset: int, end: int, block_size: int) -> DirectBlocks | None:
    """A :class:`DirectBlocks` reader of ``path`` (on Linux ``/proc/self/fd/N`` names an open file itself), or
    None where ``O_DIRECT`` is not possible: the file system refuses it or the stretch is not aligned."""
    if offset % ALIGNMENT or block_size % ALIGNMENT:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT, errno.EOPNOTSUPP):
            return None
        raise
    return DirectBlocks(fd, offset, end, block_size)


BlockReader = DirectBlocks | BufferedBlocks
