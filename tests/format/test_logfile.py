"""The log file header (format/logfile.py) and the names of log files.

Every header test builds its bytes with ``LogHeader.pack`` and damages them at the documented offsets.
"""

from __future__ import annotations

import struct

import pytest

from shadowstore.format.common import ATTACHINFO, AttachInfo, LgPos, Signature
from shadowstore.format.logfile import (
    ATTACH_AREA,
    FLAG_CIRCULAR,
    FLAG_CIRCULAR_PAST,
    FLAG_RESERVE_LOG,
    LOG_FORMAT_MAJOR,
    LOG_HEADER,
    LOG_HEADER_SECTORS,
    LOG_HEADER_SIZE,
    LOG_MAGIC,
    MAX_GENERATION,
    MAX_LOG_FILE_SIZE,
    MAX_SHORT_GENERATION,
    MIN_LOG_FILE_SIZE,
    LogHeader,
    LogHeaderError,
    archived_log_name,
    checkpoint_name,
    current_log_name,
    empty_log_header,
    parse_archived_log_name,
    tmp_log_name,
    unpack_log_header,
)
from tests.format.test_common import checksum_message, flip_byte, reseal_checksum

SIG = Signature(0xCAFE, 1_700_000_000_000_000, "MAILSRV01")

# Field offsets from the layout in format/logfile.py.
OFF_MAGIC, OFF_MAJOR, OFF_MINOR, OFF_SECTOR, OFF_HEADER_SECTORS, OFF_FILE_SIZE = 4, 12, 14, 20, 22, 24


def sample_header(**changes: object) -> LogHeader:
    header = LogHeader(
        generation=0x1A,
        file_size=1024 * 1024,
        page_size=8192,
        created_us=1_700_000_100_000_000,
        prev_created_us=1_700_000_000_000_000,
        signature=SIG,
        checkpoint=LgPos(0x18, 4096 + 3 * 512),
        flags=FLAG_CIRCULAR | FLAG_CIRCULAR_PAST,
        base="E00",
        attached=[
            AttachInfo(1, SIG._replace(random=1), LgPos(0x18, 4096), "priv1.edb"),
            AttachInfo(2, SIG._replace(random=2), LgPos(0x18, 4608), "pub1.edb"),
        ],
    )
    return header._replace(**changes)


def patch_field(raw: bytes, fmt: str, offset: int, value: int) -> bytearray:
    """``raw`` with one field rewritten and the header checksum sealed again."""
    buf = bytearray(raw)
    struct.pack_into(fmt, buf, offset, value)
    return reseal_checksum(buf, 0, LOG_HEADER_SIZE)


# --- round trip ---------------------------------------------------------------------------------------------


def test_header_round_trips_with_every_field() -> None:
    header = sample_header()
    raw = header.pack()
    assert len(raw) == LOG_HEADER_SIZE == LOG_HEADER_SECTORS * 512
    assert unpack_log_header(raw) == header
    assert header.circular
    assert not header.from_reserve


def test_header_fields_sit_at_their_documented_offsets() -> None:
    raw = sample_header(flags=FLAG_RESERVE_LOG).pack()
    fields = LOG_HEADER.unpack_from(raw, 0)
    assert fields[1] == LOG_MAGIC == raw[4:12]
    assert struct.unpack_from("<I", raw, 16)[0] == 0x1A
    assert struct.unpack_from("<Q", raw, 76)[0] == LgPos(0x18, 4096 + 3 * 512).pack_u64()
    assert raw[84] == FLAG_RESERVE_LOG
    assert raw[88:92] == b"E00\0"
    assert unpack_log_header(raw).from_reserve


def test_header_reads_from_a_whole_log_file() -> None:
    raw = sample_header().pack() + bytes(4096)
    assert unpack_log_header(raw) == sample_header()


def test_empty_log_header_template_is_generation_one_without_stores() -> None:
    header = empty_log_header("E03", SIG, MIN_LOG_FILE_SIZE, 4096)
    assert unpack_log_header(header.pack()) == header
    assert (header.generation, header.checkpoint, header.attached, header.base) == (1, LgPos(0, 0), [], "E03")


def test_attach_list_too_long_for_the_header_is_refused() -> None:
    many = [AttachInfo(i % 250 + 1, SIG, LgPos(1, 4096), "s" * 200 + ".edb") for i in range(20)]
    room = ATTACH_AREA[1] - ATTACH_AREA[0]
    with pytest.raises(ValueError, match=f", {room} available$"):
        sample_header(attached=many).pack()


# --- corruption -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 4, 16, 48, 84, 88, 96, 200, 4095])
def test_any_flipped_byte_fails_the_header_checksum_at_offset_0(offset: int) -> None:
    damaged = flip_byte(sample_header().pack(), offset)
    stored, computed = checksum_message(damaged, 0, LOG_HEADER_SIZE)
    with pytest.raises(LogHeaderError) as info:
        unpack_log_header(damaged)
    assert info.value.offset == 0
    assert str(info.value) == f"header checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}"


def test_short_file_is_reported_at_its_end() -> None:
    with pytest.raises(LogHeaderError) as info:
        unpack_log_header(sample_header().pack()[:4000])
    assert info.value.offset == 4000
    assert str(info.value) == "file is 4000 bytes, shorter than a log header (4096)"


