"""Structures that real Windows ESE files share: LGPOS, LOGTIME, SIGNATURE, BKINFO, ATTACHINFO, DBMS_PARAM and the
old-format XOR header checksum (research/ese.md §3.1, §3.3, §4.1).

These are the on-disk layouts of files that Windows wrote, not ShadowStore's own (format/common.py): a real LGPOS
counts sectors of the log's own sector size, a real LOGTIME is broken-down calendar fields, a real signature's time
is a LOGTIME. Every structure is declared once as a ``struct.Struct`` (size asserted) with Microsoft's field names
in comments, plus a NamedTuple with snake_case names; each has ``unpack_from`` and ``pack`` so tests build bytes
with the same declaration. All integers are little-endian and the structures are packed.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

XOR_SEED = 0x89ABCDEF  # ulDAEMagic: the seed of the old-format checksum, and the database magic at offset 4
U32 = struct.Struct("<I")
FILETYPE_OFFSET = 667  # le_filetype, unaligned, in database, log and checkpoint headers alike
FILETYPE_DATABASE, FILETYPE_LOG, FILETYPE_CHECKPOINT = 1, 3, 4


def xor_checksum(block: bytes | bytearray | memoryview) -> int:
    """The old-format ESE checksum of a header block: 0x89ABCDEF XOR every little-endian u32 after the first.

    Trailing bytes that do not fill a u32 are ignored (every header size is a multiple of 4).
    """
    data = bytes(block[4 : len(block) - len(block) % 4])
    value, width = int.from_bytes(data, "little"), 32
    while width < 8 * len(data):
        width *= 2  # why a power of two: folding halves XORs every word exactly once (missing words are zero)
    while width > 32:
        width //= 2
        value = (value >> width) ^ (value & ((1 << width) - 1))
    return XOR_SEED ^ value


def stored_checksum(block: bytes | bytearray | memoryview) -> int:
    return int(U32.unpack_from(block, 0)[0])


def seal_xor_checksum(block: bytearray) -> None:
    """Store the XOR checksum of ``block`` in its first u32 (for tests and tools that build headers)."""
    U32.pack_into(block, 0, xor_checksum(block))


def checksum_problem(block: bytes | bytearray | memoryview) -> str | None:
    """None when the stored checksum matches, else a sentence naming both values."""
    stored, computed = stored_checksum(block), xor_checksum(block)
    if stored == computed:
        return None
    return f"header checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x} over {len(block)} bytes"


def filetype_of(block: bytes | bytearray | memoryview) -> int | None:
    """le_filetype at offset 667, or None when ``block`` is too short to hold it."""
    if len(block) < FILETYPE_OFFSET + U32.size:
        return None
    return int(U32.unpack_from(block, FILETYPE_OFFSET)[0])


def c_string(raw: bytes) -> str:
    """A NUL-terminated 8-bit string (computer names, DBMS_PARAM paths); bytes above 0x7F kept as Latin-1."""
    return raw.split(b"\0", 1)[0].decode("latin-1")


# --- LGPOS (daedef.hxx): a log position ----------------------------------------------------------------------
#   0  u16  ib           byte in sector
#   2  u16  isec         sector in the log file (sectors of the log's own le_cbSec)
#   4  i32  lGeneration
LGPOS = struct.Struct("<HHi")
assert LGPOS.size == 8


class EseLgPos(NamedTuple):
    generation: int
    sector: int
    byte: int

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> EseLgPos:
        ib, isec, gen = LGPOS.unpack_from(buf, offset)
        return cls(gen, isec, ib)

    def pack(self) -> bytes:
        return LGPOS.pack(self.byte, self.sector, self.generation)

    @property
    def is_zero(self) -> bool:
        return self == (0, 0, 0)

    def __str__(self) -> str:
        # eseutil: (0x%X,%X,%X) = generation, sector, byte
        return f"(0x{self.generation:X},{self.sector:X},{self.byte:X})"


# --- LOGTIME: a calendar time -----------------------------------------------------------------------------
#   0  u8  bSeconds   1 u8 bMinutes   2 u8 bHours   3 u8 bDay   4 u8 bMonth (1-12)   5 u8 bYear (+1900)
#   6  u8  bit 0 fTimeIsUTC, bits 1-7 the low 7 bits of the milliseconds
#   7  u8  bit 0 fReserved (fOSSnapshot in backup marks), bits 1-3 the high 3 bits of the milliseconds
LOGTIME = struct.Struct("<8B")
assert LOGTIME.size == 8


class LogTime(NamedTuple):
    year: int  # as stored, +1900
    month: int
    day: int
    hour: int
    minute: int
    second: int
    millisecond: int
    utc: bool
    reserved: bool = False

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> LogTime:
        sec, minute, hour, day, month, year, low, high = LOGTIME.unpack_from(buf, offset)
        ms = (low >> 1) | (((high >> 1) & 0x7) << 7)
        return cls(year + 1900, month, day, hour, minute, sec, ms, bool(low & 1), bool(high & 1))

    def pack(self) -> bytes:
        low = ((self.millisecond & 0x7F) << 1) | int(self.utc)
        high = (((self.millisecond >> 7) & 0x7) << 1) | int(self.reserved)
        fields = (self.second, self.minute, self.hour, self.day, self.month, self.year - 1900, low, high)
        return LOGTIME.pack(*fields)

    @property
    def is_zero(self) -> bool:
        return self.pack() == bytes(LOGTIME.size)

    def __str__(self) -> str:
        """eseutil's ``MM/DD/YYYY HH:MM:SS.mmm`` with UTC or LOC (local time, as old files record it)."""
        text = f"{self.month:02d}/{self.day:02d}/{self.year:04d} {self.hour:02d}:{self.minute:02d}:{self.second:02d}"
        if self.is_zero:
            return f"{text}.000"
        return f"{text}.{self.millisecond:03d} {'UTC' if self.utc else 'LOC'}"

    def iso(self) -> str | None:
        """ISO-8601 text (``Z`` when UTC), None for the zero time. Never validated: shows what is stored."""
        if self.is_zero:
            return None
        date = f"{self.year:04d}-{self.month:02d}-{self.day:02d}"
        clock = f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}.{self.millisecond:03d}"
        return f"{date}T{clock}{'Z' if self.utc else ''}"


