"""Reading log generations: blocks, fragments and logical records, with an explicit torn-tail policy.

Policy (see format/logblock.py for why it is sound):

* After the last valid block, bytes that are all zero are the unused rest of the file: a clean end.
* A damaged block (bad header, wrong number, a fragment failing its checksum) with no valid later block in the
  same file is a *torn tail*: the last flush was cut by a crash before its fdatasync returned, so nothing in it
  was acknowledged. Only the current generation may end this way (``tolerate_torn_tail``); in a closed
  generation it is corruption, because a generation is synced before the next one is created.
* A damaged block followed by a valid later block is corruption: that block was durable once.

Corruption raises LogFileCorruptError naming the file, generation and offset.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from shadowstore.errors import LogFileCorruptError
from shadowstore.format.common import SECTOR_SIZE, LgPos, crc32c
from shadowstore.format.logblock import (
    BLOCK_HEADER,
    FIRST,
    FRAGMENT_HEADER,
    FRAGMENT_KINDS,
    FULL,
    LAST,
    MIDDLE,
    block_span,
    unpack_block_header,
)
from shadowstore.format.logfile import LOG_HEADER_SIZE, LogHeader


@dataclass
class TornTail:
    offset: int  # where the damaged last block starts
    dropped: int  # bytes from there to the last non-zero byte
    reason: str


@dataclass
class Generation:
    """The valid content of one log file."""

    path: str
    header: LogHeader
    fragments: list[tuple[int, int, memoryview]] = field(default_factory=list)  # (offset, kind, data)
    end_offset: int = LOG_HEADER_SIZE  # where the next block would start
    last_block: int | None = None  # where the last valid block starts
    blocks: int = 0
    last_flush_us: int = 0
    torn: TornTail | None = None


def scan_generation(path: str, data: bytes, header: LogHeader, *, tolerate_torn_tail: bool) -> Generation:
    """Parse every block of a log file whose header was already verified.

    Raises LogFileCorruptError when a damaged block is followed by a valid one, or (for a closed generation,
    ``tolerate_torn_tail=False``) when any block is damaged.
    """
    gen = Generation(path, header)
    size = min(len(data), header.file_size)
    pos = LOG_HEADER_SIZE
    number = 0
    while pos + BLOCK_HEADER.size <= size:
        problem, length = _read_block(data, pos, size, header.generation, number, gen)
        if problem is None:
            gen.last_block = pos
            pos += block_span(length)
            number += 1
            continue
        if _all_zero(data, pos, size):
            break
        later = _find_later_block(data, pos, size, header.generation, number)
        if later is not None or not tolerate_torn_tail:
            where = f"; a valid block {later[1]} follows at offset {later[0]}" if later else ""
            raise LogFileCorruptError(
                f"{path} (generation {header.generation}): damaged block {number} at offset {pos} "
                f"{LgPos(header.generation, pos)}: {problem}{where}",
                file=path,
                generation=header.generation,
                offset=pos,
            )
        gen.torn = TornTail(pos, _last_nonzero(data, pos, size) - pos, problem)
        break
    gen.end_offset = pos
    gen.blocks = number
    return gen


def _read_block(
    data: bytes, pos: int, size: int, generation: int, number: int, gen: Generation
) -> tuple[str | None, int]:
    """Append the fragments of the block at ``pos`` to ``gen``.

    Returns (problem, payload length): problem is None when the block is valid.
    """
    header = unpack_block_header(data, pos)
    if header is None:
        return "block header fails its checksum or magic", 0
    if header.generation != generation:
        return f"block belongs to generation {header.generation}", 0
    if header.number != number:
        return f"block number {header.number}, expected {number}", 0
    if pos + block_span(header.length) > size:
        return f"block of {header.length} bytes runs past the end of the file", 0
    at = pos + BLOCK_HEADER.size
    end = at + header.length
    found = []
    view = memoryview(data)
    unpack = FRAGMENT_HEADER.unpack_from
    head_size = FRAGMENT_HEADER.size
    while at < end:
        # The checks of format.logblock.fragment_at, inlined: this loop runs once per logged record.
        if at + head_size > end:
            return f"fragment header at offset {at} runs past the end of its block", 0
        crc, length, kind = unpack(data, at)
        start = at + head_size
        stop = start + length
        if kind not in FRAGMENT_KINDS or stop > end or crc != crc32c(view[at + 4 : stop]):
            return f"fragment at offset {at} fails its checksum", 0
        found.append((at, kind, view[start:stop]))
        at = stop
    if len(found) != header.fragments:
        return f"block holds {len(found)} fragments, its header says {header.fragments}", 0
    gen.fragments.extend(found)
    gen.last_flush_us = header.time_us
    return None, header.length


def _all_zero(data: bytes, start: int, end: int) -> bool:
    return data.count(0, start, end) == end - start


def _last_nonzero(data: bytes, start: int, end: int) -> int:
    i = end
    while i > start and data[i - 1] == 0:
        i -= 1
    return i


def _find_later_block(data: bytes, pos: int, size: int, generation: int, number: int) -> tuple[int, int] | None:
    """A valid block header of this generation numbered ``number`` or later, after ``pos``."""
    at = pos + SECTOR_SIZE
    while at + BLOCK_HEADER.size <= size:
        header = unpack_block_header(data, at)
        if header is not None and header.generation == generation and header.number >= number:
            return at, header.number
        at += SECTOR_SIZE
    return None


# --- logical records -------------------------------------------------------------------------------------


class Record(NamedTuple):
    start: LgPos  # position of its first fragment
    end: LgPos  # position after its last fragment
    data: bytes | memoryview


_new_lgpos = functools.partial(tuple.__new__, LgPos)
_new_record = functools.partial(tuple.__new__, Record)
_FRAG = FRAGMENT_HEADER.size


class RecordAssembler:
    """Joins fragments into logical records across generations, in stream order.

    Two situations are not errors. Fragments that continue a record begun before the first generation fed
    are skipped (that record precedes the replay start). A record whose start was written but whose end never
    was, followed by a new record, was cut by a crash before it became durable and the writer resumed after
    it: it was never acknowledged and is dropped (``dropped`` counts them). The writer lays out every
    record's fragments contiguously, so nothing else produces either pattern; damage is caught by checksums.
    """

    def __init__(self) -> None:
        self._parts: list[memoryview] = []
        self._start: LgPos | None = None
        self._seen_start = False
        self.dropped = 0

    @property
    def pending(self) -> bool:
        """True when a record was started and not finished (at the end of the stream: an uncommitted tail)."""
        return self._start is not None

    def feed(self, gen: Generation) -> Iterator[Record]:
        number = gen.header.generation
        for offset, kind, data in gen.fragments:
            if kind in (FULL, FIRST):
                if self._start is not None:
                    self.dropped += 1
                self._seen_start = True
                if kind == FULL:
                    if self._start is not None:
                        self._start, self._parts = None, []
                    # why tuple.__new__: this runs once per logged record; it skips NamedTuple's Python __new__.
                    end = _new_lgpos((number, offset + _FRAG + len(data)))
                    yield _new_record((_new_lgpos((number, offset)), end, data))
                else:
                    self._start, self._parts = _new_lgpos((number, offset)), [data]
            elif kind in (MIDDLE, LAST):
                if self._start is None:
                    if not self._seen_start:
                        continue
                    raise LogFileCorruptError(
                        f"{gen.path}: fragment at offset {offset} continues a record whose start is missing",
                        file=gen.path,
                        generation=number,
                        offset=offset,
                    )
                self._parts.append(data)
                if kind == LAST:
                    end = _new_lgpos((number, offset + _FRAG + len(data)))
                    yield Record(self._start, end, b"".join(self._parts))
                    self._start, self._parts = None, []
            else:
                raise LogFileCorruptError(f"{gen.path}: unknown fragment kind {kind} at offset {offset}")
