"""Logical log records: what a storage group writes to its log stream.

The log is redo-only: a transaction's changes stay in memory until it commits, and the commit appends one
TXN record holding all of its operations plus its commit time. Recovery replays TXN records in log order and
never undoes anything. See docs/formats.md, "Log records".

Every record starts with a one-byte kind.

TXN (kind 1), 24-byte header then the operations:

    off size field
      0   1  kind = 1
      1   1  dbid of the store
      2   2  flags (0)
      4   8  dbtime: the store's transaction number, consecutive from 1
     12   8  commit time (us since 1970 UTC)
     20   4  number of operations

    operation       layout
    PUT    (1)      u8 op, u32 table id, u16 key length, u32 value length, key, value
    DELETE (2)      u8 op, u32 table id, u16 key length, key
    CREATE (3)      u8 op, u32 table id, u16 name length, name (UTF-8)
    DROP   (4)      u8 op, u32 table id

ATTACH (kind 2): u8 kind, u8 dbid, u16 name length, 28-byte database signature, u64 time, file name.
DETACH (kind 3): u8 kind, u8 dbid, u16 zero, u32 zero, u64 time.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from shadowstore.format.common import Signature

KIND_TXN = 1
KIND_ATTACH = 2
KIND_DETACH = 3
KIND_NAMES = {KIND_TXN: "TXN", KIND_ATTACH: "ATTACH", KIND_DETACH: "DETACH"}

OP_PUT = 1
OP_DELETE = 2
OP_CREATE = 3
OP_DROP = 4
OP_NAMES = {OP_PUT: "PUT", OP_DELETE: "DELETE", OP_CREATE: "CREATE", OP_DROP: "DROP"}

TXN_HEADER = struct.Struct("<BBHQQI")
assert TXN_HEADER.size == 24
TXN_TIME_OFFSET = 12  # the commit time, filled in by the log writer as it appends the record
PUT = struct.Struct("<BIHI")
assert PUT.size == 11
DELETE = struct.Struct("<BIH")
assert DELETE.size == 7
CREATE = DELETE  # same shape: op, table id, name length
DROP = struct.Struct("<BI")
assert DROP.size == 5
ATTACH = struct.Struct("<BBH28sQ")
assert ATTACH.size == 40
DETACH = struct.Struct("<BBHIQ")
assert DETACH.size == 16


_unpack_put = PUT.unpack_from
_unpack_delete = DELETE.unpack_from


class RecordError(ValueError):
    """A logical record that passed its checksum but does not parse: a writer bug or crafted input."""


class TxnHeader(NamedTuple):
    dbid: int
    dbtime: int
    commit_us: int
    op_count: int


class AttachRecord(NamedTuple):
    dbid: int
    signature: Signature
    time_us: int
    name: str


class DetachRecord(NamedTuple):
    dbid: int
    time_us: int


def txn_header(data: bytes | memoryview) -> TxnHeader:
    if len(data) < TXN_HEADER.size:
        raise RecordError(f"TXN record of {len(data)} bytes is shorter than its header")
    _kind, dbid, _flags, dbtime, commit_us, count = TXN_HEADER.unpack_from(data, 0)
    return TxnHeader(dbid, dbtime, commit_us, count)


def iter_ops(data: bytes | memoryview, header: TxnHeader | None = None) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(op, table id, key-or-name, value) for each operation of a TXN record (``header``: its parsed header, if
    the caller has it). Raises RecordError if the operations do not fill the record exactly."""
    if header is None:
        header = txn_header(data)
    return iter(parse_ops(data, header.op_count))


def parse_ops(data: bytes | memoryview, count: int) -> list[tuple[int, int, bytes, bytes]]:
    """The ``count`` operations after a TXN header, all checked before any is returned.

    Raises RecordError if an operation is cut off, unknown, or the operations do not fill the record exactly.
    """
    buf = data if type(data) is bytes else bytes(data)
    pos = TXN_HEADER.size
    end = len(buf)
    out = []
    for _ in range(count):
        if pos >= end:
            raise RecordError(f"TXN record ends after {pos} bytes, before its operations do")
        op = buf[pos]
        if op == OP_PUT:
            if pos + 11 > end:  # PUT.size
                raise RecordError(f"the PUT operation at byte {pos} is cut off by the end of the record")
            _, table, klen, vlen = _unpack_put(buf, pos)
            key_at = pos + 11
            value_at = key_at + klen
            pos = value_at + vlen
            if pos > end:
                raise RecordError("an operation runs past the end of its TXN record")
            out.append((op, table, buf[key_at:value_at], buf[value_at:pos]))
        elif op in (OP_DELETE, OP_CREATE):  # the same shape
            if pos + 7 > end:  # DELETE.size
                raise RecordError(f"the {OP_NAMES[op]} operation at byte {pos} is cut off by the end of the record")
            _, table, klen = _unpack_delete(buf, pos)
            pos += 7 + klen
            if pos > end:
                raise RecordError("an operation runs past the end of its TXN record")
            out.append((op, table, buf[pos - klen : pos], b""))
        elif op == OP_DROP:
            if pos + 5 > end:  # DROP.size
                raise RecordError(f"the DROP operation at byte {pos} is cut off by the end of the record")
            _, table = DROP.unpack_from(buf, pos)
            pos += 5
            out.append((op, table, b"", b""))
        else:
            raise RecordError(f"unknown operation {op} at byte {pos} of a TXN record")
    if pos != end:
        raise RecordError(f"TXN record has {end - pos} bytes after its last operation")
    return out


def pack_attach(record: AttachRecord) -> bytes:
    name = record.name.encode()
    return ATTACH.pack(KIND_ATTACH, record.dbid, len(name), record.signature.pack(), record.time_us) + name


def unpack_attach(data: bytes | memoryview) -> AttachRecord:
    if len(data) < ATTACH.size:
        raise RecordError("ATTACH record is shorter than its header")
    _kind, dbid, name_len, sig, time_us = ATTACH.unpack_from(data, 0)
    name = bytes(data[ATTACH.size : ATTACH.size + name_len]).decode("utf-8", "replace")
    return AttachRecord(dbid, Signature.unpack_from(sig), time_us, name)


def pack_detach(record: DetachRecord) -> bytes:
    return DETACH.pack(KIND_DETACH, record.dbid, 0, 0, record.time_us)


def unpack_detach(data: bytes | memoryview) -> DetachRecord:
    if len(data) < DETACH.size:
        raise RecordError("DETACH record is shorter than its header")
    _kind, dbid, _z1, _z2, time_us = DETACH.unpack_from(data, 0)
    return DetachRecord(dbid, time_us)


def record_dbid(data: bytes | memoryview) -> int:
    """The dbid a record concerns (every kind stores it at byte 1)."""
    return data[1]
