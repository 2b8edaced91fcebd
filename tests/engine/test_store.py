"""The transaction API of a store: reads, writes, tables, snapshots, lazy commits, errors."""

from __future__ import annotations

import threading

import pytest

from shadowstore.errors import (
    InvalidParameterError,
    KeyTooLargeError,
    NotMountedError,
    ReadOnlyTransactionError,
    TableExistsError,
    TableNotFoundError,
    TransactionClosedError,
)
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN, STATE_DIRTY_SHUTDOWN
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from tests.conftest import fault_home, reopen


@pytest.fixture
def mounted() -> ServerHome:
    home = fault_home(FaultFileSystem(seed=31))
    home.storage_group().mount()
    with home.storage_group().store("Mailbox Store").transaction() as tx:
        tx.create_table("t")
    return home


def store_of(home: ServerHome):  # type: ignore[no-untyped-def]
    return home.storage_group().store("Mailbox Store")


def test_put_get_delete_and_range(mounted: ServerHome) -> None:
    store = store_of(mounted)
    with store.transaction() as tx:
        for i in range(100):
            tx.put("t", b"k%03d" % i, b"v%03d" % i)
        assert tx.get("t", b"k050") == b"v050", "a transaction sees its own writes"
        assert tx.delete("t", b"k050") is True
        assert tx.delete("t", b"k050") is False
    with store.snapshot() as snap:
        assert snap.get("t", b"k050") is None
        assert snap.get("t", b"k051") == b"v051"
        assert [k for k, _ in snap.range("t", b"k010", b"k014")] == [b"k010", b"k011", b"k012", b"k013"]
        assert len(list(snap.range("t", prefix=b"k09"))) == 10
        assert snap.count("t") == 99


def fail_inside(store, work) -> None:  # type: ignore[no-untyped-def]
    """Run ``work(tx)`` in a transaction whose block then raises; the error must come out."""

    def body() -> None:
        with store.transaction() as tx:
            work(tx)
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        body()


def test_an_exception_in_the_block_rolls_back(mounted: ServerHome) -> None:
    store = store_of(mounted)
    fail_inside(store, lambda tx: tx.put("t", b"doomed", b"x"))
    with store.snapshot() as snap:
        assert snap.get("t", b"doomed") is None
    with store.transaction() as tx:  # the writer latch was released
        tx.put("t", b"next", b"y")


def test_snapshot_does_not_see_later_commits_and_does_not_block_the_writer(mounted: ServerHome) -> None:
    store = store_of(mounted)
    with store.transaction() as tx:
        tx.put("t", b"a", b"old")
    snap = store.snapshot()
    with store.transaction() as tx:
        tx.put("t", b"a", b"new")
        tx.put("t", b"b", b"added")
    mounted.storage_group().checkpoint()  # pages the snapshot reads must survive a checkpoint
    with store.transaction() as tx:
        for i in range(500):
            tx.put("t", b"fill%04d" % i, b"z" * 200)
    mounted.storage_group().checkpoint()
    assert snap.get("t", b"a") == b"old"
    assert snap.get("t", b"b") is None
    snap.commit()
    with store.snapshot() as fresh:
        assert fresh.get("t", b"a") == b"new"


def test_tables_are_created_and_dropped_inside_transactions(mounted: ServerHome) -> None:
    store = store_of(mounted)
    with store.transaction() as tx:
        tx.create_table("other")
        tx.put("other", b"k", b"v")
        with pytest.raises(TableExistsError):
            tx.create_table("other")
    seen = []

    def drop(tx) -> None:  # type: ignore[no-untyped-def]
        tx.drop_table("other")
        seen.append(tx.has_table("other"))

    fail_inside(store, drop)
    assert seen == [False]
    with store.transaction() as tx:
        assert tx.get("other", b"k") == b"v", "the aborted drop left the table"
        tx.drop_table("other")
        tx.create_table("other")
        assert tx.get("other", b"k") is None
    with store.snapshot() as snap:
        assert snap.tables() == ["other", "t"]
        with pytest.raises(TableNotFoundError):
            snap.get("missing", b"k")


