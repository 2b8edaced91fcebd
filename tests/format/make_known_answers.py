"""Writes the known-answer images of tests/format/known_answers/ (see its README.md for the rule).

    python -m tests.format.make_known_answers            # compare: say which images today's code would change
    python -m tests.format.make_known_answers --write    # (re)write them: only for a new format version

Each ``build_*`` function packs fixed, known values with today's format modules; test_known_answers.py calls the
same functions and compares their bytes with the checked-in ones (the write direction), then parses the
checked-in bytes and asserts every field literally (the read direction). ``field_at`` names the field at each
offset of the binary images from a layout written from docs/formats.md, not from the declarations, so that a
mismatch can say which field moved.

The storage group image is made by the engine itself on a FaultFileSystem, with a manual clock standing in for
``now_us``, fixed signatures for ``Signature.new`` and a fixed host name, so that two runs give the same bytes.
The engine has no seam for these; they are patched here, inside this script only.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import socket
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

from shadowstore.backup.manifest import DatabaseEntry, FileEntry, Manifest
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.format import common
from shadowstore.format.catalog import CatalogEntry, pack_catalog
from shadowstore.format.checkpoint import Checkpoint
from shadowstore.format.common import (
    BACKUP_SNAPSHOT,
    BACKUP_STREAMING,
    LGPOS,
    AttachInfo,
    BackupInfo,
    LgPos,
    Signature,
    pack_attach_list,
)
from shadowstore.format.dbheader import STATE_DIRTY_SHUTDOWN, BlobRef, DbHeader
from shadowstore.format.logblock import FIRST, FULL, LAST, MIDDLE, BlockHeader, append_fragment, pack_block_header
from shadowstore.format.logfile import FLAG_CIRCULAR, FLAG_CIRCULAR_PAST, FLAG_RESERVE_LOG, LogHeader
from shadowstore.format.logrecord import (
    CREATE,
    DELETE,
    DROP,
    KIND_TXN,
    OP_CREATE,
    OP_DELETE,
    OP_DROP,
    OP_PUT,
    PUT,
    TXN_HEADER,
    AttachRecord,
    DetachRecord,
    pack_attach,
    pack_detach,
)
from shadowstore.format.page import pack_blob_page, pack_branch, pack_leaf
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem
from tests.conftest import QUIET

KNOWN_ANSWERS = Path(__file__).parent / "known_answers"

T0 = 1_704_067_200_000_000  # 2024-01-01 00:00:00 UTC in microseconds
S = 1_000_000  # a second in microseconds
LOG_SIG = Signature(0x965F4F70, T0 + 1_234_567, "MAILSRV01")
DB1_SIG = Signature(0x7E5E7DFF, T0 + 2_345_678, "MAILSRV01")
DB2_SIG = Signature(0x0BADF00D, T0 + 3_456_789, "MAILSRV01")
# why wide values: a u32 narrowed to a u16 plus padding reads small numbers the same; generations, page
# numbers, table ids and sequence numbers here fill three or more bytes of their fields, as the format allows.
G = 0xABCD00  # generations are G + 0x0D ... G + 0x1C
P = 0x123400  # page numbers are P + 3 ... P + 12 (of a store of P + 0x56 pages)
SEQUENCE = 0x0123_4567_89AB_CDEF
DBTIME = 0x0102_0304_0506_0708
ATTACHED = [
    AttachInfo(1, DB1_SIG, LgPos(G + 0x17, 0x1000), "priv1.edb"),
    AttachInfo(2, DB2_SIG, LgPos(G + 0x17, 0x1234), "pub1.edb"),
]
LOG_FILE_SIZE = 0x01F0_0000  # 31 MiB
PAGE_SIZE = 4096  # the smallest page size keeps the page images small


# --- shared structures (format/common.py) ------------------------------------------------------------------


def build_lgpos() -> bytes:
    """The docs' example position (0x4D,28,3C): generation 0x4D, byte 0x28 * 512 + 0x3C."""
    return LGPOS.pack(LgPos(0x4D, 0x28 * 512 + 0x3C).pack_u64())


def build_signature() -> bytes:
    return LOG_SIG.pack()


def build_bkinfo() -> bytes:
    return BackupInfo(LgPos(G + 0x1A, 0x1600), T0 + 90 * S, G + 0x15, G + 0x19, BACKUP_SNAPSHOT).pack()


def build_attach_list() -> bytes:
    return pack_attach_list(ATTACHED, 4096)


