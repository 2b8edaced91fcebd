"""Freezing a storage group for a shadow copy (engine/snapshot.py): commits wait and are never lost, the files
stay still, the watchdog thaws, streaming backups and snapshots exclude each other, completion truncates and
stamps like a streaming backup.

The fixtures use the test policy (tests/conftest.py), so the whole file also runs with production maintenance;
two tests ask for a busy maintenance thread by name."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator

import pytest

from shadowstore.engine.dbfile import read_header_copies
from shadowstore.engine.logstream import LogSet
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.engine.snapshot import FrozenGroup, complete_snapshot, freeze, prepare_snapshot
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.engine.store import Store
from shadowstore.errors import (
    BackupAbortedError,
    BackupInProgressError,
    InvalidBackupSequenceError,
    OSSnapshotNotAllowedError,
    OSSnapshotTimeOutError,
)
from shadowstore.format.common import BACKUP_SNAPSHOT, BACKUP_STREAMING
from shadowstore.home import ServerHome
from shadowstore.io.blockread import owned
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from tests.conftest import QUIET, fault_home, reopen

LONG = 30.0  # a freeze deadline no test reaches: thawing is the test's own doing
BUSY = MaintenancePolicy(interval=0.01, checkpoint_generations=1, checkpoint_bytes=1, checkpoint_seconds=0.0)


def mounted(
    seed: int = 71, policy: MaintenancePolicy | None = None
) -> tuple[FaultFileSystem, ServerHome, StorageGroup, Store]:
    fs = FaultFileSystem(seed=seed)
    home = fault_home(fs) if policy is None else fault_home(fs, policy=policy)
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
    return fs, home, sg, store


def put(store: Store, key: bytes, *, lazy: bool = False) -> None:
    with store.transaction(lazy=lazy) as tx:
        tx.put("t", key, key * 40)


def fill(store: Store, count: int, tag: bytes = b"k") -> list[bytes]:
    keys = [tag + b"%05d" % i for i in range(count)]
    for key in keys:
        put(store, key)
    return keys


def keys_in(store: Store) -> set[bytes]:
    with store.snapshot() as snap:
        return {key for key, _value in snap.range("t")}


def ids(home: ServerHome) -> list[int]:
    return [e.event_id for e in home.events.memory]


def archived(fs: FaultFileSystem, sg: StorageGroup) -> list[int]:
    return sorted(LogSet.scan(fs, sg.config.log_dir, sg.base).archived)


def digests(fs: FaultFileSystem, paths: list[str]) -> dict[str, tuple[int, str]]:
    return {p: (len(data := fs.read_bytes(p)), hashlib.sha256(data).hexdigest()) for p in paths}


class Committer:
    """A thread committing durably: ``acknowledged`` holds the keys whose commit returned."""

    def __init__(self, store: Store, tag: bytes, count: int = 1) -> None:
        self.store, self.tag, self.count = store, tag, count
        self.acknowledged: list[bytes] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Committer:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            for i in range(self.count):
                key = self.tag + b"%05d" % i
                put(self.store, key)
                self.acknowledged.append(key)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


@pytest.fixture
def frozen_sg() -> Iterator[tuple[FaultFileSystem, ServerHome, StorageGroup, Store, FrozenGroup]]:
    fs, home, sg, store = mounted()
    fill(store, 200)
    prepare_snapshot(sg)
    frozen = freeze(sg, timeout=LONG)
    yield fs, home, sg, store, frozen
    frozen.thaw()
    home.close()


# --- commits wait, nothing is lost -----------------------------------------------------------------------------


def test_a_commit_during_a_freeze_waits_for_the_thaw_and_is_not_lost(frozen_sg) -> None:  # type: ignore[no-untyped-def]
    _fs, _home, sg, store, frozen = frozen_sg
    flushed = sg.log.flushed
    waiting = Committer(store, b"frozen", count=3).start()
    assert not waiting.done.wait(0.5), "a durable commit must wait while the log is frozen"
    assert waiting.error is None
    assert waiting.acknowledged == []
    assert sg.log.flushed == flushed, "nothing reached the log during the freeze"
    frozen.thaw()
    assert waiting.done.wait(10)
    assert waiting.error is None
    assert set(waiting.acknowledged) == {b"frozen%05d" % i for i in range(3)} <= keys_in(store)
    assert 2001 in ids(frozen_sg[1])
    assert 2003 in ids(frozen_sg[1])


def test_freeze_closes_the_current_generation_which_holds_every_acknowledged_commit() -> None:
    fs, home, sg, store = mounted()
    fill(store, 150)
    generation = sg.log.disk_generation
    frozen = freeze(sg, timeout=LONG)
    try:
        assert frozen.last_generation == generation
        assert sg.log.disk_generation == generation + 1
        assert sg.log.flushed.gen == generation + 1, "the roll is durable: generation G is an archived file"
        assert frozen.low_generation <= min(h.replay_start.gen for h in frozen.headers.values())
        assert frozen.low_generation <= sg.checkpoint_position.gen
        logs = [p for p in frozen.files if p.endswith(".log")]
        assert len(logs) == frozen.last_generation - frozen.low_generation + 1
        assert sg.checkpoint_path in frozen.files
        assert {s.path for s in sg.stores.values()} <= set(frozen.files)
        assert all(fs.exists(p) for p in frozen.files)
    finally:
        frozen.thaw()
    home.close()


def test_another_storage_group_commits_while_one_is_frozen(frozen_sg) -> None:  # type: ignore[no-untyped-def]
    _fs, home, _sg, _store, _frozen = frozen_sg
    other = home.create_storage_group(
        "Second Storage Group", log_file_size=64 * 1024, stores=[("Second Store", "second.edb")]
    )
    other.mount()
    other_store = other.store("Second Store")
    with other_store.transaction() as tx:
        tx.create_table("t")
    done = Committer(other_store, b"other", count=20).start()
    assert done.done.wait(10), "a freeze of one storage group must not hold another"
    assert done.error is None
    prepare_snapshot(other)  # and it can be frozen too, at the same time
    freeze(other, timeout=LONG).thaw()
    other.dismount()


def test_a_snapshot_taken_during_the_freeze_recovers_every_acknowledged_commit() -> None:
    fs, home, sg, store = mounted()
    acknowledged = fill(store, 300)
    prepare_snapshot(sg)
    frozen = freeze(sg, timeout=LONG)
    waiting = Committer(store, b"late", count=5).start()
    image = fs.copy()  # what a provider's snapshot holds: every file as it is now
    frozen.thaw()
    assert waiting.done.wait(10)
    home.close()
    restored = reopen(image)
    sg2 = restored.storage_group()
    sg2.mount()
    assert set(acknowledged) <= keys_in(sg2.store("Mailbox Store"))
    assert sg2.log.disk_generation >= frozen.last_generation
    restored.close()


@pytest.mark.parametrize(("mode", "seed"), [("drop", 0), ("tear", 1), ("tear", 2)])
def test_crash_while_frozen_loses_no_acknowledged_commit(mode: str, seed: int) -> None:
    fs, _home, sg, store = mounted()
    acknowledged = fill(store, 250)
    frozen = freeze(sg, timeout=LONG)
    waiting = Committer(store, b"late", count=3).start()
    for i in range(20):
        put(store, b"lazy%05d" % i, lazy=True)  # appended in memory only: not acknowledged as durable
    image = fs.crash(mode, seed)
    with contextlib.suppress(SimulatedCrash):  # the old process's threads end against a dead disk
        frozen.thaw()
    waiting.done.wait(10)
    restored = reopen(image)
    restored.storage_group().mount()
    assert set(acknowledged) <= keys_in(restored.storage_group().store("Mailbox Store"))
    restored.close()


def test_crash_in_the_freezes_log_roll_loses_no_acknowledged_commit() -> None:
    fs, _home, sg, store = mounted()
    acknowledged = fill(store, 250)
    fs.arm_crash("log.roll.after_archive_rename")
    with pytest.raises(SimulatedCrash):
        freeze(sg, timeout=LONG)
    assert sg.backups.snapshot is None, "a failed freeze holds nothing"
    restored = reopen(fs.crash("drop"))
    restored.storage_group().mount()
    assert set(acknowledged) <= keys_in(restored.storage_group().store("Mailbox Store"))
    restored.close()


# --- what a freeze holds -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [None, BUSY], ids=["fixture-policy", "busy-maintenance"])
def test_the_files_a_snapshot_needs_do_not_change_during_the_freeze(policy: MaintenancePolicy | None) -> None:
    fs, home, sg, store = mounted(policy=policy)
    fill(store, 400)
    prepare_snapshot(sg)
    frozen = freeze(sg, timeout=LONG)
    before = digests(fs, frozen.files)
    durable = [Committer(store, b"d%d-" % n, count=50).start() for n in range(3)]
    checkpointer = threading.Thread(target=sg.checkpoint, daemon=True)
    checkpointer.start()
    for i in range(300):  # lazy commits never wait: the writer keeps committing throughout
        put(store, b"lazy%05d" % i, lazy=True)
    assert sg._maintenance is not None
    sg._maintenance.run_cycles(3, timeout=0.5)  # a window for maintenance to try (it may wait, never write)
    assert digests(fs, frozen.files) == before
    for name, header in frozen.headers.items():
        assert read_header_copies(fs, sg.stores[name].path).header == header
    assert all(not c.done.is_set() for c in durable)
    frozen.thaw()
    for committer in durable:
        assert committer.done.wait(20)
        assert committer.error is None
    checkpointer.join(20)
    assert sg._maintenance.run_cycles(2, timeout=10), "maintenance goes on after the thaw"
    assert {k for c in durable for k in c.acknowledged} <= keys_in(store)
    home.close()


def test_the_watchdog_thaws_by_itself_when_the_freezer_is_stuck() -> None:
    _fs, home, sg, store = mounted()
    fill(store, 50)
    expired = threading.Event()
    frozen = freeze(sg, timeout=0.3, on_timeout=expired.set)  # and nobody calls thaw
    waiting = Committer(store, b"late", count=5).start()
    assert expired.wait(10)
    assert waiting.done.wait(10), "commits resume after the deadline"
    assert waiting.error is None
    assert frozen.timed_out
    event = home.events.wait_for(2004, 5)
    assert event is not None
    assert "300 ms" in event.description
    with pytest.raises(OSSnapshotTimeOutError) as excinfo:
        frozen.thaw()
    assert excinfo.value.code == -2402
    with pytest.raises(OSSnapshotTimeOutError):
        complete_snapshot(sg, "full", frozen)  # a timed-out snapshot is never completed
    assert sg.store("Mailbox Store").header.snapshot_cur.is_empty  # type: ignore[union-attr]
    freeze(sg, timeout=LONG).thaw()  # the next job succeeds
    home.close()


def test_freeze_while_frozen_is_refused(frozen_sg) -> None:  # type: ignore[no-untyped-def]
    _fs, _home, sg, _store, _frozen = frozen_sg
    with pytest.raises(OSSnapshotNotAllowedError, match="frozen for a shadow copy"):
        freeze(sg, timeout=LONG)
    with pytest.raises(OSSnapshotNotAllowedError, match="frozen for a shadow copy"):
        prepare_snapshot(sg)


def test_dismount_while_frozen_thaws_first_and_the_freezer_learns_it() -> None:
    _fs, home, sg, store = mounted()
    fill(store, 50)
    frozen = freeze(sg, timeout=LONG)
    waiting = Committer(store, b"late", count=1).start()
    sg.dismount()
    assert waiting.done.wait(10)
    assert 2007 in ids(home)
    with pytest.raises(BackupAbortedError, match="dismounted"):
        frozen.thaw()
    sg.mount()
    assert waiting.acknowledged == [b"late00000"]
    assert set(waiting.acknowledged) <= keys_in(store)
    prepare_snapshot(sg)
    freeze(sg, timeout=LONG).thaw()
    home.close()


def test_a_freeze_of_a_dismounted_storage_group_is_refused() -> None:
    _fs, home, sg, _store = mounted()
    sg.dismount()
    with pytest.raises(OSSnapshotNotAllowedError, match="not mounted") as excinfo:
        freeze(sg, timeout=LONG)
    assert excinfo.value.code == -2403
    with pytest.raises(OSSnapshotNotAllowedError):
        prepare_snapshot(sg)
    home.close()


# --- streaming backups and snapshots exclude each other --------------------------------------------------------------


def run_streaming(sg: StorageGroup, kind: str) -> object:
    with sg.begin_backup(kind, owner="test") as session:
        if kind in ("full", "copy"):
            for store in session.databases():
                with session.open_database(store) as copy:
                    b"".join(owned(copy.chunks()))
        logs = session.prepare_logs()
        for gen in logs.copy:
            session.read_log(gen)
        return session.complete()


def test_a_freeze_during_a_streaming_backup_is_refused_and_the_backup_completes_untouched() -> None:
    _fs, home, sg, store = mounted()
    fill(store, 200)
    session = sg.begin_backup("full", owner="streaming test")
    with pytest.raises(OSSnapshotNotAllowedError, match="streaming backup session is running") as excinfo:
        freeze(sg, timeout=LONG)
    assert excinfo.value.code == -2403
    assert "streaming test" in excinfo.value.message
    with pytest.raises(OSSnapshotNotAllowedError):
        prepare_snapshot(sg)
    assert 2001 not in ids(home), "a refused freeze logs nothing itself (the writer logs 2002 and 9611)"
    put(store, b"after refusal")  # nothing stayed held
    for db in session.databases():
        with session.open_database(db) as copy:
            b"".join(owned(copy.chunks()))
    logs = session.prepare_logs()
    for gen in logs.copy:
        session.read_log(gen)
    session.complete()
    assert store.header is not None
    assert store.header.full_prev.kind == BACKUP_STREAMING
    prepare_snapshot(sg)
    freeze(sg, timeout=LONG).thaw()  # right after it, a snapshot succeeds
    home.close()


def test_a_streaming_begin_is_refused_while_frozen(frozen_sg) -> None:  # type: ignore[no-untyped-def]
    _fs, _home, sg, _store, frozen = frozen_sg
    with pytest.raises(BackupInProgressError, match="shadow copy") as excinfo:
        sg.begin_backup("full", owner="test")
    assert excinfo.value.code == -505
    frozen.thaw()
    run_streaming(sg, "copy")


def test_complete_refuses_while_frozen_and_when_a_streaming_session_started_meanwhile(frozen_sg) -> None:  # type: ignore[no-untyped-def]
    _fs, home, sg, _store, frozen = frozen_sg
    with pytest.raises(InvalidBackupSequenceError, match="still frozen"):
        complete_snapshot(sg, "full", frozen)
    frozen.thaw()
    session = sg.begin_backup("copy", owner="meanwhile")
    with pytest.raises(OSSnapshotNotAllowedError, match="meanwhile"):
        complete_snapshot(sg, "full", frozen)
    session.abort("test")
    complete_snapshot(sg, "full", frozen)
    with pytest.raises(InvalidBackupSequenceError, match="already completed"):
        complete_snapshot(sg, "full", frozen)
    assert 2006 in ids(home)


# --- completion: truncation and stamps like a streaming backup ----------------------------------------------------


def same_history(seed: int) -> tuple[FaultFileSystem, ServerHome, StorageGroup, Store]:
    """Several generations, a checkpoint in the middle of them: identical for identical seeds."""
    fs, home, sg, store = mounted(seed, policy=QUIET)  # why quiet: both homes must checkpoint at the same points
    fill(store, 300)
    sg.checkpoint()
    fill(store, 200, b"late")
    return fs, home, sg, store


def snapshot_backup(sg: StorageGroup, kind: str) -> object:
    prepare_snapshot(sg)
    frozen = freeze(sg, timeout=LONG)
    frozen.thaw()
    return complete_snapshot(sg, kind, frozen)


def streaming_backup(sg: StorageGroup, kind: str) -> object:
    sg.checkpoint()  # why: at the same point as the snapshot, whose prepare checkpoints (a streaming full does too)
    return run_streaming(sg, kind)


@pytest.mark.parametrize("kind", ["full", "incremental", "copy", "differential"])
def test_complete_truncates_and_stamps_exactly_like_a_streaming_backup(kind: str) -> None:
    results = []
    for run in (streaming_backup, snapshot_backup):
        fs, home, sg, store = same_history(73)
        if kind != "full":
            run_streaming(sg, "full")
            fill(store, 200, b"chain")
        before = archived(fs, sg)
        report = run(sg, kind)
        header = read_header_copies(fs, store.path).header
        slot = {"full": "full_prev", "copy": "copy_prev", "incremental": "inc_prev", "differential": "diff_prev"}[kind]
        info = getattr(header, slot)
        results.append((before, report.truncated, report.missing, info, header.snapshot_cur, sg.last_full_backup))  # type: ignore[attr-defined]
        home.close()
    (s_before, s_cut, s_missing, s_info, _, s_mark), (p_before, p_cut, p_missing, p_info, p_cur, p_mark) = results
    assert p_before == s_before
    assert p_cut == s_cut
    assert p_missing == s_missing == []
    assert (p_info.gen_low, p_info.gen_high, p_info.mark) == (s_info.gen_low, s_info.gen_high, s_info.mark)
    assert s_info.kind == BACKUP_STREAMING
    assert p_info.kind == BACKUP_SNAPSHOT
    assert p_cur == p_info, "'Current Shadow copy backup' is stamped with the same block"
    assert (p_mark and p_mark[0]) == (s_mark and s_mark[0]), "E00.chk records the same backup mark"
    if kind == "full":
        assert p_cut, "the history has generations below the checkpoint: a full backup truncates them"
    if kind in ("copy", "differential"):
        assert p_cut == []


def test_complete_counts_a_log_already_gone_and_goes_on() -> None:
    fs, home, sg, store = same_history(74)
    prepare_snapshot(sg)
    frozen = freeze(sg, timeout=LONG)
    frozen.thaw()
    doomed = archived(fs, sg)[0]
    fs.unlink(LogSet.scan(fs, sg.config.log_dir, sg.base).archived[doomed])
    report = complete_snapshot(sg, "full", frozen)
    assert report.missing == [doomed]
    assert report.truncated
    assert doomed not in report.truncated
    assert {224, 227, 2006} <= set(ids(home))
    assert store.header is not None
    assert store.header.full_prev.kind == BACKUP_SNAPSHOT
    home.close()
