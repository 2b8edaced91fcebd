"""eseutil /k, /g and /r on ShadowStore's own files (tools/checksums.py, tools/integrity.py,
tools/softrecovery.py, cli/eseutil_checks.py).

Each corruption is built with the format's own declarations (format/page.py, format/dbheader.py): a byte
flipped at a fixed offset for /k, and for /g a page rewritten *with a correct checksum* but wrong content, so
that /k passes and only the structural check can catch it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import NamedTuple

import click
import pytest
from click.testing import CliRunner

from shadowstore.cli.eseutil_checks import CHECK_MODES, current_home
from shadowstore.cli.eseutil_cmd import INITIATING
from shadowstore.cli.eseutil_layout import exit_code, report_json
from shadowstore.engine.dbfile import DatabaseFile, read_header_copies
from shadowstore.errors import (
    DatabaseCorruptedError,
    ExitCode,
    FileNotFoundError_,
    InvalidParameterError,
    NotFoundError,
    ReadVerifyFailureError,
    StorageGroupBusyError,
)
from shadowstore.events import EventLog
from shadowstore.format.catalog import unpack_catalog
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN, STATE_DIRTY_SHUTDOWN, BlobRef, DbHeader
from shadowstore.format.page import (
    PAGE_HEADER,
    pack_blob_page,
    pack_branch,
    pack_leaf,
    payload_capacity,
    unpack_branch,
    unpack_leaf,
    verify_page,
)
from shadowstore.home import DEFAULT_SG, ServerHome
from shadowstore.io.fs import OsFileSystem
from shadowstore.tools import workload
from shadowstore.tools.checksums import (
    LogChecksums,
    StoreChecksums,
    check_file,
    check_store,
    page_faults,
    read_space_map,
    read_used_flags,
)
from shadowstore.tools.eseutil import ESE_DB_MAGIC, dump_database
from shadowstore.tools.integrity import check_integrity
from shadowstore.tools.softrecovery import soft_recover
from tests.conftest import QUIET

OsFS = OsFileSystem()
ROWS = 2000  # rows of table "t": enough for a root branch over some 40 leaves
VALUE = b"v" * 100


class Built(NamedTuple):
    home: str
    sg_dir: str

    def path(self, name: str) -> str:
        return os.path.join(self.sg_dir, name)

    @property
    def store(self) -> str:
        return self.path("priv1.edb")


def build_home(path: str) -> Built:
    """A dismounted home: table "t" (ROWS rows, a two-level tree, a third of them deleted in a later
    checkpoint, so free pages hold old versions) and table "big" (two values stored out of line)."""
    home = ServerHome.init(path, log_file_size=64 * 1024, policy=QUIET)
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
        tx.create_table("big")
        for i in range(ROWS):
            tx.put("t", b"k%05d" % i, VALUE)
        tx.put("big", b"a", bytes(range(256)) * 100)
        tx.put("big", b"b", b"x" * 30000)
    sg.checkpoint()
    with store.transaction() as tx:
        for i in range(0, ROWS, 3):
            tx.delete("t", b"k%05d" % i)
    sg.dismount()
    home.close()
    return Built(path, os.path.join(path, DEFAULT_SG))


@pytest.fixture
def built(tmp_path: os.PathLike[str]) -> Built:
    return build_home(os.path.join(tmp_path, "home"))


# --- named helpers: bytes built with the format's declarations ---------------------------------------------


def flip_byte(path: str, offset: int, mask: int = 0xFF) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ mask]))


def header_of(path: str) -> DbHeader:
    return read_header_copies(OsFS, path).header


def read_page(path: str, pgno: int, page_size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(pgno * page_size)
        return f.read(page_size)


def write_page(path: str, pgno: int, image: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(pgno * len(image))
        f.write(image)


def lgpos_of(page: bytes) -> int:
    return int(PAGE_HEADER.unpack_from(page, 0)[2])


def table_root(path: str, name: str) -> int:
    header = header_of(path)
    file = DatabaseFile(OsFS, path, header.page_size, EventLog(None), None, readonly=True)
    try:
        _next, entries = unpack_catalog(file.read_blob(header.catalog))
    finally:
        file.close()
    return next(e.root_page for e in entries if e.name == name)


def root_branch(built: Built) -> tuple[int, list[bytes], list[int]]:
    """(page, separator keys, children) of the root of table "t", a branch."""
    header = header_of(built.store)
    pgno = table_root(built.store, "t")
    page = read_page(built.store, pgno, header.page_size)
    keys, children = unpack_branch(page, verify_page(page, pgno))
    return pgno, keys, children


def leaf(built: Built, pgno: int) -> tuple[list[bytes], list[bytes | BlobRef]]:
    page = read_page(built.store, pgno, header_of(built.store).page_size)
    return unpack_leaf(page, verify_page(page, pgno))


def rewrite_leaf(built: Built, pgno: int, keys: list[bytes], values: list[bytes | BlobRef]) -> None:
    """Page ``pgno`` replaced by a leaf of ``keys`` and ``values``, sealed with a correct checksum."""
    size = header_of(built.store).page_size
    lgpos = lgpos_of(read_page(built.store, pgno, size))
    write_page(built.store, pgno, pack_leaf(size, pgno, lgpos, keys, values))


def rewrite_branch(built: Built, pgno: int, keys: list[bytes], children: list[int]) -> None:
    size = header_of(built.store).page_size
    lgpos = lgpos_of(read_page(built.store, pgno, size))
    write_page(built.store, pgno, pack_branch(size, pgno, lgpos, keys, children))


def reseal_space_map(path: str, page: int, used: bool) -> None:
    """Set or clear the space map's bit for ``page`` and rewrite the space-map blob, every page resealed."""
    header = header_of(path)
    bitmap = bytearray(read_space_map(OsFS, path, header))
    if used:
        bitmap[page >> 3] |= 1 << (page & 7)
    else:
        bitmap[page >> 3] &= ~(1 << (page & 7)) & 0xFF
    ref, size = header.space_map, header.page_size
    cap = payload_capacity(size)
    for i in range(ref.page_count):
        pgno = ref.first_page + i
        write_page(path, pgno, pack_blob_page(size, pgno, 0, bytes(bitmap[i * cap : (i + 1) * cap])))