# --- log files (format/logfile.py, logblock.py, logrecord.py) ----------------------------------------------


def build_log_header() -> bytes:
    return LogHeader(
        generation=G + 0x1A,
        file_size=LOG_FILE_SIZE,
        page_size=8192,
        created_us=T0 + 26 * S,
        prev_created_us=T0 + 25 * S,
        signature=LOG_SIG,
        checkpoint=LgPos(G + 0x18, 0x1E3C),
        flags=FLAG_RESERVE_LOG | FLAG_CIRCULAR_PAST,
        base="E01",
        attached=ATTACHED,
    ).pack()


TABLE = 0x0A0B_0C03  # a table id


def build_txn_record() -> bytes:
    """A TXN record with one operation of each kind, laid out as Transaction and Store.commit lay it out."""
    return b"".join(
        (
            TXN_HEADER.pack(KIND_TXN, 1, 0, DBTIME, T0 + 26 * S + 400_000, 5),
            CREATE.pack(OP_CREATE, TABLE, 5) + b"inbox",
            PUT.pack(OP_PUT, TABLE, 8, 12) + b"msg-0001" + b"Hello, world",
            PUT.pack(OP_PUT, TABLE, 8, 0) + b"msg-0002",
            DELETE.pack(OP_DELETE, TABLE, 8) + b"msg-0000",
            DROP.pack(OP_DROP, TABLE - 1),
        )
    )


def build_attach_record() -> bytes:
    return pack_attach(AttachRecord(2, DB2_SIG, T0 + 26 * S + 100_000, "/srv/exchange/sg1/pub1.edb"))


def build_detach_record() -> bytes:
    return pack_detach(DetachRecord(2, T0 + 27 * S + 900_000))


def _flush_block(generation: int, number: int, time_us: int, fragments: list[tuple[int, bytes]]) -> bytes:
    """A block as the log writer lays one out: header, fragments, zeros to the end of its sector."""
    payload = bytearray()
    for kind, data in fragments:
        append_fragment(payload, kind, data)
    raw = pack_block_header(BlockHeader(generation, number, len(payload), len(fragments), time_us)) + payload
    return raw + bytes(-len(raw) % 512)


def build_log_blocks() -> bytes:
    """Three flush blocks, each padded to its sector: the last block of generation G + 0x1A (an ATTACH, then the
    FIRST part of the TXN record), the only block of G + 0x1B (its MIDDLE part) and the first of G + 0x1C (its LAST
    part, then a DETACH). Each comes from a different log file; the README says where."""
    txn = build_txn_record()
    return b"".join(
        (
            _flush_block(G + 0x1A, 0x105, T0 + 26 * S + 500_000, [(FULL, build_attach_record()), (FIRST, txn[:30])]),
            _flush_block(G + 0x1B, 0, T0 + 26 * S + 600_000, [(MIDDLE, txn[30:60])]),
            _flush_block(G + 0x1C, 0, T0 + 27 * S + 950_000, [(LAST, txn[60:]), (FULL, build_detach_record())]),
        )
    )


# --- checkpoint file (format/checkpoint.py) --------------------------------------------------------------


def build_checkpoint() -> bytes:
    """E01.chk as a crash leaves it between the two copies: the primary is one write ahead of the shadow."""
    newer = Checkpoint(
        sequence=SEQUENCE,
        checkpoint=LgPos(G + 0x18, 0x1E3C),
        signature=LOG_SIG,
        base="E01",
        full_backup=LgPos(G + 0x10, 0x1000),
        full_backup_us=T0 + 16 * S,
        inc_backup=LgPos(G + 0x15, 0x1200),
        inc_backup_us=T0 + 21 * S,
        written_us=T0 + 27 * S,
        log_file_size=LOG_FILE_SIZE,
        flags=FLAG_CIRCULAR,
        attached=ATTACHED,
    )
    older = newer._replace(
        sequence=SEQUENCE - 1, checkpoint=LgPos(G + 0x17, 0x1400), written_us=T0 + 24 * S, attached=ATTACHED[:1]
    )
    return newer.pack() + older.pack()


# --- store files (format/dbheader.py, page.py, catalog.py) ----------------------------------------------


