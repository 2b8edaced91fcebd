"""Logical log records (format/logrecord.py): TXN, ATTACH and DETACH.

A record passed its fragment checksum before it is parsed (format/logblock.py), so the damage tested here is the
kind a checksum cannot catch: a writer bug or crafted input, simulated by flipping a byte of a well-formed
record. The records are built with the same declarations the store uses (``TXN_HEADER``, ``PUT``, ...).
"""

from __future__ import annotations

import struct

import pytest

from shadowstore.format.common import Signature
from shadowstore.format.logrecord import (
    ATTACH,
    CREATE,
    DELETE,
    DETACH,
    DROP,
    KIND_ATTACH,
    KIND_DETACH,
    KIND_TXN,
    OP_CREATE,
    OP_DELETE,
    OP_DROP,
    OP_PUT,
    PUT,
    TXN_HEADER,
    AttachRecord,
    DetachRecord,
    RecordError,
    TxnHeader,
    iter_ops,
    pack_attach,
    pack_detach,
    record_dbid,
    txn_header,
    unpack_attach,
    unpack_detach,
)
from tests.format.test_common import flip_byte

T0 = 1_700_000_000_000_000
Op = tuple[int, int, bytes, bytes]

# Offsets inside a TXN record (format/logrecord.py).
OFF_OP_COUNT = 20
FIRST_OP = TXN_HEADER.size


def pack_op(op: int, table: int, key: bytes = b"", value: bytes = b"") -> bytes:
    """One operation, laid out as Transaction does it."""
    if op == OP_PUT:
        return PUT.pack(op, table, len(key), len(value)) + key + value
    if op == OP_DELETE:
        return DELETE.pack(op, table, len(key)) + key
    if op == OP_CREATE:
        return CREATE.pack(op, table, len(key)) + key
    return DROP.pack(op, table)


def txn_record(ops: list[Op], *, dbid: int = 1, dbtime: int = 42, op_count: int | None = None) -> bytes:
    count = len(ops) if op_count is None else op_count
    body = b"".join(pack_op(*op) for op in ops)
    return TXN_HEADER.pack(KIND_TXN, dbid, 0, dbtime, T0, count) + body


OPS: list[Op] = [
    (OP_CREATE, 3, b"messages", b""),
    (OP_PUT, 3, b"k1", b"value one"),
    (OP_PUT, 3, b"", b""),  # empty key and value are allowed
    (OP_PUT, 3, b"k2", bytes(range(256)) * 40),
    (OP_DELETE, 3, b"k1", b""),
    (OP_DROP, 2, b"", b""),
]


# --- TXN round trip -----------------------------------------------------------------------------------------------


def test_txn_header_round_trips() -> None:
    raw = txn_record(OPS, dbid=2, dbtime=0x1_0000_0001)
    assert raw[0] == KIND_TXN
    assert record_dbid(raw) == 2
    assert txn_header(raw) == TxnHeader(2, 0x1_0000_0001, T0, len(OPS))


def test_every_operation_round_trips_in_order() -> None:
    assert list(iter_ops(txn_record(OPS))) == OPS


def test_txn_with_no_operations_is_just_its_header() -> None:
    raw = txn_record([])
    assert len(raw) == TXN_HEADER.size == 24
    assert list(iter_ops(raw)) == []


def test_iter_ops_reads_from_a_memoryview() -> None:
    assert list(iter_ops(memoryview(txn_record(OPS)))) == OPS


# --- TXN damage ---------------------------------------------------------------------------------------------------


def test_txn_shorter_than_its_header() -> None:
    with pytest.raises(RecordError, match=r"^TXN record of 23 bytes is shorter than its header$"):
        txn_header(txn_record([])[:23])


def test_op_count_flipped_up_runs_out_of_record() -> None:
    raw = txn_record(OPS[:2])
    damaged = flip_byte(raw, OFF_OP_COUNT, 0x04)  # 2 -> 6 operations
    end = len(raw)
    with pytest.raises(RecordError, match=f"^TXN record ends after {end} bytes, before its operations do$"):
        list(iter_ops(damaged))


def test_op_count_flipped_down_leaves_bytes_after_the_last_operation() -> None:
    raw = txn_record(OPS[:2])
    damaged = flip_byte(raw, OFF_OP_COUNT, 0x03)  # 2 -> 1 operation
    put_size = len(pack_op(*OPS[1]))
    with pytest.raises(RecordError, match=f"^TXN record has {put_size} bytes after its last operation$"):
        list(iter_ops(damaged))