def test_values_larger_than_a_page_round_trip(mounted: ServerHome) -> None:
    store = store_of(mounted)
    big = bytes(range(256)) * 40_000  # about 10 MiB
    with store.transaction() as tx:
        tx.put("t", b"big", big)
    sg = mounted.storage_group()
    sg.dismount()
    sg.mount()
    with store.snapshot() as snap:
        assert snap.get("t", b"big") == big


def test_bad_input_is_refused_and_changes_nothing(mounted: ServerHome) -> None:
    store = store_of(mounted)
    with store.transaction() as tx:
        with pytest.raises(KeyTooLargeError):
            tx.put("t", b"k" * 5000, b"v")
        with pytest.raises(InvalidParameterError):
            tx.put("t", "text key", b"v")  # type: ignore[arg-type]
        with pytest.raises(InvalidParameterError):
            tx.create_table("")
    with store.snapshot() as snap:
        assert snap.count("t") == 0
        with pytest.raises(ReadOnlyTransactionError):
            snap.put("t", b"k", b"v")
    with pytest.raises(TransactionClosedError):
        snap.get("t", b"k")


def test_lazy_commit_is_visible_at_once_and_durable_after_a_flush(mounted: ServerHome) -> None:
    store = store_of(mounted)
    log = mounted.storage_group().log
    with store.transaction(lazy=True) as tx:
        tx.put("t", b"lazy", b"1")
    with store.snapshot() as snap:
        assert snap.get("t", b"lazy") == b"1"
    assert log.flushed < log.tail, "a lazy commit does not wait for the disk"
    maintenance = mounted.storage_group()._maintenance
    assert maintenance is not None
    maintenance.run_cycles(1)
    assert log.flushed >= log.tail, "the maintenance cycle flushes lazy commits"


def test_concurrent_committers_share_flushes(home: ServerHome) -> None:
    """On a real disk, committers that arrive during an fdatasync are made durable by one flush."""
    home.storage_group().mount()
    store = store_of(home)
    with store.transaction() as tx:
        tx.create_table("t")
    log = home.storage_group().log
    before = log.flushes
    barrier = threading.Barrier(8)

    def work(tid: int) -> None:
        barrier.wait()
        for i in range(50):
            with store.transaction() as tx:
                tx.put("t", b"%d-%d" % (tid, i), b"x" * 50)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.snapshot() as snap:
        assert snap.count("t") == 400
    assert log.flushes - before < 400, "every commit waited for a flush of its own"


def test_header_is_dirty_while_mounted_and_clean_after_dismount(mounted: ServerHome) -> None:
    sg = mounted.storage_group()
    store = store_of(mounted)
    header = store.read_header()
    assert header.state == STATE_DIRTY_SHUTDOWN
    assert header.log_required_min == sg.log.generation
    sg.dismount()
    header = store.read_header()
    assert header.state == STATE_CLEAN_SHUTDOWN
    assert (header.log_required_min, header.log_required_max) == (0, 0)
    assert header.last_detach > header.last_attach
    with pytest.raises(NotMountedError):
        store.transaction()


def test_mount_marks_dirty_before_any_page_write() -> None:
    """Mounting writes the Dirty Shutdown header (durably) before any page of the store is written."""
    fs = FaultFileSystem(seed=32)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    with store_of(home).transaction() as tx:
        tx.create_table("t")
        tx.put("t", b"k", b"v")
    sg.checkpoint()
    points = fs.points_seen
    assert points.index("header.after_primary_sync") < points.index("flush.after_page_write")
    sg.dismount()
    # the next mount first rewrites both stores' headers as read (engine/resync.py); then comes the first
    # header that says Dirty Shutdown
    fs.arm_crash("header.after_primary_sync", after=2)
    with pytest.raises(SimulatedCrash):
        sg.mount()
    after = reopen(fs.crash("drop"))
    assert after.storage_group().store("Mailbox Store").read_header().state == STATE_DIRTY_SHUTDOWN
