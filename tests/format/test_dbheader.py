"""The store file header (format/dbheader.py) and how a reader picks one of its two copies (engine/dbfile.py)."""

from __future__ import annotations

import struct

import pytest

from shadowstore.engine.dbfile import read_header_copies
from shadowstore.errors import DatabaseCorruptedError
from shadowstore.format.common import BACKUP_SNAPSHOT, BKINFO, BackupInfo, LgPos, Signature
from shadowstore.format.dbheader import (
    BACKUP_AREA,
    BACKUP_SLOTS,
    DB_HEADER,
    DB_MAGIC,
    STATE_DIRTY_SHUTDOWN,
    STATE_NAMES,
    BlobRef,
    DbHeader,
    DbHeaderError,
    detect_page_size,
    unpack_db_header,
)
from shadowstore.io.faulty import FaultFileSystem
from tests.format.test_common import checksum_message, flip_byte, reseal_checksum

DB_SIG = Signature(0x1111, 1_700_000_000_000_000, "MAILSRV01")
LOG_SIG = Signature(0x2222, 1_700_000_000_500_000, "MAILSRV01")
OFF_MAGIC, OFF_MAJOR, OFF_PAGE_SIZE = 4, 12, 16
DB_PATH = "/data/priv1.edb"


def sample(page_size: int = 8192, sequence: int = 5, **changes: object) -> DbHeader:
    """A header with every field set to a distinct non-default value."""
    header = DbHeader(
        page_size=page_size,
        state=STATE_DIRTY_SHUTDOWN,
        sequence=sequence,
        dbid=3,
        db_signature=DB_SIG,
        log_signature=LOG_SIG,
        dbtime=123_456_789_012,
        last_consistent=LgPos(4, 4096),
        last_consistent_us=1_700_000_001_000_000,
        last_attach=LgPos(5, 4608),
        last_attach_us=1_700_000_002_000_000,
        last_detach=LgPos(3, 5120),
        last_detach_us=1_700_000_003_000_000,
        replay_start=LgPos(5, 5120),
        log_required_min=5,
        log_required_max=9,
        log_committed=9,
        page_count=4242,
        catalog=BlobRef(27, 10, 1),
        space_map=BlobRef(600, 11, 2),
        created_us=1_600_000_000_000_000,
        repair_count=2,
        repair_us=1_650_000_000_000_000,
        full_prev=BackupInfo(LgPos(2, 4096), 1_700_000_000_000_001, 1, 2, 0),
        inc_prev=BackupInfo(LgPos(3, 4096), 1_700_000_000_000_002, 3, 3, 0),
        diff_prev=BackupInfo(LgPos(3, 4608), 1_700_000_000_000_003, 2, 3, 0),
        copy_prev=BackupInfo(LgPos(4, 4096), 1_700_000_000_000_004, 1, 4, 0),
        full_cur=BackupInfo(LgPos(6, 4096), 1_700_000_000_000_005, 5, 0, 0),
        snapshot_cur=BackupInfo(LgPos(6, 4608), 1_700_000_000_000_006, 5, 0, BACKUP_SNAPSHOT),
    )
    return header._replace(**changes)


# --- round trip -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [4096, 8192, 16384, 32768])
def test_header_round_trips_with_every_field_at_every_page_size(page_size: int) -> None:
    header = sample(page_size)
    raw = header.pack()
    assert len(raw) == page_size
    assert unpack_db_header(raw) == header
    assert raw[BACKUP_AREA + len(BACKUP_SLOTS) * BKINFO.size :] == bytes(page_size - 392)


def test_fields_sit_at_their_documented_offsets() -> None:
    raw = sample().pack()
    assert raw[4:12] == DB_MAGIC
    assert struct.unpack_from("<IIQI", raw, 16) == (8192, STATE_DIRTY_SHUTDOWN, 5, 3)
    assert struct.unpack_from("<Q", raw, 96) == (123_456_789_012,)
    assert struct.unpack_from("<III", raw, 160) == (5, 9, 9)
    assert struct.unpack_from("<QII", raw, 176) == (27, 10, 1)
    assert BackupInfo.unpack_from(raw, 224 + 5 * 28) == sample().snapshot_cur
    assert DB_HEADER.size == BACKUP_AREA == 224


def test_state_names_are_the_eseutil_ones() -> None:
    assert sample().state_name == "Dirty Shutdown"
    assert sample(state=99).state_name == "Illegal"
    assert STATE_NAMES[3] == "Clean Shutdown"


@pytest.mark.parametrize("page_size", [4096, 8192, 16384, 32768])
def test_detect_page_size_reads_it_from_the_first_bytes(page_size: int) -> None:
    assert detect_page_size(sample(page_size).pack()[:64]) == page_size


def test_detect_page_size_refuses_what_is_not_a_header() -> None:
    raw = sample().pack()
    assert detect_page_size(raw[:19]) is None
    assert detect_page_size(bytes(flip_byte(raw, OFF_MAGIC))) is None
    assert detect_page_size(bytes(flip_byte(raw, OFF_PAGE_SIZE + 1, 0x01))) is None  # 8192 -> 8448