def used_flags(path: str) -> bytes:
    return bytes(read_used_flags(OsFS, path, header_of(path)))


def messages(errors: list[object]) -> str:
    return "\n".join(map(str, errors))


# --- /k ------------------------------------------------------------------------------------------------------


def test_fresh_home_passes_k_on_every_file(tmp_path: os.PathLike[str]) -> None:
    home = ServerHome.init(os.path.join(tmp_path, "home"), log_file_size=64 * 1024, policy=QUIET)
    sg_dir = os.path.join(home.path, DEFAULT_SG)
    for name in ("priv1.edb", "pub1.edb", "E00.log", "E00.chk"):
        dump = check_file(os.path.join(sg_dir, name))
        assert dump.ok, (name, dump.errors, dump.warnings)
        assert exit_code(dump) == ExitCode.OK
    store = check_file(os.path.join(sg_dir, "priv1.edb"))
    assert isinstance(store, StoreChecksums)
    assert store.seen == 2  # a store never mounted is its two header pages


def test_store_in_use_passes_k_and_g_and_counts_every_page(built: Built) -> None:
    dump = check_store(built.store)
    header = header_of(built.store)
    assert dump.ok, messages(dump.errors)
    assert dump.seen == os.path.getsize(built.store) // header.page_size
    assert dump.bad_checksums == dump.wrong_page_numbers == 0
    assert dump.uninitialized > 0  # the file grew by a chunk: its tail was never written
    assert dump.highest_lgpos is not None
    lines = CHECK_MODES["k"][1](dump)
    assert f"{dump.seen} pages seen" in lines
    assert "0 bad checksums" in lines
    integrity = check_integrity(built.store)
    assert integrity.ok, messages(integrity.errors)
    assert {t.name: t.entries for t in integrity.tables} == {"t": ROWS - len(range(0, ROWS, 3)), "big": 2}
    assert integrity.reached_pages == integrity.used_pages
    assert "Integrity check successful." in CHECK_MODES["g"][1](integrity)


