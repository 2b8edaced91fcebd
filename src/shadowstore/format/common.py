"""Structures shared by several ShadowStore file formats: log positions, times, signatures, backup info.

All integers are little-endian. Each structure is declared once as a ``struct.Struct`` (size asserted) plus a
NamedTuple, and the same declaration is used by writers, readers, the dump tool and the tests.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import NamedTuple

import crc32c as _crc32c

SECTOR_SIZE = 512


crc32c: Callable[..., int] = _crc32c.crc32c
"""CRC-32C (Castagnoli) of ``data``, continuing from ``value``: ``crc32c(data, value=0)``."""


# --- LGPOS: a position in the log stream -------------------------------------------------------------------
# On disk: u64 = generation << 32 | sector << 16 | byte-in-sector, the same order as ESE's LGPOS
# (ib u16, isec u16, lGeneration i32 read as one little-endian u64), so positions compare as integers.
LGPOS = struct.Struct("<Q")
assert LGPOS.size == 8


class LgPos(NamedTuple):
    """A log position: generation and byte offset in that generation's file. Ordered like the stream."""

    gen: int
    offset: int

    @property
    def isec(self) -> int:
        return self.offset // SECTOR_SIZE

    @property
    def ib(self) -> int:
        return self.offset % SECTOR_SIZE

    def pack_u64(self) -> int:
        sector, byte = divmod(self[1], SECTOR_SIZE)
        return (self[0] << 32) | (sector << 16) | byte

    @classmethod
    def from_u64(cls, value: int) -> LgPos:
        return cls(value >> 32, ((value >> 16) & 0xFFFF) * SECTOR_SIZE + (value & 0xFFFF))

    def __str__(self) -> str:
        # eseutil prints (0xGEN,SECTOR,BYTE) with sector and byte in hex.
        return f"(0x{self.gen:X},{self.isec:X},{self.ib:X})"


LGPOS_ZERO = LgPos(0, 0)


# --- times --------------------------------------------------------------------------------------------------
# On disk: u64 microseconds since 1970-01-01 UTC; 0 means "never".


def now_us() -> int:
    return time.time_ns() // 1000


