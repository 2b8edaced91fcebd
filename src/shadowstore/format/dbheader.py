"""The database (store) file header.

A store file is an array of pages. Page 0 is the header and page 1 its shadow copy; data pages start at page 2.
A writer updates page 0, fsyncs, updates page 1, fsyncs; a reader uses the valid copy with the higher header
sequence number. The header names the durable tree (the catalog blob) and the space map, and carries the
ESE-like fields eseutil /mh prints. See docs/formats.md, "Database files".

    off size field
      0   4  checksum: CRC-32C of bytes 4..page_size-1 of this page
      4   8  magic b"SHSTEDB\\x1a"
     12   2  format major version
     14   2  format minor version
     16   4  page size in bytes
     20   4  state: 1 Just Created, 2 Dirty Shutdown, 3 Clean Shutdown, 4 Being Converted, 5 Force Detach
     24   8  header sequence number (increases with every header write)
     32   4  dbid (the store's number in its storage group)
     36   4  repair count
     40  28  database signature
     68  28  log signature (of the log stream this store belongs to)
     96   8  dbtime: number of the last transaction reflected in this file
    104   8  last consistent (LGPOS)          112 8  its time (us)
    120   8  last attach (LGPOS)              128 8  its time
    136   8  last detach (LGPOS)              144 8  its time
    152   8  replay start (LGPOS): every transaction logged before it is in this file
    160   4  log required, lowest generation (0 when consistent)
    164   4  log required, highest generation
    168   4  log committed, highest generation
    172   4  page count (file length in pages, header pages included)
    176  16  catalog blob: length u64, first page u32, page count u32
    192  16  space map blob: same layout
    208   8  creation time (us)
    216   8  time of the last repair (us)
    224 168  six backup-info blocks of 28 bytes (common.BKINFO): previous full, previous incremental,
             previous differential, previous copy, current full, current shadow copy
    392 ...  zero up to the end of the page
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from shadowstore.format.common import (
    BKINFO,
    EMPTY_BACKUP_INFO,
    LGPOS_ZERO,
    BackupInfo,
    LgPos,
    Signature,
    seal_checksum,
    stored_and_computed_checksum,
)

DB_MAGIC = b"SHSTEDB\x1a"
MAGIC_OFFSET = 4  # of DB_MAGIC in each header copy
# A real Windows ESE database: ulMagic 0x89ABCDEF (little-endian) at offset 4 of its header (research/ese.md §3.1)
ESE_DB_MAGIC = b"\xef\xcd\xab\x89"
DB_FORMAT = (1, 0)
HEADER_PAGES = 2  # page 0 and its shadow, page 1

MIN_PAGE_SIZE = 4096
MAX_PAGE_SIZE = 32768
DEFAULT_PAGE_SIZE = 8192
PAGE_SIZES = (4096, 8192, 16384, 32768)

STATE_JUST_CREATED = 1
STATE_DIRTY_SHUTDOWN = 2
STATE_CLEAN_SHUTDOWN = 3
STATE_BEING_CONVERTED = 4
STATE_FORCE_DETACH = 5
STATE_NAMES = {
    STATE_JUST_CREATED: "Just Created",
    STATE_DIRTY_SHUTDOWN: "Dirty Shutdown",
    STATE_CLEAN_SHUTDOWN: "Clean Shutdown",
    STATE_BEING_CONVERTED: "Being Converted",
    STATE_FORCE_DETACH: "Force Detach Replay Error",
}

BACKUP_SLOTS = ("full_prev", "inc_prev", "diff_prev", "copy_prev", "full_cur", "snapshot_cur")

BLOB_REF = struct.Struct("<QII")
assert BLOB_REF.size == 16

DB_HEADER = struct.Struct("<I8sHHIIQII28s28sQQQQQQQQIIIIQIIQIIQQ")
assert DB_HEADER.size == 224
BACKUP_AREA = DB_HEADER.size
assert BACKUP_AREA + len(BACKUP_SLOTS) * BKINFO.size == 392


class BlobRef(NamedTuple):
    """A run of contiguous pages holding ``length`` bytes (page headers not counted)."""

    length: int
    first_page: int
    page_count: int

    @property
    def is_empty(self) -> bool:
        return self.page_count == 0


EMPTY_BLOB = BlobRef(0, 0, 0)


class DbHeader(NamedTuple):
    page_size: int
    state: int
    sequence: int
    dbid: int
    db_signature: Signature
    log_signature: Signature
    dbtime: int = 0
    last_consistent: LgPos = LGPOS_ZERO
    last_consistent_us: int = 0
    last_attach: LgPos = LGPOS_ZERO
    last_attach_us: int = 0
    last_detach: LgPos = LGPOS_ZERO
    last_detach_us: int = 0
    replay_start: LgPos = LGPOS_ZERO
    log_required_min: int = 0
    log_required_max: int = 0
    log_committed: int = 0
    page_count: int = HEADER_PAGES
    catalog: BlobRef = EMPTY_BLOB
    space_map: BlobRef = EMPTY_BLOB
    created_us: int = 0
    repair_count: int = 0
    repair_us: int = 0
    full_prev: BackupInfo = EMPTY_BACKUP_INFO
    inc_prev: BackupInfo = EMPTY_BACKUP_INFO
    diff_prev: BackupInfo = EMPTY_BACKUP_INFO
    copy_prev: BackupInfo = EMPTY_BACKUP_INFO
    full_cur: BackupInfo = EMPTY_BACKUP_INFO
    snapshot_cur: BackupInfo = EMPTY_BACKUP_INFO
    major: int = DB_FORMAT[0]
    minor: int = DB_FORMAT[1]

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "Illegal")

    def pack(self) -> bytes:
        buf = bytearray(self.page_size)
        DB_HEADER.pack_into(
            buf,
            0,
            0,
            DB_MAGIC,
            self.major,
            self.minor,
            self.page_size,
            self.state,
            self.sequence,
            self.dbid,
            self.repair_count,
            self.db_signature.pack(),
            self.log_signature.pack(),
            self.dbtime,
            self.last_consistent.pack_u64(),
            self.last_consistent_us,
            self.last_attach.pack_u64(),
            self.last_attach_us,
            self.last_detach.pack_u64(),
            self.last_detach_us,
            self.replay_start.pack_u64(),
            self.log_required_min,
            self.log_required_max,
            self.log_committed,
            self.page_count,
            *self.catalog,
            *self.space_map,
            self.created_us,
            self.repair_us,
        )
        offset = BACKUP_AREA
        for slot in BACKUP_SLOTS:
            buf[offset : offset + BKINFO.size] = getattr(self, slot).pack()
            offset += BKINFO.size
        seal_checksum(buf)
        return bytes(buf)


class DbHeaderError(ValueError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def unpack_db_header(page: bytes | bytearray | memoryview, file_offset: int = 0) -> DbHeader:
    """Parse and verify one header copy (a whole page). Raises DbHeaderError naming the file offset."""
    if len(page) < MIN_PAGE_SIZE:
        raise DbHeaderError(f"header copy is {len(page)} bytes, shorter than the smallest page", file_offset)
    (page_size,) = struct.unpack_from("<I", page, 16)
    if page_size != len(page):
        raise DbHeaderError(f"header says page size {page_size}, read {len(page)} bytes", file_offset + 16)
    stored, computed = stored_and_computed_checksum(page)
    if stored != computed:
        raise DbHeaderError(
            f"header checksum mismatch at offset {file_offset}: stored 0x{stored:08x}, computed 0x{computed:08x}",
            file_offset,
        )
    f = DB_HEADER.unpack_from(page, 0)
    if f[1] != DB_MAGIC:
        raise DbHeaderError(f"not a ShadowStore database (magic {f[1]!r})", file_offset + 4)
    if f[2] != DB_FORMAT[0]:
        raise DbHeaderError(f"database format version {f[2]}.{f[3]} is not supported", file_offset + 12)
    backups = [BackupInfo.unpack_from(page, BACKUP_AREA + i * BKINFO.size) for i in range(len(BACKUP_SLOTS))]
    return DbHeader(
        page_size=f[4],
        state=f[5],
        sequence=f[6],
        dbid=f[7],
        repair_count=f[8],
        db_signature=Signature.unpack_from(f[9]),
        log_signature=Signature.unpack_from(f[10]),
        dbtime=f[11],
        last_consistent=LgPos.from_u64(f[12]),
        last_consistent_us=f[13],
        last_attach=LgPos.from_u64(f[14]),
        last_attach_us=f[15],
        last_detach=LgPos.from_u64(f[16]),
        last_detach_us=f[17],
        replay_start=LgPos.from_u64(f[18]),
        log_required_min=f[19],
        log_required_max=f[20],
        log_committed=f[21],
        page_count=f[22],
        catalog=BlobRef(f[23], f[24], f[25]),
        space_map=BlobRef(f[26], f[27], f[28]),
        created_us=f[29],
        repair_us=f[30],
        full_prev=backups[0],
        inc_prev=backups[1],
        diff_prev=backups[2],
        copy_prev=backups[3],
        full_cur=backups[4],
        snapshot_cur=backups[5],
        major=f[2],
        minor=f[3],
    )


def has_db_magic(head: bytes | bytearray | memoryview) -> bool:
    """Whether a header copy at any page size (copy 0 at offset 0, copy 1 at offset page_size) starts with the
    ShadowStore database magic: then the file is a store, damaged or not."""
    starts = {0, *PAGE_SIZES}
    return any(bytes(head[at + MAGIC_OFFSET : at + MAGIC_OFFSET + len(DB_MAGIC)]) == DB_MAGIC for at in starts)


def not_a_database(head: bytes | bytearray | memoryview, file_size: int) -> str | None:
    """Why a file of ``file_size`` bytes whose first bytes are ``head`` is not a ShadowStore database, as the
    rest of a sentence that starts with the file's name and names what was found instead (empty, zero-filled, a
    real ESE database, other bytes); None when a header copy carries the database magic."""
    if file_size == 0:
        return "is not a ShadowStore or ESE database: it is empty"
    if has_db_magic(head):
        return None
    magic = bytes(head[MAGIC_OFFSET : MAGIC_OFFSET + len(DB_MAGIC)])
    if magic.startswith(ESE_DB_MAGIC):
        return "is a real ESE database from Windows (magic 0x89abcdef at offset 4); read it with 'eseutil /mh'"
    if not any(head):
        extent = "all" if len(head) == file_size else f"the first {len(head)}"
        return f"is not a ShadowStore or ESE database: it is zero-filled ({extent} of its {file_size} bytes)"
    size = (
        f"is {file_size} bytes, shorter than one {MIN_PAGE_SIZE}-byte page, and " if file_size < MIN_PAGE_SIZE else ""
    )
    found = f" (found {magic!r})" if magic else ""
    return f"is not a ShadowStore or ESE database: it {size}has no known magic at offset {MAGIC_OFFSET}{found}"


def detect_page_size(first_bytes: bytes) -> int | None:
    """The page size recorded in a header copy at the start of ``first_bytes``, if it is plausible."""
    if len(first_bytes) < 20 or first_bytes[MAGIC_OFFSET : MAGIC_OFFSET + len(DB_MAGIC)] != DB_MAGIC:
        return None
    (page_size,) = struct.unpack_from("<I", first_bytes, 16)
    if page_size not in PAGE_SIZES:
        return None
    return int(page_size)