def test_flipped_byte_in_page_in_use_is_a_bad_checksum_naming_page_and_offset(built: Built) -> None:
    pgno, _keys, children = root_branch(built)
    size = header_of(built.store).page_size
    target = children[3]
    flip_byte(built.store, target * size + 100)
    dump = check_store(built.store)
    assert dump.bad_checksums == 1
    assert [p.pgno for p in dump.bad_pages] == [target]
    error = dump.errors[0]
    assert isinstance(error, ReadVerifyFailureError)
    assert error.code == -1018
    assert f"page {target} at offset {target * size}" in error.message
    assert "checksum mismatch" in error.message
    assert exit_code(dump) == ExitCode.DATABASE_DAMAGED
    assert "1 bad checksums" in CHECK_MODES["k"][1](dump)
    data = CHECK_MODES["k"][2](dump)
    assert data["bad_pages"] == [
        {"pgno": target, "offset": target * size, "problem": dump.bad_pages[0].problem, "in_use": True}
    ]
    assert pgno != target


def test_damaged_page_not_in_use_is_counted_not_an_error(built: Built) -> None:
    size = header_of(built.store).page_size
    flags = used_flags(built.store)
    free = next(
        p for p in range(2, len(flags)) if not flags[p] and any(read_page(built.store, p, size))
    )  # an old version
    flip_byte(built.store, free * size + 200)
    dump = check_store(built.store)
    assert dump.errors == []
    assert dump.free_damaged == 1
    assert [(p.pgno, p.in_use) for p in dump.bad_pages] == [(free, False)]
    assert exit_code(dump) == ExitCode.OK


def test_damaged_header_copy_is_a_warning(built: Built) -> None:
    size = header_of(built.store).page_size
    flip_byte(built.store, size + 100)  # the shadow copy
    dump = check_store(built.store)
    assert dump.errors == []
    assert dump.bad_checksums == 1
    assert "header copy 1 (page 1, offset 8192) is damaged" in dump.warnings[0]
    assert exit_code(dump) == ExitCode.WARNING


def test_page_faults_finds_every_bad_page_of_a_block(built: Built) -> None:
    size = header_of(built.store).page_size
    with open(built.store, "rb") as f:
        block = bytearray(f.read(64 * size))
    block[5 * size + 300] ^= 1
    block[9 * size + 4] ^= 1  # the page number field
    faults = page_faults(memoryview(block)[2 * size :], 2, size)
    assert [pgno for pgno, _problem in faults][:2] == [5, 9]
    assert "checksum mismatch" in faults[0][1]


def test_damaged_log_block_is_an_error_with_its_offset(built: Built) -> None:
    logs = sorted(n for n in os.listdir(built.sg_dir) if n.startswith("E00") and n.endswith(".log") and len(n) > 7)
    path = built.path(logs[0])
    flip_byte(path, 4096 + 40)  # inside block 0's first fragment
    dump = check_file(path)
    assert isinstance(dump, LogChecksums)
    assert dump.errors
    assert "offset 4096" in dump.errors[0].message
    assert exit_code(dump) == ExitCode.LOG_DAMAGED


def test_damaged_checkpoint_copy_is_a_warning_both_an_error(built: Built) -> None:
    chk = built.path("E00.chk")
    flip_byte(chk, 100)
    assert exit_code(check_file(chk)) == ExitCode.WARNING
    flip_byte(chk, 4096 + 100)
    dump = check_file(chk)
    assert dump.errors[0].code == -533
    assert "offset 0" in dump.errors[0].message
    assert "offset 4096" in dump.errors[0].message