def build_db_header() -> bytes:
    """Header page and shadow of a 4 KiB-page store, as a crash leaves them between the two copies of a Log
    Required update: the primary says generation G + 0x1A, the shadow, one write older, still G + 0x19."""
    newer = DbHeader(
        page_size=PAGE_SIZE,
        state=STATE_DIRTY_SHUTDOWN,
        sequence=SEQUENCE,
        dbid=1,
        db_signature=DB1_SIG,
        log_signature=LOG_SIG,
        dbtime=DBTIME,
        last_consistent=LgPos(G + 0x10, 0x1600),
        last_consistent_us=T0 + 16 * S + 500_000,
        last_attach=LgPos(G + 0x17, 0x1000),
        last_attach_us=T0 + 23 * S,
        last_detach=LgPos(G + 0x16, 0x1800),
        last_detach_us=T0 + 22 * S,
        replay_start=LgPos(G + 0x18, 0x1E3C),
        log_required_min=G + 0x18,
        log_required_max=G + 0x1A,
        log_committed=G + 0x1A,
        page_count=P + 0x56,
        catalog=BlobRef(49, P + 3, 1),
        space_map=BlobRef((P + 0x56 + 7) // 8, P + 4, 37),
        created_us=T0 + 2 * S,
        repair_count=0x0001_0002,
        repair_us=T0 + 12 * S,
        full_prev=BackupInfo(LgPos(G + 0x10, 0x1000), T0 + 16 * S, G + 0x0F, G + 0x10, BACKUP_STREAMING),
        inc_prev=BackupInfo(LgPos(G + 0x15, 0x1200), T0 + 21 * S, G + 0x11, G + 0x15, BACKUP_STREAMING),
        diff_prev=BackupInfo(LgPos(G + 0x13, 0x1400), T0 + 19 * S, G + 0x11, G + 0x13, BACKUP_STREAMING),
        copy_prev=BackupInfo(LgPos(G + 0x12, 0x1600), T0 + 18 * S, G + 0x0E, G + 0x12, BACKUP_STREAMING),
        full_cur=BackupInfo(LgPos(G + 0x19, 0x1800), T0 + 25 * S, G + 0x18, G + 0x19, BACKUP_STREAMING),
        snapshot_cur=BackupInfo(LgPos(G + 0x14, 0x1A00), T0 + 20 * S, G + 0x0D, G + 0x14, BACKUP_SNAPSHOT),
    )
    older = newer._replace(sequence=SEQUENCE - 1, log_required_max=G + 0x19, log_committed=G + 0x19)
    return newer.pack() + older.pack()


PAGE_LGPOS = LgPos(G + 0x1A, 0x142C)
BLOB_TAIL = (bytes(range(256)) * 4)[:928]  # the last 928 bytes of a 5000-byte value: 4072 + 928


def build_leaf_page() -> bytes:
    keys = [b"msg-0001", b"msg-0002", b"msg-0003"]
    values: list[bytes | BlobRef] = [b"Hello, world", BlobRef(5000, P + 9, 2), b""]
    return pack_leaf(PAGE_SIZE, P + 5, PAGE_LGPOS.pack_u64(), keys, values)


def build_branch_page() -> bytes:
    return pack_branch(PAGE_SIZE, P + 6, PAGE_LGPOS.pack_u64(), [b"msg-0002", b"n"], [P + 5, P + 7, P + 8])


def build_blob_page() -> bytes:
    return pack_blob_page(PAGE_SIZE, P + 10, PAGE_LGPOS.pack_u64(), BLOB_TAIL)


def build_catalog() -> bytes:
    return pack_catalog(TABLE + 2, [CatalogEntry(TABLE, P + 5, "inbox"), CatalogEntry(TABLE + 1, P + 12, "Entwürfe")])


# --- backup manifest (backup/manifest.py) ------------------------------------------------------------------


def build_manifest() -> bytes:
    """A full backup's manifest as backup/run.py fills it in (format version 2: with the home id)."""
    return _manifest().to_json()


def build_manifest_v1() -> bytes:
    """The same manifest as written before home ids (format version 1): how ``manifest.json`` was made."""
    raw = json.loads(_manifest().to_json())
    del raw["home_id"]
    raw["format_version"] = 1
    return (json.dumps(raw, indent=2) + "\n").encode()


def _manifest() -> Manifest:
    return Manifest(
        home_id="MAILSRV01-5eed0001",
        backup_id="20240101T000130.000000Z-full-5eed01",
        kind="full",
        sg="First Storage Group",
        log_base="E00",
        server="MAILSRV01",
        started="2024-01-01T00:01:30+00:00",
        ended="2024-01-01T00:01:32+00:00",
        log_signature=LOG_SIG.to_dict(),
        first_gen=0x18,
        last_gen=0x19,
        logs_end_us=T0 + 92 * S,
        databases=[
            DatabaseEntry(
                "Mailbox Store",
                "priv1.edb",
                1,
                DB1_SIG.to_dict(),
                8192,
                4660,
                "(0x18,F,3C)",
                0x18,
                300,
                "Dirty Shutdown",
                T0 + 91 * S,
            )
        ],
        files=[
            FileEntry("priv1.edb.zst", "db", "priv1.edb", 2_457_600, "ab" * 32, 81_234, "0badf00d", "zstd"),
            FileEntry("E0000018.log", "log", "E0000018.log", 1_048_576, "cd" * 32, 1_048_576, "12345678", None, 0x18),
            FileEntry("E0000019.log", "log", "E0000019.log", 1_048_576, "ef" * 32, 1_048_576, "9abcdef0", None, 0x19),
        ],
    )


# --- a whole storage group left in Dirty Shutdown -----------------------------------------------------------

HOME = "/home/shadowstore"
SG_DIR = "First Storage Group"
# Left out of the image: the event log (wall-clock times), E00.lock (the pid of the process that made it) and
# E00tmp.log (zeros a thread prepares; whether it exists at the instant of the crash is a matter of timing).
# A mount does without all three.
LEFT_OUT = ("events", f"{SG_DIR}/E00.lock", f"{SG_DIR}/E00tmp.log")
ATTACHMENT = bytes(range(256)) * 12  # 3072 bytes: out of line in blob pages (over 1633 for 8 KiB pages)
BULK_BEFORE, BULK_AFTER = 24, 56  # puts of 3000 bytes before and after the checkpoint: they fill generations


class ManualClock:
    """``now_us`` for the generator: moves only when told to."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * S)


@contextlib.contextmanager
def fixed_world(clock: ManualClock) -> Iterator[None]:
    """``now_us``, ``Signature.new`` and the host name fixed, in every module that took them."""
    randoms = iter([0x4C4F4701, 0x44420001, 0x44420002])  # log stream, priv1.edb, pub1.edb (creation order)
    original = common.now_us
    with contextlib.ExitStack() as stack:
        for name, module in list(sys.modules.items()):
            if name.startswith("shadowstore") and getattr(module, "now_us", None) is original:
                stack.enter_context(mock.patch.object(module, "now_us", clock))
        new = classmethod(lambda cls: cls(next(randoms), clock(), "KNOWN-ANSWER"))
        stack.enter_context(mock.patch.object(Signature, "new", new))
        stack.enter_context(mock.patch.object(socket, "gethostname", return_value="KNOWN-ANSWER"))
        yield


def _commit(sg: StorageGroup, clock: ManualClock, store: str, *ops: tuple[str, ...]) -> None:
    """One transaction of ``ops`` (("create", table), ("put", table, key, value), ...); then a maintenance
    cycle, so that the Log Required update a roll asks for is on disk before the next step, as it would be."""
    clock.advance(1)
    with sg.store(store).transaction() as tx:
        for op, *args in ops:
            getattr(tx, {"create": "create_table", "drop": "drop_table"}.get(op, op))(*args)
    maintenance = sg._maintenance
    assert maintenance is not None
    maintenance.run_cycles(1)


def crashed_storage_group() -> FaultFileSystem:
    """The engine's files after a process crash: tables and rows, a checkpoint, several generations."""
    clock = ManualClock()
    with fixed_world(clock):
        fs = FaultFileSystem(seed=1)
        home = ServerHome.init(HOME, fs=fs, log_file_size=64 * 1024, policy=QUIET)
        sg = home.storage_group()
        clock.advance(60)
        sg.mount()
        mbx, pub = "Mailbox Store", "Public Folder Store"
        _commit(sg, clock, mbx, ("create", "inbox"), ("put", "inbox", b"msg-0001", b"Hello, world"))
        _commit(sg, clock, mbx, ("put", "inbox", b"msg-0002", b"second"))
        _commit(sg, clock, pub, ("create", "folders"), ("put", "folders", b"/public/news", b"News"))
        _commit(sg, clock, mbx, ("put", "inbox", b"att-0001", ATTACHMENT))
        for r in range(BULK_BEFORE):
            create = [("create", "bulk")] if r == 0 else []
            _commit(sg, clock, mbx, *create, ("put", "bulk", b"k%d" % (r % 4), bytes([r]) * 3000))
        clock.advance(1)
        sg.checkpoint()  # every row so far is in the store files; recovery starts after it
        _commit(sg, clock, mbx, ("put", "inbox", b"msg-0003", b"third"), ("delete", "inbox", b"msg-0002"))
        _commit(sg, clock, mbx, ("create", "scratch"), ("put", "scratch", b"x", b"y"))
        _commit(sg, clock, pub, ("put", "folders", b"/public/sales", b"Sales"))
        _commit(sg, clock, mbx, ("drop", "scratch"))
        for r in range(BULK_BEFORE, BULK_BEFORE + BULK_AFTER):
            _commit(sg, clock, mbx, ("put", "bulk", b"k%d" % (r % 4), bytes([r]) * 3000))
        _commit(sg, clock, pub, ("put", "folders", b"/public/news", b"News, updated"))
        return fs.crash("keep")


def _files(fs: FaultFileSystem, folder: str) -> Iterator[str]:
    for name in fs.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.relpath(path, HOME) in LEFT_OUT:
            continue
        if fs.stat(path) is None:  # a folder
            yield from _files(fs, path)
        else:
            yield path


def build_storage_group() -> bytes:
    """The crashed server home as a gzip'd tar with fixed owners, modes and times, members sorted."""
    fs = crashed_storage_group()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(_files(fs, HOME)):
            data = fs.read_bytes(path)
            info = tarfile.TarInfo("home/" + os.path.relpath(path, HOME))
            info.size, info.mtime, info.mode = len(data), T0 // S, 0o644
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


# --- the images and their fields -----------------------------------------------------------------------------

IMAGES: dict[str, Callable[[], bytes]] = {
    "lgpos.bin": build_lgpos,
    "signature.bin": build_signature,
    "bkinfo.bin": build_bkinfo,
    "attach_list.bin": build_attach_list,
    "log_header.bin": build_log_header,
    "log_blocks.bin": build_log_blocks,
    "txn_record.bin": build_txn_record,
    "attach_record.bin": build_attach_record,
    "detach_record.bin": build_detach_record,
    "checkpoint.bin": build_checkpoint,
    "db_header.bin": build_db_header,
    "leaf_page.bin": build_leaf_page,
    "branch_page.bin": build_branch_page,
    "blob_page.bin": build_blob_page,
    "catalog.bin": build_catalog,
    "manifest.json": build_manifest_v1,
    "manifest_v2.json": build_manifest,
    "storage_group.tar.gz": build_storage_group,
}


def _sig(at: int, what: str) -> str:
    return f"{at} {what}.random {at + 4} {what}.created {at + 12} {what}.computer"


def _attach(at: int, name: str, what: str = "attach") -> str:
    fields = f"{at} {what}.dbid {at + 1} {what}.flags {at + 2} {what}.name_length"
    return f"{fields} {_sig(at + 4, what + '.signature')} {at + 32} {what}.attached_at {at + 40} {what}.name({name})"


def _fragment_fields(at: int, what: str) -> str:
    names = ("fragment.checksum", "fragment.length", "fragment.kind", "fragment.zero", what)
    return " ".join(f"{at + off} {name}" for off, name in zip((0, 4, 8, 9, 12), names, strict=True))


def _block_fields(at: int) -> str:
    names = ("checksum", "magic", "generation", "number", "length", "fragments", "time")
    return " ".join(f"{at + off} block.{name}" for off, name in zip((0, 4, 8, 12, 16, 20, 24), names, strict=True))


_PAGE = "0 checksum 4 pgno 8 lgpos 16 type 17 flags 18 items 20 length"
_ATTACHED = f"{_attach(0, 'priv1.edb')} {_attach(49, 'pub1.edb')} 97 list_end"
# The field at each offset of each binary image, from docs/formats.md (a field runs to the next offset named).
_LAYOUTS = {
    "lgpos.bin": "0 ib 2 isec 4 lGeneration",
    "signature.bin": _sig(0, "signature"),
    "bkinfo.bin": "0 mark 8 time 16 gen_low 20 gen_high 24 kind",
    "attach_list.bin": _ATTACHED,
    "log_header.bin": "0 checksum 4 magic 12 major 14 minor 16 generation 20 sector_size 22 header_sectors "
    f"24 file_size 28 page_size 32 created 40 prev_created {_sig(48, 'signature')} 76 checkpoint 84 flags "
    f"85 zero 88 base 92 zero {_attach(96, 'priv1.edb')} {_attach(145, 'pub1.edb')} 193 list_end 194 zero",
    "log_blocks.bin": f"{_block_fields(0)} {_fragment_fields(32, 'ATTACH')} "
    f"{_fragment_fields(110, 'FIRST.data')} 152 padding "
    f"{_block_fields(512)} {_fragment_fields(544, 'MIDDLE.data')} 586 padding "
    f"{_block_fields(1024)} {_fragment_fields(1056, 'LAST.data')} {_fragment_fields(1114, 'DETACH')} 1142 padding",
    "txn_record.bin": "0 kind 1 dbid 2 flags 4 dbtime 12 commit_time 20 op_count 24 CREATE.op 25 CREATE.table "
    "29 CREATE.name_length 31 CREATE.name 36 PUT.op 37 PUT.table 41 PUT.key_length 43 PUT.value_length "
    "47 PUT.key 55 PUT.value 67 PUT.op 68 PUT.table 72 PUT.key_length 74 PUT.value_length 78 PUT.key "
    "86 DELETE.op 87 DELETE.table 91 DELETE.key_length 93 DELETE.key 101 DROP.op 102 DROP.table",
    "attach_record.bin": f"0 kind 1 dbid 2 name_length {_sig(4, 'signature')} 32 time 40 name",
    "detach_record.bin": "0 kind 1 dbid 2 zero 4 zero 8 time",
    "checkpoint.bin": "0 checksum 4 magic 12 major 14 minor 16 sequence 24 checkpoint "
    f"{_sig(32, 'signature')} 60 base 64 full_backup 72 full_backup_time 80 inc_backup 88 inc_backup_time "
    "96 written 104 log_file_size 108 flags 112 attach_list",
    "db_header.bin": "0 checksum 4 magic 12 major 14 minor 16 page_size 20 state 24 sequence 32 dbid "
    f"36 repair_count {_sig(40, 'db_signature')} {_sig(68, 'log_signature')} 96 dbtime 104 last_consistent "
    "112 last_consistent_time 120 last_attach 128 last_attach_time 136 last_detach 144 last_detach_time "
    "152 replay_start 160 log_required_min 164 log_required_max 168 log_committed 172 page_count "
    "176 catalog.length 184 catalog.first_page 188 catalog.page_count 192 space_map.length "
    "200 space_map.first_page 204 space_map.page_count 208 created 216 repair_time 224 full_prev "
    "252 inc_prev 280 diff_prev 308 copy_prev 336 full_cur 364 snapshot_cur 392 zero",
    "leaf_page.bin": f"{_PAGE} 24 key_lengths 30 value_words 42 keys 66 values 94 zero",
    "branch_page.bin": f"{_PAGE} 24 children 36 key_lengths 40 keys 49 zero",
    "blob_page.bin": f"{_PAGE} 24 data 952 zero",
    "catalog.bin": "0 next_table_id 4 table_count 8 table_id 12 root_page 16 reserved 24 name_length 26 name "
    "31 table_id 35 root_page 39 reserved 47 name_length 49 name",
}
_COPIES = {"checkpoint.bin": 4096, "db_header.bin": PAGE_SIZE}  # files of a primary and a shadow copy


def field_at(name: str, offset: int) -> str:
    """The field of image ``name`` at byte ``offset``, as docs/formats.md lays it out ("?" when unknown)."""
    if name not in _LAYOUTS:
        return "?"
    prefix = ""
    if name in _COPIES:
        prefix = "shadow " if offset >= _COPIES[name] else "primary "
        offset %= _COPIES[name]
    tokens = _LAYOUTS[name].split()
    found = [field for start, field in zip(tokens[::2], tokens[1::2], strict=True) if int(start) <= offset]
    return prefix + (found[-1] if found else "?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write the images (only for a new format version)")
    parser.add_argument("names", nargs="*", help="images to build (default: all)")
    args = parser.parse_args(argv)
    changed = 0
    for name in args.names or IMAGES:
        data = IMAGES[name]()
        path = KNOWN_ANSWERS / name
        same = path.exists() and path.read_bytes() == data
        changed += not same
        if args.write and not same:
            path.write_bytes(data)
        print(f"{name}: {len(data)} bytes, {'unchanged' if same else 'written' if args.write else 'DIFFERS'}")
    if changed and not args.write:
        print("A differing image is a format change: see known_answers/README.md before writing anything.")
    return 0 if args.write or not changed else 1


if __name__ == "__main__":
    sys.exit(main())