def format_time(us: int) -> str:
    """The eseutil style ``MM/DD/YYYY HH:MM:SS.mmm`` in UTC; ``00/00/1900 00:00:00`` for 0."""
    if us == 0:
        return "00/00/1900 00:00:00.000"
    t = dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC)
    return t.strftime("%m/%d/%Y %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def iso_time(us: int) -> str | None:
    if us == 0:
        return None
    # why not fromtimestamp(us / 1e6): the float can round the last microsecond, and times name restore targets
    return (_EPOCH + dt.timedelta(microseconds=us)).isoformat(timespec="microseconds")


def iso_us(text: object) -> int:
    """The microseconds ``iso_time`` wrote as ``text``; 0 for None or a text that is not such a time."""
    if not isinstance(text, str):
        return 0
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return 0
    if moment.tzinfo is None:
        return 0
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


# --- SIGNATURE: binds logs, checkpoint and databases together --------------------------------------------
#   0  u32  random
#   4  u64  creation time (us)
#  12  16s  computer name (UTF-8, NUL padded)
SIGNATURE = struct.Struct("<IQ16s")
assert SIGNATURE.size == 28


class Signature(NamedTuple):
    random: int
    created_us: int
    computer: str

    @classmethod
    def new(cls, after_us: int = 0) -> Signature:
        """A new signature, created now; but never at or before ``after_us``, the creation time of the newest
        stream this one follows. Backup sets of one storage group are ordered by their stream's creation time
        (backup/catalog.age), so a stream begun while the clock is behind must still order after the streams it
        replaces, or prune and the latest-state restore would take it for the oldest."""
        rand = int.from_bytes(os.urandom(4), "little") or 1
        return cls(rand, max(now_us(), after_us + 1), socket.gethostname()[:15])

    def pack(self) -> bytes:
        return SIGNATURE.pack(self.random, self.created_us, self.computer.encode()[:16])

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> Signature:
        rand, created, name = SIGNATURE.unpack_from(buf, offset)
        return cls(rand, created, name.rstrip(b"\0").decode("utf-8", "replace"))

    @property
    def is_zero(self) -> bool:
        return self.random == 0 and self.created_us == 0

    def __str__(self) -> str:
        return f"Create time:{format_time(self.created_us)} Rand:{self.random} Computer:{self.computer}"

    def to_dict(self) -> dict[str, object]:
        return {"random": self.random, "created": iso_time(self.created_us), "computer": self.computer}


ZERO_SIGNATURE = Signature(0, 0, "")


# --- BKINFO: one backup-info block ------------------------------------------------------------------------
#   0  u64  lgpos of the backup mark
#   8  u64  time of the mark (us)
#  16  u32  lowest generation in the backup
#  20  u32  highest generation in the backup
#  24  u32  kind: 0 streaming, 1 snapshot (ESE's bkinfoType: backupNormal / backupOSSnapshot)
BKINFO = struct.Struct("<QQIII")
assert BKINFO.size == 28

BACKUP_STREAMING = 0
BACKUP_SNAPSHOT = 1


class BackupInfo(NamedTuple):
    mark: LgPos
    time_us: int
    gen_low: int
    gen_high: int
    kind: int

    def pack(self) -> bytes:
        return BKINFO.pack(self.mark.pack_u64(), self.time_us, self.gen_low, self.gen_high, self.kind)

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> BackupInfo:
        mark, t, low, high, kind = BKINFO.unpack_from(buf, offset)
        return cls(LgPos.from_u64(mark), t, low, high, kind)

    @property
    def is_empty(self) -> bool:
        return self.gen_low == 0 and self.gen_high == 0 and self.time_us == 0

    def to_dict(self) -> dict[str, object] | None:
        if self.is_empty:
            return None
        return {
            "mark": str(self.mark),
            "time": iso_time(self.time_us),
            "gen_low": self.gen_low,
            "gen_high": self.gen_high,
            "kind": "snapshot" if self.kind == BACKUP_SNAPSHOT else "streaming",
        }


EMPTY_BACKUP_INFO = BackupInfo(LGPOS_ZERO, 0, 0, 0, 0)


# --- ATTACHINFO: one store attached to a log stream -------------------------------------------------------
#   0  u8   dbid
#   1  u8   flags (reserved, 0)
#   2  u16  length of the file name in bytes (UTF-8)
#   4  28s  database signature
#  32  u64  lgpos of the attach
#  40  ...  file name
ATTACHINFO = struct.Struct("<BBH28sQ")
assert ATTACHINFO.size == 40


class AttachInfo(NamedTuple):
    dbid: int
    signature: Signature
    attached_at: LgPos
    name: str

    def pack(self) -> bytes:
        name = self.name.encode()
        return ATTACHINFO.pack(self.dbid, 0, len(name), self.signature.pack(), self.attached_at.pack_u64()) + name

    def to_dict(self) -> dict[str, object]:
        return {
            "dbid": self.dbid,
            "name": self.name,
            "signature": self.signature.to_dict(),
            "attached_at": str(self.attached_at),
        }


def pack_attach_list(items: list[AttachInfo], room: int) -> bytes:
    """The attach list as stored: entries back to back, ended by a zero dbid. Raises ValueError if too long."""
    out = b"".join(item.pack() for item in items) + b"\0"
    if len(out) > room:
        raise ValueError(f"attach list needs {len(out)} bytes, {room} available")
    return out


def unpack_attach_list(buf: bytes | bytearray | memoryview, offset: int, end: int) -> list[AttachInfo]:
    """Parse an attach list; raises ValueError on a malformed entry."""
    items = []
    while offset < end and buf[offset] != 0:
        if offset + ATTACHINFO.size > end:
            raise ValueError(f"attach entry at offset {offset} runs past the end of its area")
        dbid, _flags, name_len, sig, lgpos = ATTACHINFO.unpack_from(buf, offset)
        offset += ATTACHINFO.size
        if offset + name_len > end:
            raise ValueError(f"attach name at offset {offset} runs past the end of its area")
        name = bytes(buf[offset : offset + name_len]).decode("utf-8", "replace")
        offset += name_len
        items.append(AttachInfo(dbid, Signature.unpack_from(sig), LgPos.from_u64(lgpos), name))
    return items


def seal_checksum(buf: bytearray, start: int = 4) -> None:
    """Store the CRC-32C of ``buf[start:]`` in the u32 at offset 0."""
    struct.pack_into("<I", buf, 0, crc32c(memoryview(buf)[start:]))


def stored_and_computed_checksum(buf: bytes | bytearray | memoryview, start: int = 4) -> tuple[int, int]:
    """The checksum stored at offset 0 and the one computed over ``buf[start:]``."""
    (stored,) = struct.unpack_from("<I", buf, 0)
    return stored, crc32c(memoryview(buf)[start:])
