"""Flush blocks and fragments (format/logblock.py) and the torn-tail policy of the log reader (engine/logreader.py).

Log files are laid out block by block with ``pack_block_header``/``pack_fragment`` (``lay_out``), or taken from a
real stream written by a storage group on the fault-injecting file system (``real_log``). Damage is applied at
fixed offsets with ``flip_byte``; ``reseal_checksum`` makes a damaged structure pass its checksum so that the
check after it is the one that fires.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import pytest

from shadowstore.engine.logreader import Generation, RecordAssembler, scan_generation
from shadowstore.errors import LogFileCorruptError
from shadowstore.format.common import SECTOR_SIZE, LgPos, Signature
from shadowstore.format.logblock import (
    BLOCK_HEADER,
    BLOCK_MAGIC,
    FIRST,
    FRAGMENT_HEADER,
    FULL,
    LAST,
    MIDDLE,
    BlockHeader,
    block_span,
    fragment_at,
    pack_block_header,
    pack_fragment,
    unpack_block_header,
)
from shadowstore.format.logfile import LOG_HEADER_SIZE, MIN_LOG_FILE_SIZE, LogHeader, unpack_log_header
from shadowstore.format.logrecord import KIND_ATTACH, KIND_TXN, OP_PUT, iter_ops, txn_header
from shadowstore.io.faulty import FaultFileSystem
from tests.conftest import mounted_with_table
from tests.format.test_common import flip_byte, reseal_checksum

GEN = 7
PATH = "/logs/E00.log"
T0 = 1_700_000_000_000_000

# Block header field offsets (format/logblock.py).
BH_GENERATION, BH_NUMBER, BH_LENGTH, BH_FRAGMENTS = 8, 12, 16, 20


def log_header(gen: int = GEN) -> LogHeader:
    return LogHeader(gen, MIN_LOG_FILE_SIZE, 8192, T0, T0 - 1, Signature(5, T0, "HOST"), LgPos(gen, 4096), 0, "E00", [])


def record(i: int, size: int = 40) -> bytes:
    """The bytes of some logical record (the framing layer does not look inside)."""
    return (b"record %d;" % i * (size // 8 + 1))[:size]


class LaidOut(NamedTuple):
    data: bytearray
    header: LogHeader
    blocks: list[int]  # offset of each block

    def fragment_offset(self, block: int, index: int = 0) -> int:
        """Offset of fragment ``index`` of ``block`` (fragments of laid-out blocks are read back to find it)."""
        at = self.blocks[block] + BLOCK_HEADER.size
        for _ in range(index):
            (_, length, _) = FRAGMENT_HEADER.unpack_from(self.data, at)
            at += FRAGMENT_HEADER.size + length
        return at


def lay_out(blocks: list[list[tuple[int, bytes]]], *, gen: int = GEN) -> LaidOut:
    """A log file of generation ``gen`` holding ``blocks`` (each a list of (kind, data) fragments)."""
    header = log_header(gen)
    data = bytearray(header.pack()) + bytearray(header.file_size - LOG_HEADER_SIZE)
    offsets = []
    pos = LOG_HEADER_SIZE
    for number, fragments in enumerate(blocks):
        payload = b"".join(pack_fragment(kind, body) for kind, body in fragments)
        block = pack_block_header(BlockHeader(gen, number, len(payload), len(fragments), T0 + number)) + payload
        data[pos : pos + len(block)] = block
        offsets.append(pos)
        pos += block_span(len(payload))
    return LaidOut(data, header, offsets)


def three_blocks() -> LaidOut:
    return lay_out([[(FULL, record(0)), (FULL, record(1))], [(FULL, record(2, 700))], [(FULL, record(3))]])


def reseal_block_header(data: bytearray, block_offset: int) -> bytearray:
    return reseal_checksum(data, block_offset, BLOCK_HEADER.size)


def patch_block_header(data: bytearray, block_offset: int, field: int, value: int) -> bytearray:
    struct.pack_into("<I", data, block_offset + field, value)
    return reseal_block_header(data, block_offset)


def scan(laid: LaidOut, *, tolerate_torn_tail: bool = True) -> Generation:
    return scan_generation(PATH, bytes(laid.data), laid.header, tolerate_torn_tail=tolerate_torn_tail)


def nonzero_length(data: bytes | bytearray, start: int) -> int:
    """Bytes from ``start`` to the last non-zero byte of ``data``."""
    return len(bytes(data[start:]).rstrip(b"\0"))


# --- block headers --------------------------------------------------------------------------------------------


def test_block_header_round_trips_at_any_offset() -> None:
    header = BlockHeader(GEN, 3, 1234, 5, T0)
    raw = pack_block_header(header)
    assert len(raw) == BLOCK_HEADER.size == 32
    assert struct.unpack_from("<I", raw, 4)[0] == BLOCK_MAGIC
    assert unpack_block_header(raw, 0) == header
    assert unpack_block_header(b"\xaa" * 512 + raw, 512) == header


@pytest.mark.parametrize("offset", [0, 3, 4, 8, 12, 16, 20, 24, 31])
def test_block_header_with_any_flipped_byte_is_not_a_block(offset: int) -> None:
    raw = pack_block_header(BlockHeader(GEN, 3, 100, 1, T0))
    assert unpack_block_header(flip_byte(raw, offset), 0) is None


def test_block_header_with_wrong_magic_and_valid_checksum_is_not_a_block() -> None:
    raw = reseal_checksum(flip_byte(pack_block_header(BlockHeader(GEN, 0, 0, 0, T0)), 5), 0, 32)
    assert unpack_block_header(raw, 0) is None


def test_block_header_cut_by_the_end_of_the_buffer_is_not_a_block() -> None:
    raw = pack_block_header(BlockHeader(GEN, 0, 0, 0, T0))
    assert unpack_block_header(raw[:31], 0) is None
    assert unpack_block_header(raw, 1) is None


@pytest.mark.parametrize(
    ("payload", "span"), [(0, 512), (SECTOR_SIZE - 32, 512), (SECTOR_SIZE - 31, 1024), (5000, 5120)]
)
def test_block_span_pads_to_whole_sectors(payload: int, span: int) -> None:
    assert block_span(payload) == span


# --- fragments ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [FULL, FIRST, MIDDLE, LAST])
def test_fragment_round_trips(kind: int) -> None:
    raw = pack_fragment(kind, record(1, 100))
    assert len(raw) == FRAGMENT_HEADER.size + 100
    found = fragment_at(raw, 0, len(raw))
    assert found is not None
    assert found[0] == kind
    assert bytes(found[1]) == record(1, 100)


def test_empty_fragment_round_trips() -> None:
    found = fragment_at(pack_fragment(FULL, b""), 0, 12)
    assert found is not None
    assert bytes(found[1]) == b""


@pytest.mark.parametrize("offset", [0, 4, 8, 12, 50, 111])
def test_fragment_with_any_flipped_byte_fails(offset: int) -> None:
    raw = pack_fragment(FULL, record(1, 100))
    assert fragment_at(flip_byte(raw, offset), 0, len(raw)) is None


def test_fragment_cut_by_the_end_of_its_block_fails() -> None:
    raw = pack_fragment(FULL, record(1, 100))
    assert fragment_at(raw, 0, len(raw) - 1) is None
    assert fragment_at(raw, 0, 11) is None


def test_fragment_of_unknown_kind_fails_even_with_a_valid_checksum() -> None:
    raw = reseal_checksum(flip_byte(pack_fragment(FULL, record(1)), 8, 0x08), 0, 12 + 40)  # kind 1 -> 9
    assert fragment_at(raw, 0, len(raw)) is None


def test_fragment_checksum_is_the_only_guard_of_its_data() -> None:
    """A fragment whose data changed but whose checksum was sealed again is accepted as is: the record
    parser (format/logrecord.py) is the next check."""
    raw = reseal_checksum(flip_byte(pack_fragment(FULL, record(1)), 20), 0, 12 + 40)
    found = fragment_at(raw, 0, len(raw))
    assert found is not None
    assert bytes(found[1]) == bytes(flip_byte(record(1), 8))


# --- scanning a generation --------------------------------------------------------------------------------------


def test_scan_returns_every_fragment_in_order() -> None:
    laid = three_blocks()
    gen = scan(laid, tolerate_torn_tail=False)
    assert [(offset, kind, bytes(data)) for offset, kind, data in gen.fragments] == [
        (laid.fragment_offset(0, 0), FULL, record(0)),
        (laid.fragment_offset(0, 1), FULL, record(1)),
        (laid.fragment_offset(1), FULL, record(2, 700)),
        (laid.fragment_offset(2), FULL, record(3)),
    ]
    assert laid.blocks == [4096, 4608, 5632]  # block 1 (700 bytes of data) spans two sectors
    assert (gen.blocks, gen.end_offset, gen.last_flush_us, gen.torn) == (3, 6144, T0 + 2, None)


def test_scan_of_a_file_with_no_block_ends_after_the_header() -> None:
    gen = scan(lay_out([]), tolerate_torn_tail=False)
    assert (gen.blocks, gen.end_offset, gen.fragments, gen.torn) == (0, LOG_HEADER_SIZE, [], None)


def test_scan_stops_at_the_end_of_a_full_file() -> None:
    blocks = [[(FULL, record(i, 400))] for i in range((MIN_LOG_FILE_SIZE - LOG_HEADER_SIZE) // SECTOR_SIZE)]
    gen = scan(lay_out(blocks), tolerate_torn_tail=False)
    assert (gen.blocks, gen.end_offset, gen.torn) == (len(blocks), MIN_LOG_FILE_SIZE, None)


# --- torn tail: the last block of the current generation ----------------------------------------------------------


def test_last_block_with_damaged_data_is_a_torn_tail_in_the_current_generation() -> None:
    laid = three_blocks()
    damaged_at = laid.fragment_offset(2) + FRAGMENT_HEADER.size + 5
    laid.data[:] = flip_byte(laid.data, damaged_at)
    gen = scan(laid)
    assert gen.torn is not None
    assert gen.torn.offset == laid.blocks[2]
    assert gen.torn.dropped == nonzero_length(laid.data, laid.blocks[2]) == 32 + 12 + 40
    assert gen.torn.reason == f"fragment at offset {laid.fragment_offset(2)} fails its checksum"
    assert [bytes(d) for _, _, d in gen.fragments] == [record(0), record(1), record(2, 700)]
    assert (gen.blocks, gen.end_offset) == (2, laid.blocks[2])


def test_last_block_whose_second_sector_never_reached_the_disk_is_a_torn_tail() -> None:
    laid = lay_out([[(FULL, record(0))], [(FULL, record(1, 900))]])
    second_sector = laid.blocks[1] + SECTOR_SIZE
    laid.data[second_sector : second_sector + SECTOR_SIZE] = bytes(SECTOR_SIZE)
    gen = scan(laid)
    assert gen.torn is not None
    assert (gen.torn.offset, gen.torn.dropped) == (laid.blocks[1], SECTOR_SIZE)
    assert [bytes(d) for _, _, d in gen.fragments] == [record(0)]


def test_last_block_with_damaged_header_is_a_torn_tail() -> None:
    laid = three_blocks()
    laid.data[:] = flip_byte(laid.data, laid.blocks[2] + BH_LENGTH)
    gen = scan(laid)
    assert gen.torn is not None
    assert gen.torn.offset == laid.blocks[2]
    assert gen.torn.reason == "block header fails its checksum or magic"
    assert gen.torn.dropped == nonzero_length(laid.data, laid.blocks[2])


def test_stale_blocks_after_a_torn_tail_do_not_make_it_corruption() -> None:
    """Valid blocks of another generation or with a lower number (left by an earlier use of the file) after
    the damaged block were never written by this generation's flushes."""
    laid = three_blocks()
    laid.data[:] = flip_byte(laid.data, laid.fragment_offset(2) + 20)
    stale_at = laid.blocks[2] + 4 * SECTOR_SIZE
    block0 = laid.data[laid.blocks[0] : laid.blocks[0] + SECTOR_SIZE]
    other = lay_out([[(FULL, record(9))]] * 4, gen=GEN - 1)
    laid.data[stale_at : stale_at + SECTOR_SIZE] = block0  # block 0 again: lower than block 2
    laid.data[stale_at + SECTOR_SIZE : stale_at + 2 * SECTOR_SIZE] = other.data[other.blocks[3] :][:SECTOR_SIZE]
    gen = scan(laid)
    assert gen.torn is not None
    assert gen.torn.offset == laid.blocks[2]
    last_stale_byte = stale_at + SECTOR_SIZE + BLOCK_HEADER.size + FRAGMENT_HEADER.size + 40
    assert gen.torn.dropped == last_stale_byte - laid.blocks[2]


