"""Storage group life cycle: mount ownership, circular logging, a failed fsync, new log streams."""

from __future__ import annotations

import itertools
import os
import threading
import time

import pytest

from shadowstore.engine.checkpointfile import read_checkpoint
from shadowstore.engine.logreader import RecordAssembler, scan_generation
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.errors import (
    DatabaseNotFoundError,
    StorageGroupBusyError,
    StorageGroupOfflineError,
)
from shadowstore.format.common import Signature
from shadowstore.format.dbheader import STATE_DIRTY_SHUTDOWN
from shadowstore.format.logrecord import KIND_TXN, txn_header
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from shadowstore.io.fs import read_file
from shadowstore.io.replace import temporary_name
from tests.conftest import QUIET, PausingFS, fault_home, reopen
from tests.engine.test_backup_session import run_backup


def commit(home: ServerHome, key: bytes, value: bytes = b"v") -> None:
    with home.storage_group().store("Mailbox Store").transaction() as tx:
        if not tx.has_table("t"):
            tx.create_table("t")
        tx.put("t", key, value)


def test_a_second_opener_is_refused_naming_the_owner(home: ServerHome) -> None:
    sg = home.storage_group()
    sg.mount()
    other = ServerHome.open(home.path, policy=QUIET)
    with pytest.raises(StorageGroupBusyError) as info:
        other.storage_group().mount()
    assert f"pid {os.getpid()}" in str(info.value)
    sg.dismount()
    other.storage_group().mount()  # the lock went with the dismount
    other.storage_group().dismount()


def test_circular_logging_deletes_logs_below_the_checkpoint() -> None:
    fs = FaultFileSystem(seed=41)
    home = fault_home(fs, circular_logging=True)
    sg = home.storage_group()
    sg.mount()
    for i in range(6):
        commit(home, b"k%d" % i, b"x" * 1000)
        sg.log.roll()
        sg.log.flush()
    assert len(LogSet.scan(fs, sg.config.log_dir, "E00").archived) == 6
    position = sg.checkpoint()
    remaining = LogSet.scan(fs, sg.config.log_dir, "E00").archived
    assert remaining == {} or min(remaining) >= position.gen
    deleted = [e for e in home.events.memory if e.event_id == 1030]
    assert deleted
    assert "generations 1-6" in deleted[-1].description
    sg.dismount()
    sg.mount()
    with sg.store("Mailbox Store").snapshot() as snap:
        assert snap.count("t") == 6
    sg.dismount()


def test_without_circular_logging_logs_stay() -> None:
    fs = FaultFileSystem(seed=42)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    for i in range(3):
        commit(home, b"k%d" % i)
        sg.log.roll()
        sg.log.flush()
    sg.checkpoint()
    assert sorted(LogSet.scan(fs, sg.config.log_dir, "E00").archived) == [1, 2, 3]
    sg.dismount()


def test_a_failed_fsync_takes_the_storage_group_offline_and_remount_recovers() -> None:
    fs = FaultFileSystem(seed=43)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    for i in range(10):
        commit(home, b"ok%d" % i)
    fs.fail_fsync("E00.log")
    with pytest.raises(StorageGroupOfflineError) as info:
        commit(home, b"failed")
    assert info.value.code == -510
    maintenance = sg._maintenance
    assert maintenance is not None
    maintenance.run_cycles(1)
    assert not sg.mounted
    assert any(e.event_id == 1020 for e in home.events.memory)
    with pytest.raises(StorageGroupOfflineError):
        commit(home, b"after")
    assert sg.store("Mailbox Store").read_header().state == STATE_DIRTY_SHUTDOWN
    after = reopen(fs.crash("drop"))
    after.storage_group().mount()
    with after.storage_group().store("Mailbox Store").snapshot() as snap:
        for i in range(10):
            assert snap.get("t", b"ok%d" % i) == b"v"
    after.storage_group().dismount()


