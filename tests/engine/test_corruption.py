"""Damaged files met by the engine: a byte flipped in a store page, a store header, a log file or E00.chk.

Each test builds a real storage group on the fault-injecting file system, edits one file as a user (or a bad
disk) would with ``fs.read_bytes``/``fs.write_bytes``, mounts again and checks the error (its ESE code, the file,
page or generation and the offset it names), the event, and what the engine did or did not change.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from shadowstore.engine.checkpointfile import read_checkpoint
from shadowstore.engine.dbfile import read_header_copies
from shadowstore.engine.logreader import scan_generation
from shadowstore.errors import DatabaseCorruptedError, LogFileCorruptError, ReadVerifyFailureError
from shadowstore.events import Event
from shadowstore.format.catalog import unpack_catalog
from shadowstore.format.checkpoint import CHECKPOINT_COPY_SIZE
from shadowstore.format.common import LgPos
from shadowstore.format.dbheader import (
    STATE_CLEAN_SHUTDOWN,
    STATE_DIRTY_SHUTDOWN,
    BlobRef,
    DbHeader,
    unpack_db_header,
)
from shadowstore.format.logblock import BLOCK_HEADER, FRAGMENT_HEADER
from shadowstore.format.logfile import archived_log_name, unpack_log_header
from shadowstore.format.page import PAGE_HEADER, TYPE_LEAF, unpack_leaf, verify_page
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from tests.conftest import HOME, fault_home, reopen
from tests.format.test_common import checksum_message, flip_byte, reseal_checksum

SG_DIR = os.path.join(HOME, "First Storage Group")
STORE = os.path.join(SG_DIR, "priv1.edb")
CURRENT_LOG = os.path.join(SG_DIR, "E00.log")
CHECKPOINT = os.path.join(SG_DIR, "E00.chk")
QUARANTINE = os.path.join(SG_DIR, "quarantine")
MAILBOX = "Mailbox Store"
PAGE = 8192
ROWS = 20
COMMITS = 300  # single-put transactions: enough to close two 64 KiB generations
BIG_KEY = b"attachment"
BIG_VALUE = bytes(range(256)) * 20  # 5120 bytes: stored out of line, in blob pages


def key(i: int) -> bytes:
    return b"key%05d" % i


def value(i: int) -> bytes:
    return b"value %d " % i * 10


def log_path(generation: int) -> str:
    return os.path.join(SG_DIR, archived_log_name("E00", generation))


def flip_byte_in_file(fs: FaultFileSystem, path: str, offset: int, mask: int = 0xFF) -> bytes:
    """Flip one byte of ``path`` on disk (XOR with ``mask``); returns the damaged content."""
    damaged = bytes(flip_byte(fs.read_bytes(path), offset, mask))
    fs.write_bytes(path, damaged)
    return damaged


def events(home: ServerHome, event_id: int) -> list[Event]:
    return [e for e in home.events.memory if e.event_id == event_id]


# --- scenarios ----------------------------------------------------------------------------------------------------


def checkpointed_store(seed: int = 31) -> FaultFileSystem:
    """Table 't' with ROWS small rows and one out-of-line value, written to the store file, dismounted cleanly."""
    fs = FaultFileSystem(seed=seed)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    with sg.store(MAILBOX).transaction() as tx:
        tx.create_table("t")
        for i in range(ROWS):
            tx.put("t", key(i), value(i))
        tx.put("t", BIG_KEY, BIG_VALUE)
    sg.checkpoint()
    sg.dismount()
    return fs


def dirty_store_with_closed_generations(commits: int = COMMITS) -> FaultFileSystem:
    """Stores in Dirty Shutdown whose replay needs generation 1 through the current one (a process crash)."""
    fs = FaultFileSystem(seed=41)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    store = sg.store(MAILBOX)
    with store.transaction() as tx:
        tx.create_table("t")
    for i in range(commits):
        with store.transaction() as tx:
            tx.put("t", key(i), value(i))
    assert sg.log.disk_generation >= 3, "the workload must close at least two generations"
    assert store.replay_start.gen == 1, "recovery must need every generation"
    after = fs.crash("keep")
    # The old storage group's threads would wait forever; every call they make now raises SimulatedCrash.
    with contextlib.suppress(SimulatedCrash):
        sg.dismount()
    with contextlib.suppress(SimulatedCrash):
        sg.log.close()
    return after


# --- reading the files with the format modules, as a dump tool would -------------------------------------------------


def assert_store_kept(before: bytes, after: bytes) -> None:
    """A refused recovery changes nothing a store holds. The one write a mount makes before it recovers
    (engine/resync.py) copies the header it read over both header copies; a crash in the middle of a
    checkpoint's header write (the primary copy written, the second not yet) leaves the second copy older, and
    that copy is then the primary's afterwards. Everything else is byte for byte as before."""
    assert after[2 * PAGE :] == before[2 * PAGE :], "a refused recovery must not change the store's pages"
    assert after[:PAGE] == before[:PAGE], "a refused recovery must not change the store's header"
    assert after[PAGE : 2 * PAGE] in (before[PAGE : 2 * PAGE], before[:PAGE]), "the second header copy"


