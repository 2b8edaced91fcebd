"""format/eselog.py and format/esenames.py: the header of real Windows ESE log files, and their names.

The two samples (tests/data/ese/README.md) give exactly the values known for them; a 4096-byte-sector header is
built with the module's declaration (EseLogHeader.pack) and sealed. A file that cannot be a log is refused
(InvalidParameterError), a log whose header is damaged is -501 naming the file and offset.
"""

from __future__ import annotations

import pytest

from shadowstore.errors import InvalidParameterError, LogFileCorruptError
from shadowstore.format.eselog import LOG_HEADER_SIZE, EseLogHeader, read_log_header
from shadowstore.format.esenames import LogName, archived_name, is_prepared_log, is_reserve_log, parse_log_name
from shadowstore.format.esetypes import ZERO_LOGTIME, EseLgPos, LogTime, seal_xor_checksum
from tests.format.esesamples import LOG_1, LOG_2, LOG_RAND, build_checkpoint, sample

CREATED_1 = LogTime(2016, 12, 19, 0, 13, 16, 0, True)
CREATED_2 = LogTime(2016, 12, 19, 0, 13, 17, 0, True)


def header(name: str) -> EseLogHeader:
    data = sample(name)
    return read_log_header(data[:LOG_HEADER_SIZE], name, len(data))


@pytest.mark.parametrize(
    ("name", "generation", "created", "prev"), [(LOG_1, 1, CREATED_1, ZERO_LOGTIME), (LOG_2, 2, CREATED_2, CREATED_1)]
)
def test_samples_give_the_known_header_values(name: str, generation: int, created: LogTime, prev: LogTime) -> None:
    h = header(name)
    assert (h.generation, h.created, h.prev_created) == (generation, created, prev)
    assert (h.sector_size, h.header_sectors, h.file_sectors, h.file_size) == (512, 8, 4096, 2 * 1024 * 1024)
    assert (h.page_size, h.version, h.signature.random) == (8192, "7.3704.15", LOG_RAND)
    assert str(h.created) == f"12/19/2016 00:13:{15 + generation}.000 UTC"
    assert (h.circular, h.circular_past, h.from_reserve) == (False, False, False)


def test_generation_2_follows_generation_1() -> None:
    first, second = header(LOG_1), header(LOG_2)
    assert second.prev_created == first.created
    assert second.signature == first.signature
    assert str(second.prev_created) == "12/19/2016 00:13:16.000 UTC"
    assert str(first.prev_created) == "00/00/1900 00:00:00.000"


def test_attach_list_of_the_current_log() -> None:
    (attached,) = header(LOG_2).attached
    assert (attached.dbid, attached.dbtime, attached.objid_last) == (1, 272, 9)
    assert attached.attached_at == EseLgPos(1, 9, 0x6C)
    assert attached.name.endswith("\\WindowsMail.MSMessageStore")


def test_a_4096_byte_sector_header_built_from_the_declaration_reads_back() -> None:
    built = header(LOG_1)._replace(sector_size=4096, header_sectors=1, file_sectors=256, generation=13, attached=[])
    block = built.pack()
    seal_xor_checksum(block)
    h = read_log_header(bytes(block), "E000000D.log", 256 * 4096)
    assert (h.sector_size, h.header_sectors, h.file_size, h.generation) == (4096, 1, 1024 * 1024, 13)


def test_a_flipped_byte_is_damage_at_offset_0() -> None:
    data = bytearray(sample(LOG_1)[:LOG_HEADER_SIZE])
    data[100] ^= 0x01
    with pytest.raises(LogFileCorruptError) as caught:
        read_log_header(bytes(data), "/x/edb00001.log", 2 * 1024 * 1024)
    assert caught.value.code == -501
    assert caught.value.message.startswith("/x/edb00001.log: log file header is damaged at offset 0: header checksum")


def test_impossible_geometry_is_damage_at_offset_8() -> None:
    block = header(LOG_1)._replace(sector_size=512, header_sectors=3).pack()
    seal_xor_checksum(block)
    with pytest.raises(LogFileCorruptError, match="damaged at offset 8: sector size 512 with 3 header sectors"):
        read_log_header(bytes(block), "x.log", 2 * 1024 * 1024)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "is empty"),
        (sample(LOG_1)[:1000], "is 1000 bytes, shorter than a log file header (4096 bytes)"),
        (bytes(LOG_HEADER_SIZE), "is zero-filled where the header should be: a reserve log"),
        (b"\xda" * LOG_HEADER_SIZE, "filled with the byte 0xDA (ESE's old log-extend pattern)"),
        (b"hello world " * 400, "is not a Windows ESE log file: le_filetype at offset 667 is"),
    ],
)
def test_files_that_cannot_be_logs_are_refused_not_called_damaged(data: bytes, why: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        read_log_header(data[:LOG_HEADER_SIZE], "/x/edb.log", len(data))
    assert why in caught.value.message
    assert "damaged" not in caught.value.message


def test_a_checkpoint_is_named_as_one() -> None:
    data = build_checkpoint(header(LOG_1).signature, EseLgPos(1, 8, 0))
    with pytest.raises(InvalidParameterError, match="is a Windows ESE checkpoint file, not a log file"):
        read_log_header(data[:LOG_HEADER_SIZE], "edb.chk", len(data))


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("edb.log", LogName("edb", None, ".log")),
        ("edb00001.log", LogName("edb", 1, ".log")),
        ("E000080A.log", LogName("E00", 0x80A, ".log")),
        ("edb0000000A.log", LogName("edb", 10, ".log")),
        ("USS00040.jtx", LogName("USS", 0x40, ".jtx")),
        ("USS.jtx", LogName("USS", None, ".jtx")),
        ("edbtmp.log", None),
        ("res1.log", None),
        ("edbres00001.jrs", None),
        ("edb0000a.log", None),  # ESE writes upper-case digits
        ("edb00000.log", None),  # there is no generation 0
        ("edb.chk", None),
    ],
)
def test_log_names(name: str, parsed: LogName | None) -> None:
    assert parse_log_name(name) == parsed


def test_side_file_names_and_archived_names() -> None:
    assert [is_reserve_log(n) for n in ("res2.log", "E00res00002.jrs", "edb.log")] == [True, True, False]
    assert [is_prepared_log(n) for n in ("edbtmp.log", "USStmp.jtx", "edb.log")] == [True, True, False]
    assert (archived_name("edb", 1), archived_name("E00", 0x100000, ".jtx")) == ("edb00001.log", "E0000100000.jtx")