# --- corruption of one copy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 4, 20, 40, 96, 176, 224, 391, 392, 8191])
def test_any_flipped_byte_fails_the_checksum_at_the_copy_offset(offset: int) -> None:
    damaged = flip_byte(sample().pack(), offset)
    stored, computed = checksum_message(damaged)
    with pytest.raises(DbHeaderError) as info:
        unpack_db_header(damaged, 8192)
    assert info.value.offset == 8192
    assert str(info.value) == (
        f"header checksum mismatch at offset 8192: stored 0x{stored:08x}, computed 0x{computed:08x}"
    )


def test_damaged_page_size_is_reported_before_the_checksum() -> None:
    damaged = flip_byte(sample().pack(), OFF_PAGE_SIZE + 1, 0x60)  # 8192 -> 16384
    with pytest.raises(DbHeaderError) as info:
        unpack_db_header(damaged, 8192)
    assert info.value.offset == 8192 + OFF_PAGE_SIZE
    assert str(info.value) == "header says page size 16384, read 8192 bytes"


def test_copy_shorter_than_the_smallest_page() -> None:
    with pytest.raises(DbHeaderError) as info:
        unpack_db_header(sample().pack()[:4095], 0)
    assert (info.value.offset, str(info.value)) == (0, "header copy is 4095 bytes, shorter than the smallest page")


def test_bad_magic_behind_a_valid_checksum_names_offset_4() -> None:
    damaged = reseal_checksum(flip_byte(sample().pack(), OFF_MAGIC + 7))
    with pytest.raises(DbHeaderError) as info:
        unpack_db_header(damaged, 8192)
    assert info.value.offset == 8192 + OFF_MAGIC
    assert str(info.value) == f"not a ShadowStore database (magic {bytes(damaged[4:12])!r})"


def test_unsupported_major_version_names_offset_12() -> None:
    damaged = bytearray(sample().pack())
    struct.pack_into("<HH", damaged, OFF_MAJOR, 2, 3)
    reseal_checksum(damaged)
    with pytest.raises(DbHeaderError) as info:
        unpack_db_header(damaged, 0)
    assert (info.value.offset, str(info.value)) == (OFF_MAJOR, "database format version 2.3 is not supported")


# --- choosing a copy from the file (engine/dbfile.py) -----------------------------------------------------------------


def store_file(primary: bytes | bytearray, shadow: bytes | bytearray, data_pages: int = 2) -> FaultFileSystem:
    fs = FaultFileSystem(seed=3)
    fs.makedirs("/data")
    fs.write_bytes(DB_PATH, bytes(primary) + bytes(shadow) + b"\x5a" * (data_pages * len(shadow)))
    return fs


def test_newest_valid_copy_wins() -> None:
    fs = store_file(sample(sequence=6).pack(), sample(sequence=5).pack())
    assert read_header_copies(fs, DB_PATH) == (sample(sequence=6), [])
    fs = store_file(sample(sequence=5).pack(), sample(sequence=6).pack())
    assert read_header_copies(fs, DB_PATH).header == sample(sequence=6)


@pytest.mark.parametrize("page_size", [4096, 8192, 32768])
def test_damaged_primary_falls_back_to_the_shadow(page_size: int) -> None:
    fs = store_file(flip_byte(sample(page_size, 6).pack(), 300), sample(page_size, 5).pack())
    choice = read_header_copies(fs, DB_PATH)
    assert choice.header == sample(page_size, 5)
    assert [index for index, _ in choice.damaged] == [0]
    assert choice.damaged[0][1].startswith("header checksum mismatch at offset 0: ")


def test_damaged_shadow_falls_back_to_the_primary_and_names_its_offset() -> None:
    fs = store_file(sample(sequence=6).pack(), flip_byte(sample(sequence=6).pack(), 300))
    choice = read_header_copies(fs, DB_PATH)
    assert choice.header == sample(sequence=6)
    assert [index for index, _ in choice.damaged] == [1]
    assert choice.damaged[0][1].startswith("header checksum mismatch at offset 8192: ")


def test_both_copies_damaged_raises_naming_the_file_and_both_problems() -> None:
    fs = store_file(flip_byte(sample().pack(), 300), flip_byte(sample().pack(), 301))
    with pytest.raises(DatabaseCorruptedError) as info:
        read_header_copies(fs, DB_PATH)
    assert info.value.code == -1206
    message = info.value.message
    assert message.startswith(f"{DB_PATH}: both header copies are damaged: copy 0 (offset 0): header checksum mismatch")
    assert "; copy 1 (offset 8192): header checksum mismatch at offset 8192" in message


def test_missing_store_file_raises_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        read_header_copies(store_file(b"", b""), "/data/other.edb")


@pytest.mark.parametrize(("mask", "wrong_size"), [(0x30, 4096), (0x60, 16384)])
def test_primary_page_size_damaged_into_another_valid_size_falls_back_to_the_shadow(mask: int, wrong_size: int) -> None:
    """Regression: the page size was taken from the primary copy alone, hiding the intact shadow."""
    damaged = flip_byte(sample(sequence=6).pack(), OFF_PAGE_SIZE + 1, mask)
    assert struct.unpack_from("<I", damaged, OFF_PAGE_SIZE) == (wrong_size,)
    fs = store_file(damaged, sample(sequence=5).pack())
    choice = read_header_copies(fs, DB_PATH)
    assert choice.header == sample(sequence=5)
    assert choice.damaged == [(0, f"header says page size {wrong_size}, read 8192 bytes")]