def primary_header(fs: FaultFileSystem) -> DbHeader:
    return unpack_db_header(fs.read_bytes(STORE)[:PAGE])


def blob_bytes(data: bytes, ref: BlobRef) -> bytes:
    parts = []
    for pgno in range(ref.first_page, ref.first_page + ref.page_count):
        page = data[pgno * PAGE : (pgno + 1) * PAGE]
        header = verify_page(page, pgno)
        parts.append(page[PAGE_HEADER.size : PAGE_HEADER.size + header.length])
    return b"".join(parts)


def root_leaf_page(fs: FaultFileSystem, table: str) -> int:
    """Page number of ``table``'s root, which these small tables have as their only (leaf) page."""
    data = fs.read_bytes(STORE)
    _next_id, entries = unpack_catalog(blob_bytes(data, primary_header(fs).catalog))
    pgno = next(e.root_page for e in entries if e.name == table)
    assert verify_page(data[pgno * PAGE : (pgno + 1) * PAGE], pgno).type == TYPE_LEAF
    return pgno


def out_of_line_value(fs: FaultFileSystem, pgno: int, wanted: bytes) -> BlobRef:
    page = fs.read_bytes(STORE)[pgno * PAGE : (pgno + 1) * PAGE]
    keys, values = unpack_leaf(page, verify_page(page, pgno))
    ref = values[keys.index(wanted)]
    assert isinstance(ref, BlobRef)
    return ref


def block_offsets(path: str, data: bytes) -> list[int]:
    """Start of every flush block of a log file (one fragment per block: one committer, one record a flush)."""
    gen = scan_generation(path, data, unpack_log_header(data), tolerate_torn_tail=False)
    assert gen.blocks == len(gen.fragments)
    return [offset - BLOCK_HEADER.size for offset, _kind, _data in gen.fragments]


# --- store data pages ---------------------------------------------------------------------------------------------


def test_flipped_byte_in_a_data_page_fails_the_read_with_1018_naming_file_page_and_offset() -> None:
    fs = checkpointed_store()
    pgno = root_leaf_page(fs, "t")
    damaged = flip_byte_in_file(fs, STORE, pgno * PAGE + 100)
    stored, computed = checksum_message(damaged, pgno * PAGE, PAGE)
    home = reopen(fs)
    sg = home.storage_group()
    sg.mount()  # mounting reads headers, catalog and space map, not table pages
    with sg.store(MAILBOX).snapshot() as snap, pytest.raises(ReadVerifyFailureError) as info:
        snap.get("t", key(3))
    error = info.value
    assert error.code == -1018
    assert error.message == (
        f"{STORE}: page {pgno} at offset {pgno * PAGE} (8192 bytes) failed verification: "
        f"checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}"
    )
    [event] = events(home, 474)
    assert event.params == {
        "file": STORE,
        "offset": pgno * PAGE,
        "pgno": pgno,
        "size": PAGE,
        "stored": f"0x{stored:08x}",
        "computed": f"0x{computed:08x}",
        "error": "-1018 (JET_errReadVerifyFailure)",
    }
    assert f'"{STORE}" at offset {pgno * PAGE} (database page {pgno})' in event.description
    with sg.store("Public Folder Store").transaction() as tx:  # the other store is not affected
        tx.create_table("still works")
    sg.dismount()