def committed_then_logs_lost(seed: int) -> tuple[ServerHome, Signature]:
    """A home whose one commit reached the stores in Clean Shutdown, then every log file lost; with the lost
    stream's signature."""
    fs = FaultFileSystem(seed=seed)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    commit(home, b"kept")
    sg.dismount()
    logs = LogSet.scan(fs, sg.config.log_dir, "E00")
    for path in [*logs.archived.values(), logs.current]:
        assert path is not None
        fs.unlink(path)
    return home, sg.signature


def test_no_logs_and_clean_stores_start_a_new_log_stream() -> None:
    home, old_signature = committed_then_logs_lost(44)
    sg = home.storage_group()
    sg.mount()
    assert sg.signature != old_signature
    with sg.store("Mailbox Store").snapshot() as snap:
        assert snap.get("t", b"kept") == b"v"
    sg.dismount()


def test_a_new_log_stream_is_created_after_the_one_it_follows_when_the_clock_stepped_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Backup sets are ordered by their stream's creation time: a stream begun with the clock an hour behind
    # must not look older than the stream the stores were attached to.
    home, old_signature = committed_then_logs_lost(46)
    sg = home.storage_group()
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() - 3600 * 10**9)
    sg.mount()
    assert sg.signature.created_us > old_signature.created_us
    sg.dismount()


def commit_times(fs: FaultFileSystem, log_dir: str) -> list[int]:
    """The commit time of every transaction in the log folder, in log order."""
    logs = LogSet.scan(fs, log_dir, "E00")
    paths = [logs.archived[g] for g in sorted(logs.archived)] + ([logs.current] if logs.current else [])
    assembler, times = RecordAssembler(), []
    for path in paths:
        scan = scan_generation(path, read_file(fs, path), read_header(fs, path), tolerate_torn_tail=True)
        times += [txn_header(r.data).commit_us for r in assembler.feed(scan) if r.data[0] == KIND_TXN]
    return times


@pytest.mark.parametrize("crash", [False, True], ids=["dismounted", "crashed"])
def test_commit_times_rise_in_log_order_across_a_mount_with_the_clock_stepped_back(
    monkeypatch: pytest.MonkeyPatch, crash: bool
) -> None:
    # A restore to a point in time stops at the first commit after it, and a store copy records the newest
    # commit it holds from the log writer: both need times that rise in log order, also when a mount finds the
    # clock behind the stream's last commits.
    fs = FaultFileSystem(seed=47)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    for i in range(20):
        commit(home, b"before%d" % i)
    if crash:
        fs = fs.crash("drop")
        home = reopen(fs)
    else:
        sg.dismount()
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() - 3600 * 10**9)
    sg = home.storage_group()
    sg.mount()
    assert sg.log.last_time >= max(commit_times(fs, sg.config.log_dir)), "a store copy now would understate it"
    for i in range(20):
        commit(home, b"after%d" % i)
    sg.dismount()
    times = commit_times(fs, sg.config.log_dir)
    assert len(times) >= 40
    assert all(a < b for a, b in itertools.pairwise(times)), "a commit time stepped back"


def test_a_missing_store_file_fails_the_mount_naming_it() -> None:
    fs = FaultFileSystem(seed=45)
    home = fault_home(fs)
    sg = home.storage_group()
    path = sg.store("Public Folder Store").path
    fs.unlink(path)
    with pytest.raises(DatabaseNotFoundError) as info:
        sg.mount()
    assert path in str(info.value)
    assert not sg.mounted
    hint = info.value.hint
    assert hint.startswith("if the file was moved, put it back")  # a moved file is not lost: no restore first
    assert "shadowstore sg move 'First Storage Group' --resume" in hint
    assert "shadowstore restore plan --sg 'First Storage Group' --in-place" in hint


