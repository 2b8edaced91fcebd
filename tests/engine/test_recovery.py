"""Soft recovery on mount, and every way a damaged log set makes the mount fail with the exact generations.

Each failure test leaves a store in Dirty Shutdown (the machine "loses power" with a process crash, so the
disk keeps everything written), damages the log set the way a user or a bad copy would, and checks the ESE
error code, the generations named, the event, and that nothing was changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from shadowstore.errors import (
    BadLogSignatureError,
    InvalidLogSequenceError,
    LogFileCorruptError,
    LogGenerationMismatchError,
    MissingLogFileError,
    RequiredLogFilesMissingError,
)
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN, STATE_DIRTY_SHUTDOWN
from shadowstore.format.logfile import archived_log_name
from shadowstore.format.logrecord import KIND_TXN, OP_PUT, PUT, TXN_HEADER, TXN_TIME_OFFSET
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem
from tests.conftest import HOME, fault_home, mounted_with_table, reopen

SG_DIR = os.path.join(HOME, "First Storage Group")
STORE = os.path.join(SG_DIR, "priv1.edb")


def log_path(gen: int) -> str:
    return os.path.join(SG_DIR, archived_log_name("E00", gen))


def crashed_with_dirty_store(seed: int = 5, commits: int = 400) -> tuple[FaultFileSystem, int]:
    """A home whose stores are in Dirty Shutdown, replay starting at generation 2; returns (fs, current gen)."""
    fs = FaultFileSystem(seed=seed)
    _home, sg, store = mounted_with_table(fs)
    sg.log.roll()
    sg.log.flush()
    sg.checkpoint()  # replay start is now in generation 2
    for i in range(commits):
        with store.transaction() as tx:
            tx.put("t", b"k%05d" % i, b"v%05d" % i * 8)
    assert sg.log.disk_generation >= 5, "the workload must span several generations"
    maintenance = sg._maintenance
    assert maintenance is not None
    maintenance.run_cycles(1)  # records Log Required up to the current generation in the headers
    return fs.crash("keep"), sg.log.disk_generation


def store_header_bytes(fs: FaultFileSystem) -> bytes:
    return fs.read_bytes(STORE)[:16384]


def mount_fails(fs: FaultFileSystem, error: type[Exception]) -> tuple[Exception, ServerHome]:
    before = store_header_bytes(fs)
    home = reopen(fs)
    with pytest.raises(error) as info:
        home.storage_group().mount()
    after = store_header_bytes(fs)
    # why the second copy may change: the mount first copies the header it read over both copies (engine/resync.py),
    # and a crash in the middle of a checkpoint's header write leaves the second copy older than the first
    assert after[:8192] == before[:8192], "a refused mount must not change the store's header"
    assert after[8192:] in (before[8192:], before[:8192]), "the second header copy: as it was, or the first's"
    assert not home.storage_group().mounted
    return info.value, home


def test_recovery_replays_every_committed_transaction_and_reports_events() -> None:
    fs, _gen = crashed_with_dirty_store()
    home = reopen(fs)
    sg = home.storage_group()
    report = sg.mount()
    assert set(report.stores) == {"Mailbox Store", "Public Folder Store"}
    assert report.records == 400  # the create-table transaction was checkpointed before the crash
    with sg.store("Mailbox Store").snapshot() as snap:
        assert snap.count("t") == 400
        assert snap.get("t", b"k00399") == b"v00399" * 8
    ids = [e.event_id for e in home.events.memory]
    assert ids.index(300) < ids.index(301) < ids.index(302)
    sg.dismount()
    header = sg.store("Mailbox Store").read_header()
    assert header.state == STATE_CLEAN_SHUTDOWN
    assert (header.log_required_min, header.log_required_max) == (0, 0)


def test_dirty_store_names_the_logs_it_requires() -> None:
    fs, gen = crashed_with_dirty_store()
    home = reopen(fs)
    header = home.storage_group().store("Mailbox Store").read_header()
    assert header.state == STATE_DIRTY_SHUTDOWN
    assert header.log_required_min == 2
    assert header.log_required_max == gen


def test_missing_middle_generation_fails_with_528_naming_it() -> None:
    fs, _gen = crashed_with_dirty_store()
    fs.unlink(log_path(3))
    error, home = mount_fails(fs, MissingLogFileError)
    assert error.code == -528
    assert "E0000003.log (generation 3)" in str(error)
    event = [e for e in home.events.memory if e.event_id == 450][-1]
    assert "Logfile E0000003.log is missing" in event.description


def test_missing_lowest_needed_generation_fails_with_543_and_event_452() -> None:
    fs, _gen = crashed_with_dirty_store()
    fs.unlink(log_path(2))
    error, home = mount_fails(fs, RequiredLogFilesMissingError)
    assert error.code == -543
    assert "generations 2-" in str(error)
    assert "only from generation 3" in str(error)
    event = [e for e in home.events.memory if e.event_id == 452][-1]
    assert "requires logfiles E0000002.log-" in event.description
    assert "starting at E0000003.log" in event.description


def test_missing_current_log_fails_with_528() -> None:
    fs, _gen = crashed_with_dirty_store()
    fs.unlink(os.path.join(SG_DIR, "E00.log"))
    error, home = mount_fails(fs, MissingLogFileError)
    assert error.code == -528
    assert "E00.log is missing" in str(error)
    assert any(e.event_id == 450 for e in home.events.memory)


def test_current_log_older_than_the_store_requires_fails_with_543_and_event_453() -> None:
    """E00.log replaced by an older generation of the same stream (a restore of the wrong files)."""
    fs, gen = crashed_with_dirty_store()
    older = fs.read_bytes(log_path(3))
    for g in range(3, gen):
        fs.unlink(log_path(g))
    fs.write_bytes(os.path.join(SG_DIR, "E00.log"), older)
    error, home = mount_fails(fs, RequiredLogFilesMissingError)
    assert error.code == -543
    assert f"needs log generations 2-{gen}" in str(error)
    assert "the newest generation in" in str(error)
    event = [e for e in home.events.memory if e.event_id == 453][-1]
    assert f"requires logfiles E0000002.log-{archived_log_name('E00', gen)}" in event.description
    assert "could only locate logfiles up to E0000003.log" in event.description


def test_foreign_log_fails_with_530_naming_both_signatures() -> None:
    fs, _gen = crashed_with_dirty_store()
    other, _ = crashed_with_dirty_store(seed=77)
    fs.write_bytes(log_path(3), other.read_bytes(log_path(3)))
    error, home = mount_fails(fs, BadLogSignatureError)
    assert error.code == -530
    assert "E0000003.log (generation 3) belongs to another log stream" in str(error)
    assert any(e.event_id == 440 and "-530" in e.description for e in home.events.memory)


def test_out_of_sequence_log_fails_with_515_and_event_496() -> None:
    """Generation 4 from the same stream but a different history (a copy of the disk that went on)."""
    fs = FaultFileSystem(seed=3)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.create_table("t")
    for _ in range(3):
        sg.log.roll()
        sg.log.flush()
    fork = fs.copy()  # same stream up to generation 4's creation
    forked = reopen(fork.crash("keep"))
    forked.storage_group().mount()
    forked_sg = forked.storage_group()
    forked_sg.log.roll()
    forked_sg.log.flush()
    forked_sg.log.roll()
    forked_sg.log.flush()
    for _ in range(3):
        sg.log.roll()
        sg.log.flush()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.put("t", b"k", b"v")
    crashed = fs.crash("keep")
    # Generation 5 of the fork: same signature and number, created at another time.
    fork_gen5 = forked_sg.fs.read_bytes(log_path(5))  # type: ignore[attr-defined]
    crashed.write_bytes(log_path(5), fork_gen5)
    store_dirty_from = reopen(crashed).storage_group().store("Mailbox Store").read_header().log_required_min
    assert store_dirty_from <= 5
    error, home2 = mount_fails(crashed, InvalidLogSequenceError)
    assert error.code == -515
    assert "does not follow generation" in str(error)
    assert any(e.event_id == 496 for e in home2.events.memory)


def test_renamed_log_fails_with_513() -> None:
    fs, _gen = crashed_with_dirty_store()
    data3 = fs.read_bytes(log_path(3))
    fs.write_bytes(log_path(4), data3)
    error, _home = mount_fails(fs, LogGenerationMismatchError)
    assert error.code == -513
    assert "should hold generation 4 but its header says generation 3" in str(error)


def test_logs_below_the_replay_start_are_not_needed() -> None:
    fs, _gen = crashed_with_dirty_store()
    fs.unlink(log_path(1))  # below every store's replay start
    home = reopen(fs)
    home.storage_group().mount()
    with home.storage_group().store("Mailbox Store").snapshot() as snap:
        assert snap.count("t") == 400
    home.storage_group().dismount()


def test_clean_stores_mount_without_any_archived_log() -> None:
    fs = FaultFileSystem(seed=4)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.create_table("t")
        tx.put("t", b"k", b"v")
    sg.log.roll()
    sg.log.flush()
    sg.dismount()
    fs.unlink(log_path(1))
    sg.mount()
    with sg.store("Mailbox Store").snapshot() as snap:
        assert snap.get("t", b"k") == b"v"
    sg.dismount()


# --- records that pass their checksums but do not parse -----------------------------------------------------


def _one_put(table_id: int, key: bytes, value: bytes, *, claim: int | None = None) -> bytes:
    """The operations of a one-put record; ``claim`` overrides the value length it states."""
    return PUT.pack(OP_PUT, table_id, len(key), len(value) if claim is None else claim) + key + value


@pytest.mark.parametrize(
    ("ops", "problem"),
    [
        (lambda t: _one_put(t, b"k", b"vv", claim=5), "an operation runs past the end of its TXN record"),
        (lambda t: _one_put(t, b"k", b"v") + b"extra", "TXN record has 5 bytes after its last operation"),
        (lambda t: _one_put(t, b"k", b"v")[:7], f"the PUT operation at byte {TXN_HEADER.size} is cut off"),
        (lambda t: _one_put(t, b"k", b"v", claim=0), "TXN record has 1 bytes after its last operation"),
    ],
)
def test_a_one_put_record_that_does_not_parse_fails_recovery_naming_it(
    ops: Callable[[int], bytes], problem: str
) -> None:
    """The writer seals whatever it is given, so these records pass every checksum: only parsing finds them."""
    fs = FaultFileSystem(seed=9)
    _home, sg, store = mounted_with_table(fs)
    with store.snapshot() as tx:
        meta = tx.table_by_id(1)
        assert meta is not None
        assert meta.name == "t"
    head = store.head
    assert head is not None
    record = bytearray(TXN_HEADER.pack(KIND_TXN, store.dbid, 0, head.dbtime + 1, 0, 1) + ops(1))
    start, _ = sg.log.append(record, time_at=TXN_TIME_OFFSET)
    sg.log.flush()
    error, _ = mount_fails(fs.crash("keep"), LogFileCorruptError)
    assert f"the record at {start} does not parse: {problem}" in str(error)