def test_torn_tail_in_a_closed_generation_is_corruption_naming_file_generation_and_offset() -> None:
    laid = three_blocks()
    laid.data[:] = flip_byte(laid.data, laid.fragment_offset(2) + 20)
    with pytest.raises(LogFileCorruptError) as info:
        scan(laid, tolerate_torn_tail=False)
    error = info.value
    assert error.code == -501
    assert error.details == {"file": PATH, "generation": GEN, "offset": 5632}
    assert error.message == (
        f"{PATH} (generation 7): damaged block 2 at offset 5632 (0x7,B,0): "
        f"fragment at offset {laid.fragment_offset(2)} fails its checksum"
    )


# --- corruption: a damaged block followed by a valid one ----------------------------------------------------------


@pytest.mark.parametrize("tolerate", [True, False])
def test_damaged_block_followed_by_a_valid_block_is_corruption(tolerate: bool) -> None:
    laid = three_blocks()
    laid.data[:] = flip_byte(laid.data, laid.fragment_offset(1) + 300)
    with pytest.raises(LogFileCorruptError) as info:
        scan(laid, tolerate_torn_tail=tolerate)
    assert info.value.details == {"file": PATH, "generation": GEN, "offset": laid.blocks[1]}
    assert info.value.message == (
        f"{PATH} (generation 7): damaged block 1 at offset 4608 (0x7,9,0): fragment at offset "
        f"{laid.fragment_offset(1)} fails its checksum; a valid block 2 follows at offset 5632"
    )