ZERO_LOGTIME = LogTime.unpack_from(bytes(LOGTIME.size))


# --- SIGNATURE: binds databases, logs and checkpoints of one instance -------------------------------------
#   0  u32      ulRandom
#   4  LOGTIME  logtimeCreate
#  12  16s      szComputerName
SIGNATURE = struct.Struct("<I8s16s")
assert SIGNATURE.size == 28


class EseSignature(NamedTuple):
    random: int
    created: LogTime
    computer: str

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> EseSignature:
        rand, created, name = SIGNATURE.unpack_from(buf, offset)
        return cls(rand, LogTime.unpack_from(created), c_string(name))

    def pack(self) -> bytes:
        return SIGNATURE.pack(self.random, self.created.pack(), self.computer.encode("latin-1")[:16])

    def __str__(self) -> str:
        return f"Create time:{self.created} Rand:{self.random} Computer:{self.computer}"

    def to_dict(self) -> dict[str, object]:
        return {"random": self.random, "created": self.created.iso(), "computer": self.computer}


# --- BKINFO: one backup's marks ---------------------------------------------------------------------------
#   0  LGPOS    le_lgposMark
#   8  LOGTIME  logtimeMark
#  16  u32      le_genLow
#  20  u32      le_genHigh
BKINFO = struct.Struct("<8s8sII")
assert BKINFO.size == 24


class EseBackupInfo(NamedTuple):
    mark: EseLgPos
    time: LogTime
    gen_low: int
    gen_high: int

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> EseBackupInfo:
        mark, time, low, high = BKINFO.unpack_from(buf, offset)
        return cls(EseLgPos.unpack_from(mark), LogTime.unpack_from(time), low, high)

    def pack(self) -> bytes:
        return BKINFO.pack(self.mark.pack(), self.time.pack(), self.gen_low, self.gen_high)

    def to_dict(self) -> dict[str, object]:
        return {"mark": str(self.mark), "time": self.time.iso(), "gen_low": self.gen_low, "gen_high": self.gen_high}


# --- DBMS_PARAM (daedef.hxx): the instance's settings when the file was written -----------------------------
#    0  261s  szSystemPathDebugOnly
#  261  261s  szLogFilePathDebugOnly
#  522  u8    fDBMSPARAMFlags (0x1 circular logging)
#  523  7u32  le_lSessionsMax, le_lOpenTablesMax, le_lVerPagesMax, le_lCursorsMax, le_lLogBuffers,
#             le_lcsecLGFile, le_ulCacheSizeMax
#  551  16s   reserved
DBMS_PARAM = struct.Struct("<261s261sB7I16s")
assert DBMS_PARAM.size == 567
DBMS_CIRCULAR = 0x1