def test_bad_magic_behind_a_valid_checksum_names_offset_4() -> None:
    damaged = reseal_checksum(flip_byte(sample_header().pack(), OFF_MAGIC + 1), 0, LOG_HEADER_SIZE)
    with pytest.raises(LogHeaderError) as info:
        unpack_log_header(damaged)
    assert info.value.offset == OFF_MAGIC
    assert str(info.value) == f"not a ShadowStore log file (magic {bytes(damaged[4:12])!r})"


def test_unsupported_major_version_names_offset_12() -> None:
    damaged = patch_field(sample_header().pack(), "<H", OFF_MAJOR, LOG_FORMAT_MAJOR + 1)
    with pytest.raises(LogHeaderError) as info:
        unpack_log_header(damaged)
    assert info.value.offset == OFF_MAJOR
    assert str(info.value) == f"log format version {LOG_FORMAT_MAJOR + 1}.0 is not supported"


def test_newer_minor_version_is_accepted() -> None:
    raw = patch_field(sample_header().pack(), "<H", OFF_MINOR, 7)
    assert unpack_log_header(raw).minor == 7


@pytest.mark.parametrize(("offset", "value"), [(OFF_SECTOR, 4096), (OFF_HEADER_SECTORS, 16)])
def test_unexpected_geometry_names_offset_20(offset: int, value: int) -> None:
    damaged = patch_field(sample_header().pack(), "<H", offset, value)
    with pytest.raises(LogHeaderError) as info:
        unpack_log_header(damaged)
    assert info.value.offset == OFF_SECTOR
    sector, sectors = (value, 8) if offset == OFF_SECTOR else (512, value)
    assert str(info.value) == f"unexpected geometry: sector {sector}, header sectors {sectors}"


@pytest.mark.parametrize(
    "size", [MIN_LOG_FILE_SIZE - 512, MAX_LOG_FILE_SIZE + 512, MIN_LOG_FILE_SIZE + 100, 0, 0xFFFFFFFF]
)
def test_file_size_out_of_range_names_offset_24(size: int) -> None:
    damaged = patch_field(sample_header().pack(), "<I", OFF_FILE_SIZE, size)
    with pytest.raises(LogHeaderError) as info:
        unpack_log_header(damaged)
    assert info.value.offset == OFF_FILE_SIZE
    assert str(info.value) == f"log file size {size} is out of range"


@pytest.mark.parametrize("size", [MIN_LOG_FILE_SIZE, MAX_LOG_FILE_SIZE])
def test_file_size_limits_are_inclusive(size: int) -> None:
    assert unpack_log_header(sample_header(file_size=size).pack()).file_size == size


def test_damaged_attach_list_names_the_start_of_the_attach_area() -> None:
    raw = sample_header().pack()
    name_length_high = ATTACH_AREA[0] + 3  # u16 name length of the first entry, high byte
    damaged = reseal_checksum(flip_byte(raw, name_length_high, 0x20), 0, LOG_HEADER_SIZE)
    with pytest.raises(LogHeaderError) as info:
        unpack_log_header(damaged)
    assert info.value.offset == ATTACH_AREA[0] == 96
    first_name = ATTACH_AREA[0] + ATTACHINFO.size
    assert str(info.value) == f"attach name at offset {first_name} runs past the end of its area"


# --- file names -----------------------------------------------------------------------------------------------


def test_fixed_names_of_a_storage_group() -> None:
    assert (current_log_name("E00"), tmp_log_name("E00"), checkpoint_name("E00")) == (
        "E00.log",
        "E00tmp.log",
        "E00.chk",
    )


@pytest.mark.parametrize(
    ("generation", "name"),
    [
        (1, "E0000001.log"),
        (0x1A, "E000001A.log"),
        (MAX_SHORT_GENERATION, "E00FFFFF.log"),
        (MAX_SHORT_GENERATION + 1, "E0000100000.log"),
        (0xABCDEF0, "E000ABCDEF0.log"),
        (MAX_GENERATION, "E007FFFF800.log"),
    ],
)
def test_archived_names_use_5_digits_up_to_0xfffff_then_8(generation: int, name: str) -> None:
    assert archived_log_name("E00", generation) == name
    assert parse_archived_log_name("E00", name) == generation


@pytest.mark.parametrize("generation", [0, -1, MAX_GENERATION + 1])
def test_generation_out_of_range_has_no_name(generation: int) -> None:
    with pytest.raises(ValueError, match=f"log generation {generation} is out of range"):
        archived_log_name("E00", generation)


def test_other_bases_name_their_own_logs() -> None:
    assert archived_log_name("E03", 2) == "E0300002.log"
    assert parse_archived_log_name("E03", "E0300002.log") == 2
    assert parse_archived_log_name("E00", "E0300002.log") is None


@pytest.mark.parametrize(
    "name",
    [
        "E00.log",  # the current generation
        "E00tmp.log",  # the next one, prepared ahead
        "E00.chk",
        "res1.log",
        "res2.log",
        "E0000000.log",  # generation 0 does not exist
        "E0000100000x.log",
        "E00100000.log",  # 6 digits: 0x100000 has only the 8-digit name
        "E0000FFFFF.log",  # 8 digits for a generation that has a 5-digit name
        "E000000a.log",  # lower-case hex
        "E0000001.LOG",
        "E0000001.log.tmp",
        "E0000001.log~",
        "E000001.log",  # 4 digits
        "e0000001.log",
        "XE0000001.log",
        "",
    ],
)
def test_names_that_are_not_archived_logs(name: str) -> None:
    assert parse_archived_log_name("E00", name) is None