def test_flipped_operation_code_is_unknown() -> None:
    raw = txn_record(OPS[:2])
    second = FIRST_OP + len(pack_op(*OPS[0]))
    damaged = flip_byte(raw, second, 0x08)  # PUT (1) -> 9
    with pytest.raises(RecordError, match=f"^unknown operation 9 at byte {second} of a TXN record$"):
        list(iter_ops(damaged))


def test_value_length_flipped_past_the_end_of_the_record() -> None:
    raw = txn_record([(OP_PUT, 3, b"k", b"v" * 10)])
    value_length_high = FIRST_OP + 1 + 4 + 2 + 1  # u32 value length, second byte
    with pytest.raises(RecordError, match=r"^an operation runs past the end of its TXN record$"):
        list(iter_ops(flip_byte(raw, value_length_high, 0x01)))


def test_key_length_flipped_up_swallows_the_next_operation() -> None:
    raw = txn_record([(OP_DELETE, 3, b"k1", b""), (OP_DROP, 2, b"", b"")])
    key_length = FIRST_OP + 5
    damaged = flip_byte(raw, key_length, 0x05)  # 2 -> 7: the key now takes the DROP's 5 bytes
    with pytest.raises(RecordError, match=f"^TXN record ends after {len(raw)} bytes, before its operations do$"):
        list(iter_ops(damaged))


@pytest.mark.parametrize("op", [OP_PUT, OP_DELETE, OP_CREATE, OP_DROP])
def test_record_ending_inside_an_operation_header_raises_record_error(op: int) -> None:
    """Regression: this raised struct.error, which recovery did not turn into LogFileCorruptError."""
    full = txn_record([(OP_PUT, 3, b"k", b"v"), (op, 3, b"", b"")])
    second = len(full) - len(pack_op(op, 3))
    cut = full[: second + 1]  # only the op code of the second operation remains
    name = {OP_PUT: "PUT", OP_DELETE: "DELETE", OP_CREATE: "CREATE", OP_DROP: "DROP"}[op]
    with pytest.raises(
        RecordError, match=f"^the {name} operation at byte {second} is cut off by the end of the record$"
    ):
        list(iter_ops(cut))


def test_operation_running_past_the_record_is_not_yielded() -> None:
    """Every operation is checked before any is returned: a consumer never applies half a damaged record."""
    raw = txn_record([(OP_DELETE, 3, b"k1", b""), (OP_PUT, 3, b"k", b"v" * 10)])
    value_length = FIRST_OP + len(pack_op(OP_DELETE, 3, b"k1")) + 7  # u32 after op, table id, key length
    damaged = flip_byte(raw, value_length, 0x01)  # 10 -> 11
    seen = []
    with pytest.raises(RecordError, match="runs past the end of its TXN record"):
        seen.extend(iter_ops(damaged))
    assert seen == []


# --- ATTACH and DETACH -------------------------------------------------------------------------------------------

SIG = Signature(77, T0, "MAILSRV01")


def test_attach_round_trips() -> None:
    attach = AttachRecord(3, SIG, T0 + 5, "/srv/First Storage Group/priv1.edb")
    raw = pack_attach(attach)
    assert raw[0] == KIND_ATTACH
    assert record_dbid(raw) == 3
    assert len(raw) == ATTACH.size + len(attach.name)
    assert unpack_attach(raw) == attach


def test_detach_round_trips() -> None:
    raw = pack_detach(DetachRecord(4, T0 + 9))
    assert len(raw) == DETACH.size == 16
    assert raw[0] == KIND_DETACH
    assert record_dbid(raw) == 4
    assert unpack_detach(raw) == DetachRecord(4, T0 + 9)


def test_attach_shorter_than_its_header() -> None:
    with pytest.raises(RecordError, match=r"^ATTACH record is shorter than its header$"):
        unpack_attach(pack_attach(AttachRecord(1, SIG, T0, "x.edb"))[: ATTACH.size - 1])


def test_detach_shorter_than_its_header() -> None:
    with pytest.raises(RecordError, match=r"^DETACH record is shorter than its header$"):
        unpack_detach(pack_detach(DetachRecord(1, T0))[:15])


def test_attach_fields_sit_at_their_documented_offsets() -> None:
    raw = pack_attach(AttachRecord(3, SIG, T0, "a.edb"))
    assert struct.unpack_from("<BBH", raw, 0) == (KIND_ATTACH, 3, 5)
    assert Signature.unpack_from(raw, 4) == SIG
    assert struct.unpack_from("<Q", raw, 32) == (T0,)
    assert raw[40:] == b"a.edb"