def test_stores_added_later_mount_with_the_others() -> None:
    fs = FaultFileSystem(seed=46)
    home = fault_home(fs)
    home.create_store("First Storage Group", "Archive")
    sg = home.storage_group()
    sg.mount()
    with sg.store("Archive").transaction() as tx:
        tx.create_table("a")
        tx.put("a", b"k", b"v")
    sg.dismount()
    again = reopen(fs)
    again.storage_group().mount()
    with again.storage_group().store("Archive").snapshot() as snap:
        assert snap.get("a", b"k") == b"v"
    again.storage_group().dismount()


def test_a_backup_recording_its_mark_waits_for_a_checkpoint_writing_e00_chk() -> None:
    # Two writers of E00.chk at once (the maintenance thread's checkpoint, a backup completing in the backup
    # program's thread) would interleave their sequence numbers and records.
    fs = PausingFS(seed=41)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    commit(home, b"k")
    fs.pause_at = "chk.after_primary_write"
    checkpointer = threading.Thread(target=sg.checkpoint)
    checkpointer.start()
    assert fs.paused.wait(10)
    info = sg.store("Mailbox Store").header.full_prev._replace(mark=sg.log.tail, time_us=123)  # type: ignore[union-attr]
    recorder = threading.Thread(target=sg.note_backup, args=("full", info))
    recorder.start()
    recorder.join(0.5)
    assert recorder.is_alive(), "E00.chk was written while another write of it was half done"
    fs.resume.set()
    checkpointer.join(10)
    recorder.join(10)
    chk, damaged = read_checkpoint(fs, sg.checkpoint_path)
    assert not damaged
    assert chk.full_backup_us == 123
    sg.dismount()


def test_a_mount_removes_the_temporaries_a_crash_left_beside_its_files_and_nothing_else() -> None:
    fs = FaultFileSystem(seed=42)
    home = fault_home(fs)
    sg = home.storage_group()
    folder = sg.config.log_dir
    ours = [
        temporary_name(os.path.join(folder, name))
        for name in ("E00.chk", "priv1.edb", "E00.log", "E00tmp.log", "res1.log", "E0000007.log", "E00.backup.json")
    ]
    strangers = [temporary_name(os.path.join(folder, "notes.txt")), os.path.join(folder, ".E00.log.tmp-xyz")]
    for path in ours + strangers:
        fs.open(path, create=True).pwrite(b"left by a crash", 0)
    sg.mount()
    assert [p for p in ours + strangers if fs.exists(p)] == strangers
    event = next(e for e in home.events.memory if e.event_id == 1027)
    assert all(os.path.basename(p) in event.description for p in ours)
    sg.dismount()


def test_a_deleted_lock_file_is_reported_once_while_the_lock_still_holds() -> None:
    fs = FaultFileSystem(seed=43)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    fs.unlink(sg.lock_path)
    maintenance = sg._maintenance
    assert maintenance is not None
    assert maintenance.run_cycles(2)
    assert [e.event_id for e in home.events.memory].count(1028) == 1
    with pytest.raises(StorageGroupBusyError):
        reopen(fs).storage_group().mount()
    sg.dismount()


@pytest.mark.parametrize("crash_at", ["backup.truncate.after_delete", None])
def test_the_events_an_administrator_audits_by_survive_a_power_loss(crash_at: str | None) -> None:
    fs = FaultFileSystem(seed=44)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    for i in range(3):
        commit(home, b"k%d" % i, b"v" * 30_000)
        sg.log.roll()
        sg.log.flush()
    sg.checkpoint()
    if crash_at is not None:
        fs.arm_crash(crash_at)
        with pytest.raises(SimulatedCrash):
            run_backup(home, "full")
    else:
        run_backup(home, "full")
    ids = [e.event_id for e in reopen(fs.crash("drop")).events.read()]
    assert 224 in ids  # "Deleting log files ...": durable before the first one went
    assert (202 in ids) == (crash_at is None)  # the end of the backup, durable once complete returns