def test_damaged_page_is_reported_again_on_every_read() -> None:
    fs = checkpointed_store()
    pgno = root_leaf_page(fs, "t")
    flip_byte_in_file(fs, STORE, pgno * PAGE + PAGE - 1)
    home = reopen(fs)
    sg = home.storage_group()
    sg.mount()
    store = sg.store(MAILBOX)
    for _ in range(2):
        with store.snapshot() as snap, pytest.raises(ReadVerifyFailureError, match=f"page {pgno} at offset"):
            list(snap.range("t"))
    with pytest.raises(ReadVerifyFailureError), store.transaction() as tx:
        tx.put("t", key(0), b"a write needs the page too")
    assert len(events(home, 474)) == 3
    sg.dismount()


def test_flipped_byte_in_an_out_of_line_value_names_its_blob_page() -> None:
    fs = checkpointed_store()
    ref = out_of_line_value(fs, root_leaf_page(fs, "t"), BIG_KEY)
    assert ref.length == len(BIG_VALUE)
    assert ref.page_count == 1
    flip_byte_in_file(fs, STORE, ref.first_page * PAGE + PAGE_HEADER.size + 7)
    home = reopen(fs)
    sg = home.storage_group()
    sg.mount()
    with sg.store(MAILBOX).snapshot() as snap:
        assert snap.get("t", key(1)) == value(1)  # the leaf itself is intact
        with pytest.raises(ReadVerifyFailureError) as info:
            snap.get("t", BIG_KEY)
    assert f"{STORE}: page {ref.first_page} at offset {ref.first_page * PAGE} (8192 bytes)" in info.value.message
    assert [e.params["pgno"] for e in events(home, 474)] == [ref.first_page]
    sg.dismount()


def test_valid_page_copied_to_the_wrong_place_names_the_page_it_claims_to_be() -> None:
    fs = checkpointed_store()
    pgno = root_leaf_page(fs, "t")
    other = primary_header(fs).catalog.first_page
    data = bytearray(fs.read_bytes(STORE))
    data[pgno * PAGE : (pgno + 1) * PAGE] = data[other * PAGE : (other + 1) * PAGE]  # checksum still valid
    fs.write_bytes(STORE, bytes(data))
    home = reopen(fs)
    sg = home.storage_group()
    sg.mount()
    with sg.store(MAILBOX).snapshot() as snap, pytest.raises(ReadVerifyFailureError) as info:
        snap.get("t", key(1))
    assert info.value.message.endswith(f"failed verification: page claims to be page {other}")
    assert events(home, 474)[0].params["stored"] == "n/a"
    sg.dismount()


def damage_catalog_behind_its_checksum(fs: FaultFileSystem) -> int:
    """Flip the catalog's table count and seal the page again: the catalog parser is what must notice."""
    page = primary_header(fs).catalog.first_page
    data = flip_byte(fs.read_bytes(STORE), page * PAGE + PAGE_HEADER.size + 4, 0x01)  # 1 table -> 0
    fs.write_bytes(STORE, bytes(reseal_checksum(data, page * PAGE, PAGE)))
    return page


def test_damaged_catalog_refuses_the_mount_naming_its_page() -> None:
    fs = checkpointed_store()
    page = damage_catalog_behind_its_checksum(fs)
    home = reopen(fs)
    with pytest.raises(DatabaseCorruptedError) as info:
        home.storage_group().mount()
    assert info.value.code == -1206
    assert info.value.message.startswith(f"{STORE}: the catalog at page {page} is damaged: catalog has ")
    assert not home.storage_group().mounted


def test_mount_refused_for_a_damaged_catalog_leaves_the_store_unchanged() -> None:
    """Regression: the Dirty Shutdown header used to be written before the catalog was read."""
    fs = checkpointed_store()
    damage_catalog_behind_its_checksum(fs)
    before = fs.read_bytes(STORE)
    home = reopen(fs)
    with pytest.raises(DatabaseCorruptedError):
        home.storage_group().mount()
    assert fs.read_bytes(STORE) == before
    assert read_header_copies(fs, STORE).header.state == STATE_CLEAN_SHUTDOWN


# --- store headers ------------------------------------------------------------------------------------------------


