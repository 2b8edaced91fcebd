"""Log file names and the log file header.

A storage group's log stream is a sequence of fixed-size files ("generations"), numbered from 1. The current
generation is ``E00.log``; closed generations are ``E00`` + the generation in upper-case hex, 5 digits while the
generation is at most 0xFFFFF and 8 digits after (``E000001A.log``, ``E0000100000.log``); the next file is
prepared ahead as ``E00tmp.log``; ``res1.log`` and ``res2.log`` are preallocated reserve logs used when the disk
is full. See docs/formats.md, "Log files".

Header (the first 4096 bytes = 8 sectors of every log file; records follow):

    off size field
      0   4  checksum: CRC-32C of bytes 4..4095
      4   8  magic b"SHSTLOG\\x1a"
     12   2  format major version
     14   2  format minor version
     16   4  generation
     20   2  sector size (512)
     22   2  header sectors (8)
     24   4  file size in bytes
     28   4  database page size of the storage group
     32   8  creation time (us since 1970 UTC)
     40   8  creation time of the previous generation (0 for generation 1)
     48  28  log signature
     76   8  checkpoint when this generation was created (LGPOS)
     84   1  flags: 0x01 this file was a reserve log, 0x02 circular logging now, 0x04 circular logging before
     85   3  zero
     88   4  base name (ASCII, e.g. "E00", NUL padded)
     92   4  zero
     96 ...  attach list (common.ATTACHINFO entries, ended by a 0 byte), up to offset 4096
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

from shadowstore.format.common import (
    LGPOS_ZERO,
    SECTOR_SIZE,
    AttachInfo,
    LgPos,
    Signature,
    pack_attach_list,
    seal_checksum,
    stored_and_computed_checksum,
    unpack_attach_list,
)

LOG_MAGIC = b"SHSTLOG\x1a"
LOG_FORMAT_MAJOR = 1
LOG_FORMAT_MINOR = 0
LOG_HEADER_SIZE = 4096
LOG_HEADER_SECTORS = LOG_HEADER_SIZE // SECTOR_SIZE

MIN_LOG_FILE_SIZE = 64 * 1024
MAX_LOG_FILE_SIZE = 32 * 1024 * 1024
DEFAULT_LOG_FILE_SIZE = 1024 * 1024

FLAG_RESERVE_LOG = 0x01
FLAG_CIRCULAR = 0x02
FLAG_CIRCULAR_PAST = 0x04

LOG_HEADER = struct.Struct("<I8sHHIHHIIQQ28sQB3x4s4x")
assert LOG_HEADER.size == 96
ATTACH_AREA = (LOG_HEADER.size, LOG_HEADER_SIZE)

MAX_SHORT_GENERATION = 0xFFFFF
MAX_GENERATION = 0x7FFFF800
RESERVE_LOG_NAMES = ("res1.log", "res2.log")


class LogHeader(NamedTuple):
    generation: int
    file_size: int
    page_size: int
    created_us: int
    prev_created_us: int
    signature: Signature
    checkpoint: LgPos
    flags: int
    base: str
    attached: list[AttachInfo]
    sector_size: int = SECTOR_SIZE
    header_sectors: int = LOG_HEADER_SECTORS
    major: int = LOG_FORMAT_MAJOR
    minor: int = LOG_FORMAT_MINOR

    @property
    def circular(self) -> bool:
        return bool(self.flags & FLAG_CIRCULAR)

    @property
    def from_reserve(self) -> bool:
        return bool(self.flags & FLAG_RESERVE_LOG)

    def pack(self) -> bytes:
        buf = bytearray(LOG_HEADER_SIZE)
        LOG_HEADER.pack_into(
            buf,
            0,
            0,
            LOG_MAGIC,
            self.major,
            self.minor,
            self.generation,
            self.sector_size,
            self.header_sectors,
            self.file_size,
            self.page_size,
            self.created_us,
            self.prev_created_us,
            self.signature.pack(),
            self.checkpoint.pack_u64(),
            self.flags,
            self.base.encode("ascii"),
        )
        attach = pack_attach_list(self.attached, ATTACH_AREA[1] - ATTACH_AREA[0])
        buf[ATTACH_AREA[0] : ATTACH_AREA[0] + len(attach)] = attach
        seal_checksum(buf)
        return bytes(buf)


class LogHeaderError(ValueError):
    """The bytes are not a valid log header; ``offset`` is where the problem is."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def unpack_log_header(buf: bytes | bytearray | memoryview) -> LogHeader:
    """Parse and verify a log header. Raises LogHeaderError naming the offset of the first problem."""
    if len(buf) < LOG_HEADER_SIZE:
        raise LogHeaderError(f"file is {len(buf)} bytes, shorter than a log header ({LOG_HEADER_SIZE})", len(buf))
    stored, computed = stored_and_computed_checksum(memoryview(buf)[:LOG_HEADER_SIZE])
    if stored != computed:
        raise LogHeaderError(f"header checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}", 0)
    (
        _crc,
        magic,
        major,
        minor,
        generation,
        sector_size,
        header_sectors,
        file_size,
        page_size,
        created,
        prev_created,
        sig,
        checkpoint,
        flags,
        base,
    ) = LOG_HEADER.unpack_from(buf, 0)
    if magic != LOG_MAGIC:
        raise LogHeaderError(f"not a ShadowStore log file (magic {magic!r})", 4)
    if major != LOG_FORMAT_MAJOR:
        raise LogHeaderError(f"log format version {major}.{minor} is not supported", 12)
    if sector_size != SECTOR_SIZE or header_sectors != LOG_HEADER_SECTORS:
        raise LogHeaderError(f"unexpected geometry: sector {sector_size}, header sectors {header_sectors}", 20)
    if not MIN_LOG_FILE_SIZE <= file_size <= MAX_LOG_FILE_SIZE or file_size % SECTOR_SIZE:
        raise LogHeaderError(f"log file size {file_size} is out of range", 24)
    try:
        attached = unpack_attach_list(buf, ATTACH_AREA[0], ATTACH_AREA[1])
    except ValueError as exc:
        raise LogHeaderError(str(exc), ATTACH_AREA[0]) from None
    return LogHeader(
        generation=generation,
        file_size=file_size,
        page_size=page_size,
        created_us=created,
        prev_created_us=prev_created,
        signature=Signature.unpack_from(sig),
        checkpoint=LgPos.from_u64(checkpoint),
        flags=flags,
        base=base.rstrip(b"\0").decode("ascii", "replace"),
        attached=attached,
        sector_size=sector_size,
        header_sectors=header_sectors,
        major=major,
        minor=minor,
    )


