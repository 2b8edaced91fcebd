"""The catalog blob of a store (format/catalog.py): its tables and their B+tree roots.

The catalog has no checksum of its own (the blob pages holding it have one), so the damage tested here is what
gets past a page checksum: a byte flipped before the page was sealed.
"""

from __future__ import annotations

import struct

import pytest

from shadowstore.format.catalog import (
    CATALOG_HEADER,
    TABLE_ENTRY,
    CatalogEntry,
    CatalogError,
    pack_catalog,
    unpack_catalog,
)
from tests.format.test_common import flip_byte

ENTRIES = [
    CatalogEntry(1, 2, "messages"),
    CatalogEntry(4, 0xFFFF_FFF0, "folders"),
    CatalogEntry(7, 9, "pièces jointes"),
    CatalogEntry(8, 10, "x" * 255),
]
OFF_COUNT = 4


def test_catalog_round_trips() -> None:
    raw = pack_catalog(9, ENTRIES)
    assert len(raw) == CATALOG_HEADER.size + sum(TABLE_ENTRY.size + len(e.name.encode()) for e in ENTRIES)
    assert unpack_catalog(raw) == (9, ENTRIES)


def test_catalog_fields_sit_at_their_documented_offsets() -> None:
    raw = pack_catalog(9, ENTRIES[:1])
    assert struct.unpack_from("<II", raw, 0) == (9, 1)
    assert struct.unpack_from("<IIQH", raw, 8) == (1, 2, 0, len("messages"))
    assert raw[8 + 18 :] == b"messages"


def test_catalog_without_tables_is_its_header() -> None:
    raw = pack_catalog(1, [])
    assert raw == CATALOG_HEADER.pack(1, 0)
    assert unpack_catalog(raw) == (1, [])


def test_no_catalog_blob_means_a_new_store() -> None:
    assert unpack_catalog(b"") == (1, [])


def test_catalog_shorter_than_its_header() -> None:
    with pytest.raises(CatalogError, match=r"^catalog of 7 bytes is shorter than its header$"):
        unpack_catalog(pack_catalog(1, [])[:7])


def test_table_count_flipped_up_runs_past_the_end() -> None:
    raw = pack_catalog(9, ENTRIES[:2])
    with pytest.raises(CatalogError, match=f"^catalog entry at byte {len(raw)} runs past the end$"):
        unpack_catalog(bytes(flip_byte(raw, OFF_COUNT, 0x01)))  # 2 -> 3 tables


def test_table_count_flipped_down_leaves_bytes_after_the_last_entry() -> None:
    raw = pack_catalog(9, ENTRIES[:2])
    second = TABLE_ENTRY.size + len("folders")
    with pytest.raises(CatalogError, match=f"^catalog has {second} bytes after its last entry$"):
        unpack_catalog(bytes(flip_byte(raw, OFF_COUNT, 0x03)))  # 2 -> 1 table


def test_name_length_flipped_past_the_end() -> None:
    raw = pack_catalog(9, ENTRIES[:1])
    name_length_high = CATALOG_HEADER.size + 17
    name_at = CATALOG_HEADER.size + TABLE_ENTRY.size
    with pytest.raises(CatalogError, match=f"^table name at byte {name_at} runs past the end$"):
        unpack_catalog(bytes(flip_byte(raw, name_length_high, 0x01)))


def test_cut_catalog_entry_names_where_it_starts() -> None:
    raw = pack_catalog(9, ENTRIES[:2])
    second = CATALOG_HEADER.size + TABLE_ENTRY.size + len("messages")
    with pytest.raises(CatalogError, match=f"^catalog entry at byte {second} runs past the end$"):
        unpack_catalog(raw[: second + TABLE_ENTRY.size - 1])