def test_damaged_primary_header_mounts_from_the_shadow_with_event_456() -> None:
    fs = checkpointed_store()
    shadow_before = fs.read_bytes(STORE)[PAGE : 2 * PAGE]
    flip_byte_in_file(fs, STORE, 96)  # dbtime
    home = reopen(fs)
    sg = home.storage_group()
    sg.mount()
    [event] = events(home, 456)
    assert event.params == {"file": STORE, "size": PAGE}
    assert "The shadow header page (8192 bytes) was used instead" in event.description
    assert not events(home, 472)
    assert unpack_db_header(shadow_before, PAGE).dbtime == sg.store(MAILBOX).head.dbtime  # type: ignore[union-attr]
    with sg.store(MAILBOX).snapshot() as snap:
        assert snap.get("t", key(ROWS - 1)) == value(ROWS - 1)
    sg.dismount()
    assert read_header_copies(fs, STORE).damaged == [], "the next header write repairs the primary"


def test_damaged_shadow_header_mounts_from_the_primary_with_event_472() -> None:
    fs = checkpointed_store()
    flip_byte_in_file(fs, STORE, PAGE + 200)
    home = reopen(fs)
    sg = home.storage_group()
    sg.mount()
    assert [e.params["file"] for e in events(home, 472)] == [STORE]
    assert not events(home, 456)
    with sg.store(MAILBOX).snapshot() as snap:
        assert snap.count("t") == ROWS + 1
    sg.dismount()


def test_both_header_copies_damaged_refuses_the_mount_naming_the_file() -> None:
    fs = checkpointed_store()
    flip_byte_in_file(fs, STORE, 40)
    before = flip_byte_in_file(fs, STORE, PAGE + 40)
    home = reopen(fs)
    sg = home.storage_group()
    with pytest.raises(DatabaseCorruptedError) as info:
        sg.mount()
    message = info.value.message
    assert info.value.code == -1206
    assert message.startswith(f"{STORE}: both header copies are damaged: copy 0 (offset 0): header checksum")
    assert "; copy 1 (offset 8192): header checksum mismatch at offset 8192" in message
    assert not sg.mounted
    assert fs.read_bytes(STORE) == before


@pytest.mark.parametrize("mask", [0x30, 0x60])  # page size 0x2000 -> 0x1000 or 0x4000: both valid sizes
def test_primary_header_with_a_damaged_page_size_mounts_from_the_shadow(mask: int) -> None:
    """Regression: the page size was taken from the primary copy alone, so both copies were read wrongly."""
    fs = checkpointed_store()
    flip_byte_in_file(fs, STORE, 17, mask)
    home = reopen(fs)
    sg = home.storage_group()
    sg.mount()
    assert [e.params["file"] for e in events(home, 456)] == [STORE]
    with sg.store(MAILBOX).snapshot() as snap:
        assert snap.get("t", BIG_KEY) == BIG_VALUE
    sg.dismount()
    assert read_header_copies(fs, STORE).damaged == []


