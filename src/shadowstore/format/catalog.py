"""The catalog blob of a store: its tables and where each table's B+tree root is.

Stored in a run of blob pages named by the database header (``catalog``), rewritten at every checkpoint.

    off size field
      0   4  next table id
      4   4  number of tables
      8 ...  per table: u32 table id, u32 root page, u64 entry count (reserved, 0), u16 name length, name (UTF-8)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

CATALOG_HEADER = struct.Struct("<II")
TABLE_ENTRY = struct.Struct("<IIQH")
assert CATALOG_HEADER.size == 8 and TABLE_ENTRY.size == 18


class CatalogEntry(NamedTuple):
    table_id: int
    root_page: int
    name: str


class CatalogError(ValueError):
    pass


def pack_catalog(next_table_id: int, entries: list[CatalogEntry]) -> bytes:
    parts = [CATALOG_HEADER.pack(next_table_id, len(entries))]
    for entry in entries:
        name = entry.name.encode()
        parts.append(TABLE_ENTRY.pack(entry.table_id, entry.root_page, 0, len(name)))
        parts.append(name)
    return b"".join(parts)


def unpack_catalog(data: bytes) -> tuple[int, list[CatalogEntry]]:
    """Raises CatalogError when the blob does not parse exactly."""
    if not data:
        return 1, []
    if len(data) < CATALOG_HEADER.size:
        raise CatalogError(f"catalog of {len(data)} bytes is shorter than its header")
    next_id, count = CATALOG_HEADER.unpack_from(data, 0)
    pos = CATALOG_HEADER.size
    entries = []
    for _ in range(count):
        if pos + TABLE_ENTRY.size > len(data):
            raise CatalogError(f"catalog entry at byte {pos} runs past the end")
        table_id, root, _count, name_len = TABLE_ENTRY.unpack_from(data, pos)
        pos += TABLE_ENTRY.size
        if pos + name_len > len(data):
            raise CatalogError(f"table name at byte {pos} runs past the end")
        entries.append(CatalogEntry(table_id, root, data[pos : pos + name_len].decode("utf-8", "replace")))
        pos += name_len
    if pos != len(data):
        raise CatalogError(f"catalog has {len(data) - pos} bytes after its last entry")
    return next_id, entries