def test_files_that_are_not_ours_are_refused(tmp_path: os.PathLike[str]) -> None:
    ese = os.path.join(tmp_path, "real.edb")
    with open(ese, "wb") as f:
        f.write(b"\0\0\0\0" + ESE_DB_MAGIC + bytes(8192))
    with pytest.raises(InvalidParameterError, match="not a ShadowStore file"):
        check_file(ese)
    other = os.path.join(tmp_path, "notes.txt")
    with open(other, "wb") as f:
        f.write(b"hello, world\n" * 1000)
    with pytest.raises(InvalidParameterError, match=r"notes\.txt"):
        check_file(other)
    with pytest.raises(FileNotFoundError_):
        check_file(os.path.join(tmp_path, "missing.edb"))


def test_mounted_store_is_refused_with_what_to_do(built: Built) -> None:
    home = ServerHome.open(built.home, policy=QUIET)
    sg = home.storage_group()
    sg.mount()
    try:
        for check in (check_file, check_integrity):
            with pytest.raises(StorageGroupBusyError, match="dismount") as caught:
                check(built.store, built.home)
            assert caught.value.exit_code == ExitCode.BUSY
        # without the home, the open file gives the store away
        with pytest.raises(StorageGroupBusyError, match=f"pid {os.getpid()}"):
            check_integrity(built.store)
    finally:
        sg.dismount()
        home.close()
    assert check_integrity(built.store, built.home).ok


# --- /g: pages with correct checksums and wrong content -------------------------------------------------------


def test_keys_out_of_order_in_a_leaf(built: Built) -> None:
    _root, _keys, children = root_branch(built)
    keys, values = leaf(built, children[2])
    keys[0], keys[1] = keys[1], keys[0]
    rewrite_leaf(built, children[2], keys, values)
    assert check_store(built.store).ok  # every checksum is right
    dump = check_integrity(built.store)
    assert "keys out of order" in messages(dump.errors)
    assert f"page {children[2]} at offset {children[2] * 8192}" in dump.errors[0].message
    assert {t.name: t.ok for t in dump.tables} == {"t": False, "big": True}
    assert exit_code(dump) == ExitCode.DATABASE_DAMAGED
    assert dump.errors[0].code == -1206


def test_key_beyond_its_parents_separator(built: Built) -> None:
    _root, separators, children = root_branch(built)
    keys, values = leaf(built, children[0])
    keys[-1] = separators[0] + b"\xff"  # still ascending in the page, but belongs to the next leaf
    rewrite_leaf(built, children[0], keys, values)
    dump = check_integrity(built.store)
    assert f"is not below {separators[0]!r}, the separator after it" in messages(dump.errors)
    assert f"page {children[0]} " in dump.errors[0].message


def test_lost_page(built: Built) -> None:
    pgno, separators, children = root_branch(built)
    rewrite_branch(built, pgno, separators[:-1], children[:-1])  # the last leaf is no longer referred to
    assert check_store(built.store).ok
    dump = check_integrity(built.store)
    assert dump.lost_pages == [children[-1]]
    assert "nothing refers to them (lost space)" in messages(dump.errors)
    assert f"page {children[-1]} at offset {children[-1] * 8192}" in messages(dump.errors)


def test_page_both_free_and_used(built: Built) -> None:
    _root, _separators, children = root_branch(built)
    reseal_space_map(built.store, children[1], used=False)
    assert check_store(built.store).ok
    dump = check_integrity(built.store)
    assert dump.free_and_used == [children[1]]
    assert "the space map marks it free" in dump.errors[0].message
    assert f"page {children[1]} at offset {children[1] * 8192}" in dump.errors[0].message