# --- file names ---------------------------------------------------------------------------------------------


def current_log_name(base: str) -> str:
    return f"{base}.log"


def tmp_log_name(base: str) -> str:
    return f"{base}tmp.log"


def checkpoint_name(base: str) -> str:
    return f"{base}.chk"


def archived_log_name(base: str, generation: int) -> str:
    """``E00`` + generation in upper-case hex: 5 digits up to 0xFFFFF, 8 digits after."""
    if not 1 <= generation <= MAX_GENERATION:
        raise ValueError(f"log generation {generation} is out of range")
    digits = 5 if generation <= MAX_SHORT_GENERATION else 8
    return f"{base}{generation:0{digits}X}.log"


def parse_archived_log_name(base: str, name: str) -> int | None:
    """The generation named by an archived log file name, or None if ``name`` is not one."""
    match = re.fullmatch(re.escape(base) + r"([0-9A-F]{5}|[0-9A-F]{8})\.log", name)
    if match is None:
        return None
    digits = match.group(1)
    generation = int(digits, 16)
    # A generation has exactly one name: 5 digits up to 0xFFFFF, 8 after.
    if (len(digits) == 5) != (generation <= MAX_SHORT_GENERATION) or generation == 0:
        return None
    return generation


def empty_log_header(base: str, signature: Signature, file_size: int, page_size: int) -> LogHeader:
    """A header template for generation 1 of a new stream (fields set again at each roll)."""
    return LogHeader(1, file_size, page_size, 0, 0, signature, LGPOS_ZERO, 0, base, [])