def test_damaged_first_block_header_followed_by_a_valid_block_is_corruption() -> None:
    laid = three_blocks()
    laid.data[:] = flip_byte(laid.data, laid.blocks[0])
    with pytest.raises(LogFileCorruptError, match=r"damaged block 0 at offset 4096 \(0x7,8,0\): block header fails"):
        scan(laid)


def test_block_of_another_generation_is_named() -> None:
    laid = three_blocks()
    patch_block_header(laid.data, laid.blocks[1], BH_GENERATION, GEN + 1)
    with pytest.raises(LogFileCorruptError, match=r"damaged block 1 at offset 4608 .*: block belongs to generation 8;"):
        scan(laid)


def test_block_out_of_order_is_named() -> None:
    laid = three_blocks()
    patch_block_header(laid.data, laid.blocks[1], BH_NUMBER, 5)
    with pytest.raises(LogFileCorruptError, match=r"block number 5, expected 1; a valid block 2 follows"):
        scan(laid)


def test_block_longer_than_the_file_is_named() -> None:
    laid = three_blocks()
    patch_block_header(laid.data, laid.blocks[2], BH_LENGTH, MIN_LOG_FILE_SIZE)
    with pytest.raises(LogFileCorruptError, match=f"block of {MIN_LOG_FILE_SIZE} bytes runs past the end of the file$"):
        scan(laid, tolerate_torn_tail=False)
    gen = scan(laid)
    assert gen.torn is not None
    assert gen.torn.reason.endswith("runs past the end of the file")