def test_dangling_child_reference(built: Built) -> None:
    pgno, separators, children = root_branch(built)
    past_end = header_of(built.store).page_count + 5
    rewrite_branch(built, pgno, separators, [past_end, *children[1:]])
    assert check_store(built.store).ok
    dump = check_integrity(built.store)
    text = messages(dump.errors)
    assert f"child 0 of page {pgno}) refers to page {past_end}, past the last page of the store" in text
    assert "dangling reference" in text
    assert dump.lost_pages == [children[0]]  # the leaf it replaced


def test_child_pointing_to_a_blob_page(built: Built) -> None:
    pgno, separators, children = root_branch(built)
    _keys, values = leaf(built, table_root(built.store, "big"))
    blob = values[0]
    assert isinstance(blob, BlobRef)
    rewrite_branch(built, pgno, separators, [blob.first_page, *children[1:]])
    dump = check_integrity(built.store)
    where = f"page {blob.first_page} at offset {blob.first_page * 8192}"
    assert f"{where}: is a blob page, but child 0 of page {pgno} needs a tree page (table 't')" in messages(dump.errors)
    assert f"{where}: is reached twice: from table 'big'" in messages(dump.errors)
    assert dump.lost_pages == [children[0]]  # the leaf it replaced; the blob's other pages are its value's


def test_blob_reference_with_a_wrong_length(built: Built) -> None:
    big = table_root(built.store, "big")
    keys, values = leaf(built, big)
    ref = values[1]
    assert isinstance(ref, BlobRef)
    values[1] = ref._replace(length=ref.length + 1)
    rewrite_leaf(built, big, keys, values)
    dump = check_integrity(built.store)
    assert f"pages hold {ref.length} bytes, its reference says {ref.length + 1}" in messages(dump.errors)
    assert {t.name: t.ok for t in dump.tables} == {"t": True, "big": False}


# --- /r ------------------------------------------------------------------------------------------------------


