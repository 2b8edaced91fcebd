"""Space management of a store file: which pages the durable header uses and which may be written.

Two views are kept apart:

* ``used`` (a bitmap, persisted as the space-map blob at every checkpoint) is exactly the set of pages the
  durable header refers to: tree pages, value blobs, the catalog and the space map itself. On mount every other
  page is free.
* ``free`` (extents in memory) is what the next checkpoint may write. A page leaves ``used`` when a checkpoint
  makes a header durable that no longer refers to it, but it joins ``free`` only when no reader snapshot or
  backup pin can still reach it (see Store.release_horizon).

Why: copy-on-write pages are only safe if a page the durable header (or a live reader) refers to is never
overwritten; keeping the two sets apart makes that rule a one-line check.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from shadowstore.format.dbheader import HEADER_PAGES


class FreeExtents:
    """Free pages as sorted, merged extents ``[start, start+count)``."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._counts: list[int] = []

    def __len__(self) -> int:
        return sum(self._counts)

    def extents(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._counts, strict=True))

    def add_run(self, start: int, count: int) -> None:
        """Mark ``[start, start+count)`` free. Requires: none of those pages is free already."""
        if count <= 0:
            return
        i = bisect.bisect_left(self._starts, start)
        if i > 0 and self._starts[i - 1] + self._counts[i - 1] > start:
            raise ValueError(f"page {start} is already free")
        if i < len(self._starts) and start + count > self._starts[i]:
            raise ValueError(f"page {self._starts[i]} is already free")
        merge_left = i > 0 and self._starts[i - 1] + self._counts[i - 1] == start
        merge_right = i < len(self._starts) and start + count == self._starts[i]
        if merge_left and merge_right:
            self._counts[i - 1] += count + self._counts[i]
            del self._starts[i], self._counts[i]
        elif merge_left:
            self._counts[i - 1] += count
        elif merge_right:
            self._starts[i] = start
            self._counts[i] += count
        else:
            self._starts.insert(i, start)
            self._counts.insert(i, count)

    def add_pages(self, pages: Iterable[int]) -> None:
        run_start = run_len = 0
        for page in sorted(pages):
            if run_len and page == run_start + run_len:
                run_len += 1
                continue
            if run_len:
                self.add_run(run_start, run_len)
            run_start, run_len = page, 1
        if run_len:
            self.add_run(run_start, run_len)

    def take(self, count: int) -> int | None:
        """Remove and return the first page of the lowest run of ``count`` free pages, or None."""
        for i, have in enumerate(self._counts):
            if have >= count:
                start = self._starts[i]
                if have == count:
                    del self._starts[i], self._counts[i]
                else:
                    self._starts[i] += count
                    self._counts[i] -= count
                return start
        return None

    def take_tail(self, page_count: int) -> int:
        """Pages at the end of the file that are free (a run ending exactly at ``page_count``), removed."""
        if self._starts and self._starts[-1] + self._counts[-1] == page_count:
            start = self._starts.pop()
            self._counts.pop()
            return page_count - start
        return 0


class SpaceMap:
    """The used-page bitmap of the durable header plus the allocator for the next checkpoint."""

    def __init__(self, page_count: int, used: bytearray) -> None:
        self.page_count = page_count
        self.used = used
        self.free = FreeExtents()
        self._allocated: list[int] = []  # pages handed out since the last commit_checkpoint/abort
        run_start = None
        for page in range(HEADER_PAGES, page_count):
            if self.is_used(page):
                if run_start is not None:
                    self.free.add_run(run_start, page - run_start)
                    run_start = None
            elif run_start is None:
                run_start = page
        if run_start is not None:
            self.free.add_run(run_start, page_count - run_start)

    @classmethod
    def empty(cls, page_count: int = HEADER_PAGES) -> SpaceMap:
        used = bytearray((page_count + 7) // 8)
        space = cls.__new__(cls)
        space.page_count = page_count
        space.used = used
        space.free = FreeExtents()
        space._allocated = []
        for page in range(HEADER_PAGES):
            space._set(page)
        if page_count > HEADER_PAGES:
            space.free.add_run(HEADER_PAGES, page_count - HEADER_PAGES)
        return space

    @classmethod
    def from_bitmap(cls, page_count: int, bitmap: bytes) -> SpaceMap:
        used = bytearray(bitmap[: (page_count + 7) // 8])
        used.extend(bytes((page_count + 7) // 8 - len(used)))
        return cls(page_count, used)

    def is_used(self, page: int) -> bool:
        return bool(self.used[page >> 3] & (1 << (page & 7)))

    def _set(self, page: int) -> None:
        self.used[page >> 3] |= 1 << (page & 7)

    def _clear(self, page: int) -> None:
        self.used[page >> 3] &= ~(1 << (page & 7)) & 0xFF

    def allocate(self, count: int) -> int:
        """First page of ``count`` contiguous pages the next checkpoint may write; grows the file if needed."""
        start = self.free.take(count)
        if start is None:
            tail = self.free.take_tail(self.page_count)
            start = self.page_count - tail
            self._grow(start + count)
        self._allocated.extend(range(start, start + count))
        return start

    def _grow(self, page_count: int) -> None:
        if page_count <= self.page_count:
            return
        self.page_count = page_count
        need = (page_count + 7) // 8
        if need > len(self.used):
            self.used.extend(bytes(need - len(self.used)))

    def bitmap_after(self, dropped: Iterable[int]) -> bytes:
        """The bitmap the next header will describe: used now, plus allocated, minus ``dropped``."""
        new = bytearray(self.used)
        for page in dropped:
            new[page >> 3] &= ~(1 << (page & 7)) & 0xFF
        for page in self._allocated:
            new[page >> 3] |= 1 << (page & 7)
        return bytes(new)

    def commit_checkpoint(self, bitmap: bytes) -> None:
        """The header describing ``bitmap`` is durable: it becomes ``used``."""
        self.used = bytearray(bitmap)
        self._allocated.clear()

    def abort_checkpoint(self) -> None:
        """The checkpoint failed: pages it was given are free again (no durable header refers to them)."""
        self.free.add_pages(self._allocated)
        self._allocated.clear()

    def release(self, pages: Iterable[int]) -> None:
        """Pages no durable header, reader or pin can reach any more: the next checkpoint may write them."""
        self.free.add_pages(pages)

    def count_used(self) -> int:
        return sum(bin(b).count("1") for b in self.used)


_FLAGS = [bytes((byte >> bit) & 1 for bit in range(8)) for byte in range(256)]  # a bitmap byte, a byte per bit


def page_flags(page_count: int, bitmap: bytes) -> bytearray:
    """A byte per page, 1 where the space-map ``bitmap`` marks it used, as a scan wants it; the header pages
    are always used."""
    flags = bytearray(b"".join(_FLAGS[byte] for byte in bitmap[: (page_count + 7) // 8])[:page_count])
    flags.extend(bytes(page_count - len(flags)))
    flags[0:HEADER_PAGES] = b"\x01" * min(HEADER_PAGES, page_count)
    return flags