# --- log files ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", ["first", "last"])
def test_damaged_closed_generation_that_recovery_needs_fails_with_501_and_event_465(block: str) -> None:
    fs = dirty_store_with_closed_generations()
    path = log_path(2)
    offsets = block_offsets(path, fs.read_bytes(path))
    number = 0 if block == "first" else len(offsets) - 1
    at = offsets[number]
    store_before = fs.read_bytes(STORE)
    damaged = flip_byte_in_file(fs, path, at + BLOCK_HEADER.size + FRAGMENT_HEADER.size + 5)
    home = reopen(fs)
    sg = home.storage_group()
    with pytest.raises(LogFileCorruptError) as info:
        sg.mount()
    error = info.value
    assert error.code == -501
    assert error.details == {"file": path, "generation": 2, "offset": at}
    expected = (
        f"{path} (generation 2): damaged block {number} at offset {at} {LgPos(2, at)}: "
        f"fragment at offset {at + BLOCK_HEADER.size} fails its checksum"
    )
    if block == "first":
        expected += f"; a valid block 1 follows at offset {offsets[1]}"
    assert error.message == expected
    [event] = events(home, 465)
    assert event.params == {"file": path, "lgpos": str(LgPos(2, at)), "sector": at // 512}
    assert f"Corruption was detected during soft recovery in logfile {path}" in event.description
    assert not sg.mounted
    assert_store_kept(store_before, fs.read_bytes(STORE))
    assert fs.read_bytes(path) == damaged, "a damaged closed generation is left for the user to restore"
    assert read_header_copies(fs, STORE).header.state == STATE_DIRTY_SHUTDOWN


def test_damaged_last_flush_of_the_current_generation_is_a_torn_tail() -> None:
    commits = COMMITS
    fs = dirty_store_with_closed_generations(commits)
    data = fs.read_bytes(CURRENT_LOG)
    last = block_offsets(CURRENT_LOG, data)[-1]
    damaged = flip_byte_in_file(fs, CURRENT_LOG, last + BLOCK_HEADER.size + FRAGMENT_HEADER.size + 5)
    dropped = len(damaged[last:].rstrip(b"\0"))
    home = reopen(fs)
    sg = home.storage_group()
    report = sg.mount()
    assert MAILBOX in report.stores
    assert not events(home, 465)
    with sg.store(MAILBOX).snapshot() as snap:
        assert snap.count("t") == commits - 1, "only the torn flush is lost"
        assert snap.get("t", key(commits - 1)) is None
        assert snap.get("t", key(commits - 2)) == value(commits - 2)
    generation = unpack_log_header(data).generation
    quarantined = os.path.join(QUARANTINE, f"E00-gen{generation:X}-offset{last}.torn")
    assert fs.read_bytes(quarantined) == damaged[last : last + dropped], "the dropped bytes are copied aside"
    sg.dismount()
    sg.mount()  # the zeroed tail is not mistaken for damage later
    with sg.store(MAILBOX).snapshot() as snap:
        assert snap.count("t") == commits - 1
    sg.dismount()


# --- the checkpoint file ----------------------------------------------------------------------------------------------


def test_damaged_primary_checkpoint_copy_is_replaced_by_the_shadow() -> None:
    fs = checkpointed_store()
    shadow, _ = read_checkpoint(fs, CHECKPOINT)
    flip_byte_in_file(fs, CHECKPOINT, 24)  # the checkpoint position
    chosen, damaged = read_checkpoint(fs, CHECKPOINT)
    assert chosen == shadow
    assert [e.offset for e in damaged] == [0]
    home = reopen(fs)
    sg = home.storage_group()
    sg.mount()
    assert not events(home, 1031)
    with sg.store(MAILBOX).snapshot() as snap:
        assert snap.count("t") == ROWS + 1
    after, damaged_after = read_checkpoint(fs, CHECKPOINT)
    assert damaged_after == [], "mounting wrote both copies again"
    assert after.sequence > shadow.sequence
    sg.dismount()


@pytest.mark.parametrize("scenario", ["clean", "dirty"])
def test_both_checkpoint_copies_damaged_are_rebuilt_with_event_1031(scenario: str) -> None:
    fs = checkpointed_store() if scenario == "clean" else dirty_store_with_closed_generations()
    flip_byte_in_file(fs, CHECKPOINT, 60)
    flip_byte_in_file(fs, CHECKPOINT, CHECKPOINT_COPY_SIZE + 60)
    home = reopen(fs)
    sg = home.storage_group()
    sg.mount()
    [event] = events(home, 1031)
    assert event.params["file"] == CHECKPOINT
    assert event.params["problem"].startswith(f"unusable ({CHECKPOINT}: both checkpoint copies are damaged: ")
    assert event.description.endswith("it was rebuilt from the database headers.")
    with sg.store(MAILBOX).snapshot() as snap:
        assert snap.count("t") == (ROWS + 1 if scenario == "clean" else COMMITS)
    rebuilt, damaged = read_checkpoint(fs, CHECKPOINT)
    assert damaged == []
    assert rebuilt.signature == sg.signature
    sg.dismount()


# --- a precondition of these scenarios ------------------------------------------------------------------------------


def test_quiet_policy_takes_no_checkpoint_on_the_first_cycle_after_mount() -> None:
    fs = FaultFileSystem(seed=51)
    # The dirty-store scenarios rely on this: a log roll wakes maintenance, which must not checkpoint under
    # QUIET (checkpoint_seconds=1e9 counted from the mount, no generation or byte trigger).
    sg = fault_home(fs).storage_group()
    sg.mount()
    store = sg.store(MAILBOX)
    with store.transaction() as tx:
        tx.create_table("t")
    before = store.replay_start
    assert sg._maintenance is not None
    assert sg._maintenance.run_cycles(1)
    try:
        assert store.replay_start == before
    finally:
        sg.dismount()