def shadowstore(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from shadowstore.cli.main import main; sys.exit(main())", *args]


def kill_after_commits(home: str, seed: int, commits: int) -> int:
    """Run a workload in another process and SIGKILL it after ``commits`` acknowledged commits; returns how
    many were acknowledged (every one of them must survive)."""
    proc = subprocess.Popen(
        shadowstore("--home", home, "workload", "run", "--txns", "100000", "--seed", str(seed)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acknowledged = 0
    for line in proc.stdout:
        acknowledged = int(line.split()[1])
        if acknowledged >= commits:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return acknowledged


def test_soft_recovery_of_a_killed_storage_group_leaves_every_store_clean(tmp_path: os.PathLike[str]) -> None:
    home_path = os.path.join(tmp_path, "home")
    ServerHome.init(home_path, log_file_size=64 * 1024).close()
    acknowledged = kill_after_commits(home_path, seed=7, commits=150)
    sg_dir = os.path.join(home_path, DEFAULT_SG)
    stores = [os.path.join(sg_dir, name) for name in ("priv1.edb", "pub1.edb")]
    assert dump_database(stores[0]).header.state == STATE_DIRTY_SHUTDOWN
    dirty = check_integrity(stores[0], home_path)  # copy-on-write: the durable state is whole after a kill
    assert dirty.ok, messages(dirty.errors)
    assert "Dirty Shutdown" in dirty.notes[0]

    dump = soft_recover("E00", home_path)

    assert dump.ok, messages(dump.errors)
    assert "Mailbox Store" in dump.recovered
    assert dump.transactions > 0
    for path in stores:
        header = dump_database(path).header  # what 'eseutil /mh' shows
        assert header.state == STATE_CLEAN_SHUTDOWN
        assert (header.log_required_min, header.log_required_max) == (0, 0)
    assert {s.name: (s.before, s.after) for s in dump.stores}["Mailbox Store"] == ("Dirty Shutdown", "Clean Shutdown")
    lines = CHECK_MODES["r"][1](dump)
    assert "Performing soft recovery..." in lines
    assert any("Dirty Shutdown" in line and "-> Clean Shutdown" in line for line in lines)
    assert check_integrity(stores[0], home_path).ok
    home = ServerHome.open(home_path, policy=QUIET)
    try:
        sg = home.storage_group()
        assert sg.mount().stores == []  # nothing left to replay
        result = workload.check(sg.store("Mailbox Store"), seed=7, committed=acknowledged)
        assert result.present >= acknowledged
        sg.dismount()
    finally:
        home.close()


def test_soft_recovery_refuses_a_mounted_storage_group(built: Built) -> None:
    home = ServerHome.open(built.home, policy=QUIET)
    sg = home.storage_group()
    sg.mount()
    try:
        with pytest.raises(StorageGroupBusyError, match="is mounted by pid") as caught:
            soft_recover("e00", built.home)
        assert "dismount it first" in caught.value.hint
    finally:
        sg.dismount()
        home.close()
    with pytest.raises(NotFoundError, match="no storage group with log base 'E07'"):
        soft_recover("E07", built.home)
    assert soft_recover("E00", built.home).recovered == []  # clean: nothing to replay


# --- the command line ----------------------------------------------------------------------------------------


@click.command()
@click.argument("mode")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True)
def checks(mode: str, path: str, as_json: bool) -> int:
    """What cli/eseutil_cmd.py does with a mode of CHECK_MODES (until it merges them): dump, render, exit."""
    dump, render, to_json = CHECK_MODES[mode.lstrip("/-")]
    report = dump(path)
    if as_json:
        click.echo(json.dumps(report_json(report, to_json(report)), default=str))
    else:
        click.echo("\n".join([f"Initiating {INITIATING[mode.lstrip('/-')]} mode...", *render(report)]))
    return exit_code(report)


def run_checks(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(checks, list(args), standalone_mode=False)
    if result.exception is not None:
        raise result.exception
    return int(result.return_value), result.output


def test_command_exit_codes_and_json(built: Built) -> None:
    code, out = run_checks("/k", built.store)
    assert code == 0
    assert out.startswith("Initiating CHECKSUM mode...")
    code, out = run_checks("/g", built.store, "--json")
    data = json.loads(out)
    assert (code, data["ok"], data["mode"], data["problems"]) == (0, True, "integrity", [])
    flip_byte(built.store, table_root(built.store, "t") * 8192 + 64)
    code, out = run_checks("/k", built.store, "--json")
    data = json.loads(out)
    assert code == ExitCode.DATABASE_DAMAGED
    assert (data["code"], data["bad_checksums"]) == (-1018, 1)


def test_home_is_the_one_the_command_line_named(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from shadowstore.cli.common import CliContext

    monkeypatch.setattr(CliContext, "last", None)
    monkeypatch.setenv("SHADOWSTORE_HOME", os.path.join(tmp_path, "env-home"))
    assert current_home() == os.path.join(tmp_path, "env-home")
    CliContext(os.path.join(tmp_path, "given"))
    assert current_home() == os.path.join(tmp_path, "given")


def test_shadowstore_eseutil_k_g_r_in_a_subprocess(built: Built) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(shadowstore("--home", built.home, "eseutil", *args), capture_output=True, text=True)

    assert run("/k", built.store).returncode == 0
    assert "Integrity check successful." in run("/g", built.store).stdout
    assert run("/r", "E00").returncode == 0
    flip_byte(built.store, table_root(built.store, "t") * 8192 + 64)
    damaged = run("/k", built.store)
    assert damaged.returncode == ExitCode.DATABASE_DAMAGED
    assert "1 bad checksums" in damaged.stdout


def test_corrupt_header_pair_still_checks_data_pages(built: Built) -> None:
    flip_byte(built.store, 100)
    flip_byte(built.store, 8192 + 100)
    dump = check_store(built.store)
    assert isinstance(dump.errors[0], DatabaseCorruptedError)
    assert "both header copies" in dump.errors[0].message
    assert dump.seen == os.path.getsize(built.store) // 8192
