"""format/esedb.py: the header of real Windows ESE databases, its two copies and page-size detection.

The samples (tests/data/ese/README.md) must give exactly the values read there with an independent parser.
Damage is done at fixed offsets with the named helpers; headers of other page sizes are built with the module's
own declaration (pack_db_header) and sealed with the XOR checksum.
"""

from __future__ import annotations

import pytest

from shadowstore.errors import InvalidParameterError, ReadVerifyFailureError
from shadowstore.format.esedb import DBFILEHDR, FIELDS, PAGE_SIZES, pack_db_header, read_db_header
from shadowstore.format.esetypes import XOR_SEED, EseLgPos, seal_xor_checksum, xor_checksum
from tests.format.esesamples import sample

DBTIME_OFFSET = 16  # le_dbtimeDirtied: covered by the checksum, in every copy

KNOWN = [
    # file, state, state name, page, update major, log required, committed, dbtime, OS, consistent, rand, checksum
    ("dissect-basic.edb", 3, "Clean Shutdown", 4096, 20, (0, 0), 0, 403, (6, 2, 9200), (1, 0x16, 0), 144285057, 0x98A810D4),  # noqa: E501
    ("dissect-Current.mdb", 3, "Clean Shutdown", 4096, 20, (0, 0), 0, 188009, (10, 0, 17763), (0x27, 0x2C8, 0), 3398865428, 0xFB372390),  # noqa: E501
    ("go-ese-HyperV-Current.mdb", 2, "Dirty Shutdown", 4096, 20, (124, 124), 124, 64195, (10, 0, 17763), (0x7C, 0x4DB, 0), 2836424505, 0xA68CA7EA),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "state", "state_name", "page", "update", "required", "committed", "dbtime", "os", "consistent", "rand", "checksum"),  # noqa: E501
    KNOWN,
)  # fmt: skip
def test_samples_give_the_known_header_values(
    name: str,
    state: int,
    state_name: str,
    page: int,
    update: int,
    required: tuple[int, int],
    committed: int,
    dbtime: int,
    os: tuple[int, int, int],
    consistent: tuple[int, int, int],
    rand: int,
    checksum: int,
) -> None:
    read = read_db_header(sample(name), name)
    h = read.header
    assert (read.page_size, read.copy_used, read.shadow_differs) == (page, 0, False)
    assert [c.problem for c in read.copies] == [None, None]
    assert (h.state, h.state_name, h.page_size) == (state, state_name, page)
    assert (h.magic, h.version, h.update_major) == (XOR_SEED, 0x620, update)
    assert (h.log_required_min, h.log_required_max, h.log_committed) == (*required, committed)
    assert (h.dbtime, (h.os_major, h.os_minor, h.os_build)) == (dbtime, os)
    assert h.last_consistent == EseLgPos(*consistent)
    assert (h.log_signature.random, h.checksum, h.filetype) == (rand, checksum, 1)


def test_declaration_matches_the_published_offsets() -> None:
    offsets = {ms: offset for offset, _code, ms, _name, _label in FIELDS}
    assert DBFILEHDR.size == 748
    assert (offsets["le_dbstate"], offsets["signLog"], offsets["le_cbPageSize"]) == (52, 108, 236)
    assert (offsets["le_lGenMinRequired"], offsets["le_lGenMaxCommitted"], offsets["le_filetype"]) == (296, 416, 667)


def test_basic_sample_last_consistent_time_and_signature_text() -> None:
    h = read_db_header(sample("dissect-basic.edb"), "basic.edb").header
    assert str(h.last_consistent) == "(0x1,16,0)"
    assert str(h.last_consistent_time) == "08/19/2022 11:46:33.040 UTC"
    assert str(h.log_signature) == "Create time:08/19/2022 11:46:32.541 UTC Rand:144285057 Computer:"


@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_page_size_is_detected_from_2_to_32_kib(page_size: int) -> None:
    page = pack_db_header({"magic": XOR_SEED, "version": 0x620, "state": 3, "page_size_field": page_size}, page_size)
    seal_xor_checksum(page)
    read = read_db_header(bytes(page) * 2, "built.edb")
    assert (read.page_size, read.copy_used, read.header.state_name) == (page_size, 0, "Clean Shutdown")


def test_a_damaged_primary_is_read_from_the_shadow() -> None:
    data = bytearray(sample("dissect-basic.edb"))
    data[DBTIME_OFFSET] ^= 0xFF
    read = read_db_header(bytes(data), "basic.edb")
    assert (read.copy_used, read.header.dbtime) == (1, 403)
    assert read.copies[0].problem is not None
    assert "checksum mismatch" in read.copies[0].problem
    assert read.copies[1].problem is None


def test_both_copies_damaged_raises_naming_file_and_offsets() -> None:
    data = bytearray(sample("dissect-basic.edb"))
    data[DBTIME_OFFSET] ^= 0xFF
    data[4096 + DBTIME_OFFSET] ^= 0xFF
    with pytest.raises(ReadVerifyFailureError) as caught:
        read_db_header(bytes(data), "/x/basic.edb")
    assert caught.value.code == -1018
    assert "/x/basic.edb: both database header copies are damaged" in caught.value.message
    assert "copy 0 (primary, offset 0)" in caught.value.message
    assert "copy 1 (shadow, offset 4096)" in caught.value.message


def test_checksum_is_the_xor_of_the_words_after_the_first() -> None:
    page = sample("dissect-basic.edb")[:4096]
    words = [int.from_bytes(page[i : i + 4], "little") for i in range(4, 4096, 4)]
    expected = XOR_SEED
    for word in words:
        expected ^= word
    assert xor_checksum(page) == expected == 0x98A810D4


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "it is empty"),
        (b"\x01" * 100, "shorter than a database header (748 bytes)"),
        (bytes(65536), "zero-filled"),
        (b"hello world " * 1000, "no magic 0x89abcdef at offset 4"),
    ],
)
def test_files_that_are_not_databases_are_refused_not_called_damaged(data: bytes, why: str) -> None:
    with pytest.raises(InvalidParameterError, match="is not a Windows ESE database") as caught:
        read_db_header(data, "/x/file")
    assert why in caught.value.message
    assert "damaged" not in caught.value.message


def test_a_file_cut_inside_the_shadow_is_read_with_the_shadow_reported() -> None:
    read = read_db_header(sample("dissect-basic.edb")[:6000], "cut.edb")
    assert read.copy_used == 0
    assert read.copies[1].problem == "the file ends at 6000 bytes, inside this 4096-byte copy"