class DbmsParam(NamedTuple):
    system_path: str
    log_path: str
    flags: int
    sessions: int
    open_tables: int
    version_pages: int
    cursors: int
    log_buffers: int
    log_file_sectors: int
    cache_size_max: int

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> DbmsParam:
        system, log, flags, *numbers, _reserved = DBMS_PARAM.unpack_from(buf, offset)
        return cls(c_string(system), c_string(log), flags, *numbers)

    def pack(self) -> bytes:
        paths = (self.system_path.encode("latin-1"), self.log_path.encode("latin-1"))
        return DBMS_PARAM.pack(*paths, self.flags, *self[3:], b"")

    @property
    def circular(self) -> bool:
        return bool(self.flags & DBMS_CIRCULAR)


# --- ATTACHINFO (log.hxx): one database attached to the instance, in a log or checkpoint header ------------
#   0  u8       dbid (0 ends the list)
#   1  u8       flags: 0x20 names are UTF-16LE, 0x40 sparse file
#   2  u16      le_cbNames
#   4  u64      le_dbtime
#  12  u32      le_objidLast
#  16  u32      le_cpgDatabaseSizeMax
#  20  LGPOS    le_lgposAttach
#  28  LGPOS    le_lgposConsistent
#  36  SIGNATURE signDb
#  64  ...      the names (the database path first), cbNames bytes
ATTACHINFO = struct.Struct("<BBHQII8s8s28s")
assert ATTACHINFO.size == 64
ATTACH_UNICODE = 0x20


class EseAttachInfo(NamedTuple):
    dbid: int
    flags: int
    dbtime: int
    objid_last: int
    max_pages: int
    attached_at: EseLgPos
    consistent: EseLgPos
    signature: EseSignature
    name: str

    def pack(self) -> bytes:
        encoding = "utf-16-le" if self.flags & ATTACH_UNICODE else "latin-1"
        names = (self.name + "\0").encode(encoding)
        fixed = (self.dbid, self.flags, len(names), self.dbtime, self.objid_last, self.max_pages)
        return ATTACHINFO.pack(*fixed, self.attached_at.pack(), self.consistent.pack(), self.signature.pack()) + names

    def to_dict(self) -> dict[str, object]:
        return {
            "dbid": self.dbid,
            "name": self.name,
            "dbtime": self.dbtime,
            "objid_last": self.objid_last,
            "max_pages": self.max_pages,
            "last_attach": str(self.attached_at),
            "last_consistent": str(self.consistent),
            "signature": self.signature.to_dict(),
        }


class AttachListError(ValueError):
    """An attach list entry runs past its area; ``offset`` is where that entry starts."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def unpack_attach_list(buf: bytes | bytearray | memoryview, offset: int, end: int) -> list[EseAttachInfo]:
    """The entries from ``offset`` up to a zero dbid or ``end``. Raises AttachListError for an entry that does not
    fit (the caller turns it into its own error naming the file)."""
    items = []
    while offset < end and buf[offset] != 0:
        if offset + ATTACHINFO.size > end:
            raise AttachListError(f"attached database entry at offset {offset} runs past its area", offset)
        dbid, flags, cb_names, dbtime, objid, max_pages, attach, consistent, sign = ATTACHINFO.unpack_from(buf, offset)
        names = bytes(buf[offset + ATTACHINFO.size : offset + ATTACHINFO.size + cb_names])
        if offset + ATTACHINFO.size + cb_names > end:
            raise AttachListError(
                f"attached database name at offset {offset + ATTACHINFO.size} runs past its area", offset
            )
        text = names.decode("utf-16-le", "replace") if flags & ATTACH_UNICODE else names.decode("latin-1")
        items.append(
            EseAttachInfo(
                dbid,
                flags,
                dbtime,
                objid,
                max_pages,
                EseLgPos.unpack_from(attach),
                EseLgPos.unpack_from(consistent),
                EseSignature.unpack_from(sign),
                text.split("\0", 1)[0],
            )
        )
        offset += ATTACHINFO.size + cb_names
    return items