def test_block_claiming_more_fragments_than_it_holds_is_named() -> None:
    laid = three_blocks()
    patch_block_header(laid.data, laid.blocks[0], BH_FRAGMENTS, 3)
    with pytest.raises(LogFileCorruptError, match=r"block 0 .*: block holds 2 fragments, its header says 3; a valid"):
        scan(laid)


def test_block_length_that_cuts_a_fragment_fails_that_fragment() -> None:
    laid = three_blocks()
    patch_block_header(laid.data, laid.blocks[0], BH_LENGTH, 2 * (12 + 40) - 1)
    with pytest.raises(LogFileCorruptError, match=f"fragment at offset {laid.fragment_offset(0, 1)} fails"):
        scan(laid)


def test_resealed_fragment_passes_the_scan() -> None:
    """The scan verifies framing only: a fragment sealed again after damage reaches the record parser."""
    laid = three_blocks()
    at = laid.fragment_offset(1)
    laid.data[:] = reseal_checksum(flip_byte(laid.data, at + FRAGMENT_HEADER.size), at, FRAGMENT_HEADER.size + 700)
    gen = scan(laid, tolerate_torn_tail=False)
    assert bytes(gen.fragments[2][2]) == bytes(flip_byte(record(2, 700), 0))


# --- a real stream ------------------------------------------------------------------------------------------------


def real_log(puts: int) -> bytes:
    """E00.log of a storage group that created table 't' and committed ``puts`` single-put transactions."""
    fs = FaultFileSystem(seed=11)
    _home, sg, store = mounted_with_table(fs)
    for i in range(puts):
        with store.transaction() as tx:
            tx.put("t", b"key%03d" % i, b"value %d" % i)
    data = fs.read_bytes(sg.current_log_path)
    sg.dismount()
    return data


def block_offsets(gen: Generation) -> list[int]:
    """Start of every block: each durable commit of one writer is one flush, one block, one fragment."""
    return [offset - BLOCK_HEADER.size for offset, _, _ in gen.fragments]


