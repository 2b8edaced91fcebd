"""Physical framing of records inside a log file: flush blocks and record fragments.

After the 4096-byte header, a log file holds *flush blocks*. Each group-commit flush writes exactly one block
per generation it touches; a block starts on a sector boundary and is padded with zeros to the next one, so
a sector that was made durable is never written again. Blocks are numbered from 0 within a generation.

Block header (32 bytes):

    off size field
      0   4  checksum: CRC-32C of bytes 4..31 of the block header
      4   4  magic 0x4B4C4253 ("SBLK")
      8   4  generation
     12   4  block number in this generation
     16   4  payload length in bytes (the fragments that follow)
     20   4  number of fragments in the payload
     24   8  flush time (us since 1970 UTC)

The payload is a run of fragments. A logical record (a committed transaction, an attach, ...) is written as
one FULL fragment, or as FIRST, MIDDLE..., LAST when it does not fit in the rest of the file and continues in
the next generation.

Fragment header (12 bytes):

    off size field
      0   4  checksum: CRC-32C of bytes 4..11 of this header and of the fragment data
      4   4  data length
      8   1  kind: 1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST
      9   3  zero

Why blocks: because group-commit flushes are strictly sequential (the next one starts only after the previous
one's fdatasync returned), only the last block of the stream can be torn by a crash. A damaged block that is
followed by a valid later block of the same generation was therefore durable once: that is corruption, not a
torn tail.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from shadowstore.format.common import SECTOR_SIZE, crc32c

BLOCK_MAGIC = 0x4B4C4253
BLOCK_HEADER = struct.Struct("<IIIIIIQ")
assert BLOCK_HEADER.size == 32

FRAGMENT_HEADER = struct.Struct("<IIB3x")
assert FRAGMENT_HEADER.size == 12
_U32 = struct.Struct("<I")

FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
FRAGMENT_KINDS = {FULL: "FULL", FIRST: "FIRST", MIDDLE: "MIDDLE", LAST: "LAST"}

# A fragment is only started where at least this much data fits after its header.
MIN_FRAGMENT_DATA = 64


class BlockHeader(NamedTuple):
    generation: int
    number: int
    length: int
    fragments: int
    time_us: int


def pack_block_header(header: BlockHeader) -> bytes:
    buf = bytearray(BLOCK_HEADER.size)
    pack_block_header_into(buf, *header)
    return bytes(buf)


def pack_block_header_into(
    buf: bytearray, generation: int, number: int, length: int, fragments: int, time_us: int
) -> None:
    """Write a block header (fields as in BlockHeader) into the first 32 bytes of ``buf``, a block being
    assembled in place."""
    BLOCK_HEADER.pack_into(buf, 0, 0, BLOCK_MAGIC, generation, number, length, fragments, time_us)
    _U32.pack_into(buf, 0, crc32c(memoryview(buf)[4 : BLOCK_HEADER.size]))


def unpack_block_header(buf: bytes | bytearray | memoryview, offset: int) -> BlockHeader | None:
    """The block header at ``offset``, or None when those bytes are not a valid block header."""
    if offset + BLOCK_HEADER.size > len(buf):
        return None
    crc, magic, gen, number, length, fragments, time_us = BLOCK_HEADER.unpack_from(buf, offset)
    if magic != BLOCK_MAGIC or crc != crc32c(memoryview(buf)[offset + 4 : offset + BLOCK_HEADER.size]):
        return None
    return BlockHeader(gen, number, length, fragments, time_us)


def pack_fragment(kind: int, data: bytes | memoryview) -> bytes:
    buf = bytearray()
    append_fragment(buf, kind, data)
    return bytes(buf)


def append_fragment(buf: bytearray, kind: int, data: bytes | bytearray | memoryview) -> None:
    """Append one fragment (header and data, checksummed) to ``buf``."""
    at = len(buf)
    buf += FRAGMENT_HEADER.pack(0, len(data), kind)
    buf += data
    _U32.pack_into(buf, at, crc32c(memoryview(buf)[at + 4 :]))


def patch_fragment(buf: bytearray, at: int, offset: int, data: bytes) -> None:
    """Overwrite ``data`` at ``offset`` inside the data of the fragment at ``at`` and checksum it again."""
    _crc, length, _kind = FRAGMENT_HEADER.unpack_from(buf, at)
    start = at + FRAGMENT_HEADER.size
    if offset + len(data) > length:
        raise ValueError(f"the fragment at {at} holds {length} bytes; cannot patch {offset}+{len(data)}")
    buf[start + offset : start + offset + len(data)] = data
    _U32.pack_into(buf, at, crc32c(memoryview(buf)[at + 4 : start + length]))


def fragment_at(buf: bytes | bytearray | memoryview, offset: int, end: int) -> tuple[int, memoryview] | None:
    """The (kind, data) of the fragment at ``offset``, or None if it is cut short or fails its checksum."""
    if offset + FRAGMENT_HEADER.size > end:
        return None
    crc, length, kind = FRAGMENT_HEADER.unpack_from(buf, offset)
    start = offset + FRAGMENT_HEADER.size
    if kind not in FRAGMENT_KINDS or start + length > end:
        return None
    view = memoryview(buf)
    data = view[start : start + length]
    if crc != crc32c(data, crc32c(view[offset + 4 : start])):
        return None
    return kind, data


def block_span(payload_length: int) -> int:
    """Bytes a block with this payload occupies in the file, padding included."""
    raw = BLOCK_HEADER.size + payload_length
    return (raw + SECTOR_SIZE - 1) // SECTOR_SIZE * SECTOR_SIZE
