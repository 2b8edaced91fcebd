"""Known-answer images (tests/format/known_answers/, made by make_known_answers.py; its README has the rule).

Every other format test builds its bytes with the declarations the code uses, so a field that moves moves in
writer, reader and test together. Here the bytes are fixed: today's code must *write* exactly the checked-in
bytes for the known values, and *read* exactly the known values, written out literally below, from them.
The whole storage group image must mount, replay its logs and hold the known rows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from shadowstore.backup.manifest import DatabaseEntry, FileEntry, parse_manifest
from shadowstore.engine.space import SpaceMap, page_flags
from shadowstore.format.catalog import CatalogEntry, unpack_catalog
from shadowstore.format.checkpoint import Checkpoint, choose_checkpoint, unpack_checkpoint_copy
from shadowstore.format.common import LGPOS, AttachInfo, BackupInfo, LgPos, Signature, unpack_attach_list
from shadowstore.format.dbheader import BlobRef, DbHeader, unpack_db_header
from shadowstore.format.logblock import BlockHeader, block_span, fragment_at, unpack_block_header
from shadowstore.format.logfile import LogHeader, unpack_log_header
from shadowstore.format.logrecord import (
    AttachRecord,
    DetachRecord,
    TxnHeader,
    parse_ops,
    record_dbid,
    txn_header,
    unpack_attach,
    unpack_detach,
)
from shadowstore.format.page import PageHeader, unpack_branch, unpack_leaf, verify_page
from shadowstore.home import ServerHome
from tests.cli.clirun import run_json
from tests.conftest import QUIET
from tests.format.make_known_answers import IMAGES, KNOWN_ANSWERS, field_at

T0 = 1_704_067_200_000_000  # 2024-01-01 00:00:00 UTC
LOG_SIG = Signature(0x965F4F70, 1_704_067_201_234_567, "MAILSRV01")
DB1_SIG = Signature(0x7E5E7DFF, 1_704_067_202_345_678, "MAILSRV01")
DB2_SIG = Signature(0x0BADF00D, 1_704_067_203_456_789, "MAILSRV01")
ATTACHED = [
    AttachInfo(1, DB1_SIG, LgPos(0xABCD17, 4096), "priv1.edb"),
    AttachInfo(2, DB2_SIG, LgPos(0xABCD17, 4660), "pub1.edb"),
]


def stored(name: str) -> bytes:
    return (KNOWN_ANSWERS / name).read_bytes()


def first_difference(name: str, built: bytes, image: bytes) -> str:
    """Where today's bytes leave the image: the first differing byte outside a checksum (a checksum differs
    whenever anything it covers does), and the field there."""
    offsets = [i for i, (a, b) in enumerate(zip(built, image, strict=False)) if a != b]
    if len(built) != len(image):
        offsets.append(min(len(built), len(image)))
    fields = [(at, field_at(name, at)) for at in offsets]
    at, field = next(((at, f) for at, f in fields if not f.endswith("checksum")), fields[0])
    return (
        f"{name}: today's code writes {len(built)} bytes, the image has {len(image)}; first difference at "
        f"offset {at} (0x{at:x}), field {field}: wrote {built[at : at + 8].hex(' ')}, image has "
        f"{image[at : at + 8].hex(' ')}"
    )


# --- write: today's code packs the known values into exactly the checked-in bytes ----------------------------


@pytest.mark.parametrize("name", [name for name in IMAGES if name.endswith(".bin")])
def test_packing_the_known_values_gives_the_checked_in_bytes(name: str) -> None:
    built, image = IMAGES[name](), stored(name)
    if built != image:
        pytest.fail(first_difference(name, built, image))


@pytest.mark.parametrize("name", ["manifest.json", "manifest_v2.json"])
def test_the_manifest_written_today_is_the_checked_in_one(name: str) -> None:
    built, image = json.loads(IMAGES[name]()), json.loads(stored(name))
    assert built.keys() == image.keys()
    for key in built:
        assert built[key] == image[key], f"{name}: key {key!r} differs"


def test_a_manifest_is_written_in_format_version_2_with_its_home_id() -> None:
    image = json.loads(stored("manifest_v2.json"))
    assert (image["format_version"], image["home_id"]) == (2, "MAILSRV01-5eed0001")
    m = parse_manifest(stored("manifest_v2.json"), "known_answers/manifest_v2.json")
    v1 = parse_manifest(stored("manifest.json"), "known_answers/manifest.json")
    assert (m.format_version, m.home_id) == (2, "MAILSRV01-5eed0001")
    assert dataclasses.replace(m, format_version=1, home_id=None) == v1


def test_a_format_change_is_named_by_its_offset_and_field() -> None:
    image = stored("db_header.bin")
    moved = bytearray(image)
    moved[1:] = image[:-1]  # every field one byte later
    message = first_difference("db_header.bin", bytes(moved), image)
    assert "first difference at offset 4 (0x4), field primary magic" in message
    assert field_at("log_blocks.bin", 1064) == "fragment.kind"
    assert field_at("checkpoint.bin", 4096 + 16) == "shadow sequence"


# --- read: today's code finds exactly the known values in the checked-in bytes -------------------------------


def test_read_lgpos() -> None:
    (value,) = LGPOS.unpack(stored("lgpos.bin"))
    assert value == 0x0000004D_0028_003C
    assert LgPos.from_u64(value) == LgPos(0x4D, 20540)
    assert str(LgPos.from_u64(value)) == "(0x4D,28,3C)"


def test_read_signature_bkinfo_and_attach_list() -> None:
    assert Signature.unpack_from(stored("signature.bin")) == Signature(2522828656, 1_704_067_201_234_567, "MAILSRV01")
    assert BackupInfo.unpack_from(stored("bkinfo.bin")) == BackupInfo(
        LgPos(0xABCD1A, 5632), T0 + 90_000_000, 0xABCD15, 0xABCD19, 1
    )
    data = stored("attach_list.bin")
    assert unpack_attach_list(data, 0, len(data)) == ATTACHED
    assert data[-1] == 0


def test_read_log_header() -> None:
    assert unpack_log_header(stored("log_header.bin")) == LogHeader(
        generation=0xABCD1A,
        file_size=32_505_856,
        page_size=8192,
        created_us=T0 + 26_000_000,
        prev_created_us=T0 + 25_000_000,
        signature=LOG_SIG,
        checkpoint=LgPos(0xABCD18, 7740),
        flags=0x05,
        base="E01",
        attached=ATTACHED,
        sector_size=512,
        header_sectors=8,
        major=1,
        minor=0,
    )


def test_read_log_records() -> None:
    txn = stored("txn_record.bin")
    assert (txn[0], record_dbid(txn)) == (1, 1)
    assert txn_header(txn) == TxnHeader(dbid=1, dbtime=0x0102_0304_0506_0708, commit_us=T0 + 26_400_000, op_count=5)
    assert parse_ops(txn, 5) == [
        (3, 0x0A0B0C03, b"inbox", b""),
        (1, 0x0A0B0C03, b"msg-0001", b"Hello, world"),
        (1, 0x0A0B0C03, b"msg-0002", b""),
        (2, 0x0A0B0C03, b"msg-0000", b""),
        (4, 0x0A0B0C02, b"", b""),
    ]
    attach = stored("attach_record.bin")
    assert attach[0] == 2
    assert unpack_attach(attach) == AttachRecord(2, DB2_SIG, T0 + 26_100_000, "/srv/exchange/sg1/pub1.edb")
    detach = stored("detach_record.bin")
    assert detach[0] == 3
    assert unpack_detach(detach) == DetachRecord(2, T0 + 27_900_000)


def test_read_log_blocks_and_fragments() -> None:
    data = stored("log_blocks.bin")
    txn = stored("txn_record.bin")
    assert unpack_block_header(data, 0) == BlockHeader(0xABCD1A, 0x105, 120, 2, T0 + 26_500_000)
    assert unpack_block_header(data, 512) == BlockHeader(0xABCD1B, 0, 42, 1, T0 + 26_600_000)
    assert unpack_block_header(data, 1024) == BlockHeader(0xABCD1C, 0, 86, 2, T0 + 27_950_000)
    assert [block_span(n) for n in (120, 42, 86)] == [512, 512, 512]
    spans = ((32, 152), (110, 152), (544, 586), (1056, 1142), (1114, 1142))
    fragments = [fragment_at(data, at, end) for at, end in spans]
    assert [at for (at, _), f in zip(spans, fragments, strict=True) if f is None] == []  # fragments that fail
    kinds, pieces = [f[0] for f in fragments if f], [bytes(f[1]) for f in fragments if f]
    assert kinds == [1, 2, 3, 4, 1]  # FULL, FIRST, MIDDLE, LAST, FULL
    assert pieces[0] == stored("attach_record.bin")
    assert pieces[1] + pieces[2] + pieces[3] == txn
    assert [len(p) for p in pieces[1:4]] == [30, 30, 46]
    assert pieces[4] == stored("detach_record.bin")
    assert not any(data[152:512] + data[586:1024] + data[1142:])  # each block padded with zeros to its sector


def test_read_checkpoint_file() -> None:
    data = stored("checkpoint.bin")
    primary = Checkpoint(
        sequence=0x0123_4567_89AB_CDEF,
        checkpoint=LgPos(0xABCD18, 7740),
        signature=LOG_SIG,
        base="E01",
        full_backup=LgPos(0xABCD10, 4096),
        full_backup_us=T0 + 16_000_000,
        inc_backup=LgPos(0xABCD15, 4608),
        inc_backup_us=T0 + 21_000_000,
        written_us=T0 + 27_000_000,
        log_file_size=32_505_856,
        flags=0x02,
        attached=ATTACHED,
    )
    shadow = primary._replace(
        sequence=0x0123_4567_89AB_CDEE, checkpoint=LgPos(0xABCD17, 5120), written_us=T0 + 24_000_000
    )
    assert unpack_checkpoint_copy(data[:4096], 0) == primary
    assert unpack_checkpoint_copy(data[4096:], 4096) == shadow._replace(attached=ATTACHED[:1])
    assert choose_checkpoint(data) == (primary, [])


def test_read_store_header_pair() -> None:
    data = stored("db_header.bin")
    primary = DbHeader(
        page_size=4096,
        state=2,
        sequence=0x0123_4567_89AB_CDEF,
        dbid=1,
        db_signature=DB1_SIG,
        log_signature=LOG_SIG,
        dbtime=0x0102_0304_0506_0708,
        last_consistent=LgPos(0xABCD10, 5632),
        last_consistent_us=T0 + 16_500_000,
        last_attach=LgPos(0xABCD17, 4096),
        last_attach_us=T0 + 23_000_000,
        last_detach=LgPos(0xABCD16, 6144),
        last_detach_us=T0 + 22_000_000,
        replay_start=LgPos(0xABCD18, 7740),
        log_required_min=0xABCD18,
        log_required_max=0xABCD1A,
        log_committed=0xABCD1A,
        page_count=0x123456,
        catalog=BlobRef(49, 0x123403, 1),
        space_map=BlobRef(149_131, 0x123404, 37),
        created_us=T0 + 2_000_000,
        repair_count=0x0001_0002,
        repair_us=T0 + 12_000_000,
        full_prev=BackupInfo(LgPos(0xABCD10, 4096), T0 + 16_000_000, 0xABCD0F, 0xABCD10, 0),
        inc_prev=BackupInfo(LgPos(0xABCD15, 4608), T0 + 21_000_000, 0xABCD11, 0xABCD15, 0),
        diff_prev=BackupInfo(LgPos(0xABCD13, 5120), T0 + 19_000_000, 0xABCD11, 0xABCD13, 0),
        copy_prev=BackupInfo(LgPos(0xABCD12, 5632), T0 + 18_000_000, 0xABCD0E, 0xABCD12, 0),
        full_cur=BackupInfo(LgPos(0xABCD19, 6144), T0 + 25_000_000, 0xABCD18, 0xABCD19, 0),
        snapshot_cur=BackupInfo(LgPos(0xABCD14, 6656), T0 + 20_000_000, 0xABCD0D, 0xABCD14, 1),
        major=1,
        minor=0,
    )
    assert unpack_db_header(data[:4096], 0) == primary
    assert unpack_db_header(data[4096:], 4096) == primary._replace(
        sequence=0x0123_4567_89AB_CDEE, log_required_max=0xABCD19, log_committed=0xABCD19
    )
    assert primary.state_name == "Dirty Shutdown"
    assert not any(data[392:4096])


def test_read_pages() -> None:
    lgpos = 0x00ABCD1A_000A_002C  # (0xABCD1A,A,2C)
    leaf = stored("leaf_page.bin")
    header = verify_page(leaf, 0x123405)
    assert header == PageHeader(pgno=0x123405, lgpos_u64=lgpos, type=1, items=3, length=70)
    assert unpack_leaf(leaf, header) == (
        [b"msg-0001", b"msg-0002", b"msg-0003"],
        [b"Hello, world", BlobRef(5000, 0x123409, 2), b""],
    )
    branch = stored("branch_page.bin")
    header = verify_page(branch, 0x123406)
    assert header == PageHeader(pgno=0x123406, lgpos_u64=lgpos, type=2, items=3, length=25)
    assert unpack_branch(branch, header) == ([b"msg-0002", b"n"], [0x123405, 0x123407, 0x123408])
    blob = stored("blob_page.bin")
    assert verify_page(blob, 0x12340A) == PageHeader(pgno=0x12340A, lgpos_u64=lgpos, type=3, items=0, length=928)
    assert blob[24:952] == (bytes(range(256)) * 4)[:928]
    assert not any(blob[952:])


def test_read_catalog() -> None:
    assert unpack_catalog(stored("catalog.bin")) == (
        0x0A0B0C05,
        [CatalogEntry(0x0A0B0C03, 0x123405, "inbox"), CatalogEntry(0x0A0B0C04, 0x12340C, "Entwürfe")],
    )


def test_read_backup_manifest() -> None:
    m = parse_manifest(stored("manifest.json"), "known_answers/manifest.json")
    assert (m.format, m.format_version, m.backup_id, m.kind, m.method) == (
        "shadowstore-backup-set",
        1,
        "20240101T000130.000000Z-full-5eed01",
        "full",
        "streaming",
    )
    assert m.home_id is None  # format version 1 was written before home ids
    assert (m.sg, m.log_base, m.server, m.started, m.ended, m.based_on) == (
        "First Storage Group",
        "E00",
        "MAILSRV01",
        "2024-01-01T00:01:30+00:00",
        "2024-01-01T00:01:32+00:00",
        None,
    )
    sig = {"random": 2522828656, "created": "2024-01-01T00:00:01.234567+00:00", "computer": "MAILSRV01"}
    assert (m.log_signature, m.first_gen, m.last_gen, m.logs_end_us) == (sig, 24, 25, T0 + 92_000_000)
    db_sig = {"random": 2120121855, "created": "2024-01-01T00:00:02.345678+00:00", "computer": "MAILSRV01"}
    assert m.databases == [
        DatabaseEntry(
            "Mailbox Store",
            "priv1.edb",
            1,
            db_sig,
            8192,
            4660,
            "(0x18,F,3C)",
            24,
            300,
            "Dirty Shutdown",
            T0 + 91_000_000,
        )
    ]
    assert m.files == [
        FileEntry("priv1.edb.zst", "db", "priv1.edb", 2_457_600, "ab" * 32, 81_234, "0badf00d", "zstd", None),
        FileEntry("E0000018.log", "log", "E0000018.log", 1_048_576, "cd" * 32, 1_048_576, "12345678", None, 24),
        FileEntry("E0000019.log", "log", "E0000019.log", 1_048_576, "ef" * 32, 1_048_576, "9abcdef0", None, 25),
    ]


# --- a whole storage group left in Dirty Shutdown by a crash -----------------------------------------------

SG = "First Storage Group"
ROWS = {
    ("Mailbox Store", "inbox"): {
        b"att-0001": bytes(range(256)) * 12,  # out of line, in blob pages written by the checkpoint
        b"msg-0001": b"Hello, world",
        b"msg-0003": b"third",  # put after the checkpoint (msg-0002, deleted after it, is gone)
    },
    ("Mailbox Store", "bulk"): {b"k0": b"L" * 3000, b"k1": b"M" * 3000, b"k2": b"N" * 3000, b"k3": b"O" * 3000},
    ("Public Folder Store", "folders"): {b"/public/news": b"News, updated", b"/public/sales": b"Sales"},
}
CREATED = "2024-01-01T00:00:00.000000+00:00"
LOG_SIGNATURE = {"random": 0x4C4F4701, "created": CREATED, "computer": "KNOWN-ANSWER"}


@pytest.fixture
def crashed_home(tmp_path: Path) -> Path:
    """The image unpacked: a server home whose stores are in Dirty Shutdown."""
    with tarfile.open(KNOWN_ANSWERS / "storage_group.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "home"


def subset(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {key: actual.get(key) for key in expected}


@pytest.mark.parametrize(
    ("file", "dbid", "random", "dbtime", "attach"),
    [("priv1.edb", 1, 0x44420001, 27, "(0x1,8,20)"), ("pub1.edb", 2, 0x44420002, 1, "(0x1,9,20)")],
)
def test_eseutil_mh_reports_the_known_store_headers(
    capsys: pytest.CaptureFixture[str], crashed_home: Path, file: str, dbid: int, random: int, dbtime: int, attach: str
) -> None:
    code, out = run_json(capsys, "eseutil", "/mh", str(crashed_home / SG / file), "--json")
    expected = {
        "state": "Dirty Shutdown",
        "state_code": 2,
        "sequence": 7,
        "page_size": 8192,
        "dbid": dbid,
        "db_signature": {"random": random, "created": CREATED, "computer": "KNOWN-ANSWER"},
        "log_signature": LOG_SIGNATURE,
        "dbtime": dbtime,
        "last_consistent": {"lgpos": "(0x1,8,0)", "generation": 1},
        "last_attach": {"lgpos": attach, "generation": 1},
        "last_attach_time": "2024-01-01T00:01:00.000000+00:00",
        "last_detach_time": None,
        "replay_start": {"lgpos": "(0x2,43,9)", "generation": 2},
        "log_required": [2, 5],
        "log_committed": [0, 5],
        "created_time": CREATED,
        "major": 1,
        "minor": 0,
        "copy_used": 0,
        "damaged_copies": [],
    }
    assert (code, subset(out, expected)) == (0, expected)


def test_eseutil_mk_reports_the_known_checkpoint(capsys: pytest.CaptureFixture[str], crashed_home: Path) -> None:
    code, out = run_json(capsys, "eseutil", "/mk", str(crashed_home / SG / "E00.chk"), "--json")
    expected = {
        "sequence": 3,
        "checkpoint": {"lgpos": "(0x2,43,9)", "generation": 2},
        "signature": LOG_SIGNATURE,
        "base": "E00",
        "written_time": "2024-01-01T00:01:29.000000+00:00",
        "log_file_size": 65536,
        "circular_logging": False,
        "full_backup_time": None,
    }
    assert (code, subset(out, expected)) == (0, expected)
    assert [(a["dbid"], a["name"], a["attached_at"]) for a in out["attached"]] == [
        (1, "priv1.edb", "(0x1,8,20)"),
        (2, "pub1.edb", "(0x1,9,20)"),
    ]


def test_eseutil_ml_reports_the_known_log_set(capsys: pytest.CaptureFixture[str], crashed_home: Path) -> None:
    code, out = run_json(capsys, "eseutil", "/ml", str(crashed_home / SG), "--json")
    assert (code, out["generations"], out["contiguous"], out["checkpoint"]["lgpos"]) == (0, [1, 5], True, "(0x2,43,9)")
    logs = [
        (
            os.path.basename(log["file"]),
            log["generation"],
            log["created_time"][11:19],
            log["checkpoint_at_creation"]["lgpos"],
            log["records"],
            log["last_lgpos"]["lgpos"],
            log["signature"] == LOG_SIGNATURE,
        )
        for log in out["logs"]
    ]
    assert logs == [
        ("E0000001.log", 1, "00:00:00", "(0x1,8,0)", {"ATTACH": 2, "TXN": 20}, "(0x1,80,0)", True),
        ("E0000002.log", 2, "00:01:20", "(0x1,8,83)", {"TXN": 20}, "(0x2,80,0)", True),
        ("E0000003.log", 3, "00:01:42", "(0x2,43,9)", {"TXN": 18}, "(0x3,80,0)", True),
        ("E0000004.log", 4, "00:01:59", "(0x2,43,9)", {"TXN": 17}, "(0x4,80,0)", True),
        ("E00.log", 5, "00:02:16", "(0x2,43,9)", {"TXN": 14}, "(0x5,69,0)", True),
    ]
    assert [log["prev_created_time"] for log in out["logs"]][1:] == [log["created_time"] for log in out["logs"]][:-1]


def test_the_store_file_holds_the_known_pages(crashed_home: Path) -> None:
    """priv1.edb as the checkpoint wrote it: blob pages 2-6, leaves 7 and 8, the catalog in 9, the space map."""
    data = (crashed_home / SG / "priv1.edb").read_bytes()
    pages = {p: data[p * 8192 : (p + 1) * 8192] for p in range(2, 12)}
    headers = {p: verify_page(page, p) for p, page in pages.items()}

    def payload(p: int) -> bytes:
        return pages[p][24 : 24 + headers[p].length]

    header = unpack_db_header(data[:8192])
    assert (header.page_count, header.catalog, header.space_map) == (12, BlobRef(53, 9, 1), BlobRef(2, 10, 2))
    assert [(h.type, h.items, str(LgPos.from_u64(h.lgpos_u64))) for h in headers.values()] == [
        *[(3, 0, "(0x1,D,20)")] + [(3, 0, "(0x2,3D,20)")] * 4,
        (1, 3, "(0x1,D,20)"),
        (1, 4, "(0x2,3D,20)"),
        *[(3, 0, "(0x0,0,0)")] * 3,
    ]
    assert unpack_catalog(payload(9)) == (3, [CatalogEntry(1, 7, "inbox"), CatalogEntry(2, 8, "bulk")])
    assert unpack_leaf(pages[7], headers[7]) == (
        [b"att-0001", b"msg-0001", b"msg-0002"],
        [BlobRef(3072, 2, 1), b"Hello, world", b"second"],
    )
    assert payload(2) == bytes(range(256)) * 12
    assert unpack_leaf(pages[8], headers[8])[1] == [BlobRef(3000, p, 1) for p in (3, 4, 5, 6)]
    assert [payload(p) for p in (3, 4, 5, 6)] == [bytes([r]) * 3000 for r in (20, 21, 22, 23)]
    bitmap = payload(10) + payload(11)  # the space map: bit p of byte p // 8 says page p is used
    assert bitmap == b"\xff\x0f"
    assert page_flags(12, bitmap) == b"\x01" * 12  # read as the engine reads it
    written = SpaceMap.empty()
    written.allocate(10)
    assert written.bitmap_after([]) == bitmap  # written as the engine writes it


def test_mount_replays_the_logs_and_finds_the_known_rows(
    capsys: pytest.CaptureFixture[str], crashed_home: Path
) -> None:
    found: dict[tuple[str, str], dict[bytes, bytes]] = {}
    with ServerHome.open(str(crashed_home), policy=QUIET) as home:
        sg = home.storage_group(SG)
        report = sg.mount()  # soft recovery: both stores are in Dirty Shutdown
        for store in ("Mailbox Store", "Public Folder Store"):
            with sg.store(store).snapshot() as tx:
                for table in tx.tables():
                    found[store, table] = dict(tx.range(table))
    assert (report.stores, report.generations, report.records) == (["Mailbox Store", "Public Folder Store"], (2, 5), 61)
    assert found.keys() == ROWS.keys()  # table "scratch" was created and dropped after the checkpoint
    for table, rows in ROWS.items():
        assert found[table] == rows, f"rows of {table}"
    for file, dbtime in (("priv1.edb", 86), ("pub1.edb", 3)):  # 59 and 2 transactions replayed
        code, out = run_json(capsys, "eseutil", "/mh", str(crashed_home / SG / file), "--json")
        assert (code, out["state"], out["dbtime"], out["log_required"]) == (0, "Clean Shutdown", dbtime, [0, 0])