def records_of(*gens: Generation) -> list[bytes]:
    assembler = RecordAssembler()
    return [bytes(r.data) for g in gens for r in assembler.feed(g)]


def test_real_stream_holds_the_attaches_and_every_committed_put() -> None:
    data = real_log(20)
    header = unpack_log_header(data)
    gen = scan_generation(PATH, data, header, tolerate_torn_tail=False)
    records = records_of(gen)
    assert [r[0] for r in records[:2]] == [KIND_ATTACH, KIND_ATTACH]
    txns = [r for r in records if r[0] == KIND_TXN]
    assert [txn_header(r).dbtime for r in txns if r[1] == 1] == list(range(1, 22))
    puts = [op for r in txns for op in iter_ops(r) if op[0] == OP_PUT]
    assert [(key, value) for _, _, key, value in puts] == [(b"key%03d" % i, b"value %d" % i) for i in range(20)]
    assert gen.blocks == len(records)


def test_real_stream_with_its_last_flush_damaged_loses_only_that_flush() -> None:
    data = real_log(20)
    header = unpack_log_header(data)
    clean = scan_generation(PATH, data, header, tolerate_torn_tail=True)
    last = block_offsets(clean)[-1]
    damaged = bytes(flip_byte(data, last + BLOCK_HEADER.size + FRAGMENT_HEADER.size + 3))
    gen = scan_generation(PATH, damaged, header, tolerate_torn_tail=True)
    assert gen.torn is not None
    assert (gen.torn.offset, gen.torn.dropped) == (last, nonzero_length(damaged, last))
    assert records_of(gen) == records_of(clean)[:-1]
    with pytest.raises(LogFileCorruptError) as info:
        scan_generation(PATH, damaged, header, tolerate_torn_tail=False)
    assert info.value.details["offset"] == last


def test_real_stream_damaged_in_the_middle_is_corruption_even_in_the_current_generation() -> None:
    data = real_log(20)
    header = unpack_log_header(data)
    offsets = block_offsets(scan_generation(PATH, data, header, tolerate_torn_tail=True))
    damaged = bytes(flip_byte(data, offsets[5] + BLOCK_HEADER.size + 20))
    with pytest.raises(LogFileCorruptError) as info:
        scan_generation(PATH, damaged, header, tolerate_torn_tail=True)
    assert info.value.details == {"file": PATH, "generation": 1, "offset": offsets[5]}
    assert f"a valid block 6 follows at offset {offsets[6]}" in info.value.message


# --- joining fragments into records -----------------------------------------------------------------------------


def test_record_split_across_generations_is_joined_with_its_start_and_end() -> None:
    first = lay_out([[(FULL, record(0)), (FIRST, record(1, 100))]], gen=3)
    second = lay_out([[(MIDDLE, record(2, 100)), (LAST, record(3, 50)), (FULL, record(4))]], gen=4)
    assembler = RecordAssembler()
    out = list(assembler.feed(scan(first)))
    assert assembler.pending
    out += list(assembler.feed(scan(second)))
    assert [bytes(r.data) for r in out] == [record(0), record(1, 100) + record(2, 100) + record(3, 50), record(4)]
    joined = out[1]
    assert joined.start == LgPos(3, first.fragment_offset(0, 1))
    assert joined.end == LgPos(4, second.fragment_offset(0, 1) + FRAGMENT_HEADER.size + 50)
    assert not assembler.pending
    assert assembler.dropped == 0


def test_continuation_of_a_record_begun_before_the_replay_start_is_skipped() -> None:
    laid = lay_out([[(MIDDLE, record(1)), (LAST, record(2)), (FULL, record(3))]])
    assert records_of(scan(laid)) == [record(3)]


def test_record_whose_end_was_never_written_is_dropped_and_counted() -> None:
    laid = lay_out([[(FIRST, record(1))], [(FULL, record(2))]])
    assembler = RecordAssembler()
    assert [bytes(r.data) for r in assembler.feed(scan(laid))] == [record(2)]
    assert assembler.dropped == 1


def test_continuation_without_its_start_after_a_complete_record_is_corruption() -> None:
    laid = lay_out([[(FULL, record(1))], [(MIDDLE, record(2))]])
    with pytest.raises(LogFileCorruptError) as info:
        records_of(scan(laid))
    offset = laid.fragment_offset(1)
    assert info.value.message == f"{PATH}: fragment at offset {offset} continues a record whose start is missing"
    assert info.value.details == {"file": PATH, "generation": GEN, "offset": offset}
