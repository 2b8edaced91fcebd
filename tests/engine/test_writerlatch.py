"""The writer latch: one write transaction per store, and no idle client can hold up the storage group."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from shadowstore.engine.writerlatch import WriterLatch
from shadowstore.errors import NotMountedError, TransactionAbortedError
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem
from tests.conftest import QUIET, fault_home, reopen


def home_with(policy_changes: dict[str, float]) -> ServerHome:
    fs = FaultFileSystem(seed=21)
    home = fault_home(fs)
    home.close()
    home = ServerHome.open(home.path, fs=fs, policy=dataclasses.replace(QUIET, **policy_changes))
    home.storage_group().mount()
    with home.storage_group().store("Mailbox Store").transaction() as tx:
        tx.create_table("t")
    return home


def test_the_latch_is_taken_away_from_its_holder_but_never_inside_a_commit() -> None:
    latch = WriterLatch()
    holder = object()
    assert latch.acquire()
    ticket = latch.adopt(holder)
    assert latch.holder() is holder
    assert not latch.acquire(timeout=0.01)
    assert latch.begin_commit(ticket)
    assert latch.take_away() is None  # a commit's append is never interrupted
    latch.end_commit()
    assert latch.acquire(timeout=1)
    ticket = latch.adopt(holder)
    assert latch.take_away() is holder
    assert not latch.release(ticket)  # it knows it lost the latch: no double release
    assert not latch.begin_commit(ticket)
    assert latch.acquire(timeout=1)  # released once, by the taker
    assert latch.take_away() is None  # an anonymous holder (dismount, a checkpoint's probe) keeps it
    latch.release_anonymous()
    assert latch.try_idle()
    latch.release_anonymous()


def test_a_holder_giving_the_latch_back_and_a_taker_never_both_release_it() -> None:
    # Many rounds of a holder releasing while another thread takes the latch away: whichever wins, the lock is
    # released exactly once (a second release would raise, or let two writers in).
    latch = WriterLatch()
    for _ in range(2000):
        assert latch.acquire(timeout=1)
        ticket = latch.adopt(object())
        taker = threading.Thread(target=latch.take_away)
        taker.start()
        latch.release(ticket)
        taker.join()
        assert latch.acquire(timeout=1)
        assert not latch.try_idle()
        latch.release_anonymous()


def test_maintenance_aborts_a_transaction_held_past_the_bound_and_other_writers_go_on() -> None:
    home = home_with({"interval": 0.05, "transaction_timeout": 0.3})
    sg = home.storage_group()
    store = sg.store("Mailbox Store")
    idle = store.transaction()
    idle.put("t", b"idle", b"never committed")
    committed = threading.Event()

    def other_writer() -> None:
        with store.transaction() as tx:  # waits for the latch the idle client holds
            tx.put("t", b"other", b"committed")
        committed.set()

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert committed.wait(10), "the other writer still waits behind the idle transaction"
    thread.join()
    event = home.events.wait_for(1026, timeout=1)
    assert event is not None
    assert "Mailbox Store" in event.description
    with pytest.raises(TransactionAbortedError, match="was aborted after holding"):
        idle.put("t", b"more", b"x")
    with pytest.raises(TransactionAbortedError):
        idle.commit()
    idle.abort()  # harmless: it has ended
    with store.snapshot() as snap:
        assert snap.get("t", b"idle") is None
        assert snap.get("t", b"other") == b"committed"
    home.close()


def test_dismount_waits_no_longer_than_the_bound_for_an_idle_transaction() -> None:
    home = home_with({"transaction_timeout": 0.2})  # maintenance never runs a cycle by itself here
    sg = home.storage_group()
    idle = sg.store("Mailbox Store").transaction()
    idle.put("t", b"idle", b"x")
    started = time.monotonic()
    sg.dismount()
    assert time.monotonic() - started < 10
    assert 1026 in [e.event_id for e in home.events.memory]
    with pytest.raises(TransactionAbortedError):
        idle.commit()
    sg.mount()
    with sg.store("Mailbox Store").snapshot() as snap:
        assert snap.get("t", b"idle") is None
    home.close()


def test_a_storage_group_that_went_offline_with_a_transaction_open_mounts_again() -> None:
    fs = FaultFileSystem(seed=22)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
        tx.put("t", b"kept", b"1")
    idle = store.transaction()
    idle.put("t", b"idle", b"x")
    sg.go_offline("a test took it offline")
    with pytest.raises(NotMountedError, match="closed while a write transaction was open"):
        idle.commit()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (sg.mount(), done.set()), daemon=True)
    thread.start()
    assert done.wait(10), "mount waits for the writer latch of a transaction of the old mount"
    with store.snapshot() as snap:
        assert snap.get("t", b"kept") == b"1"
        assert snap.get("t", b"idle") is None
    sg.dismount()
    reopen(fs).close()


@pytest.mark.parametrize("ended_by", ["offline", "latch taken away"])
def test_a_with_block_whose_transaction_the_engine_ended_raises_rather_than_seem_committed(ended_by: str) -> None:
    """The block's own calls all succeeded, then the engine ended the transaction (from another thread, in
    production): leaving the block must raise, or the caller would count as committed what was never logged
    (a failed fsync elsewhere in the storage group, or a latch held past the bound, hit exactly this)."""
    fs = FaultFileSystem(seed=23)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
    error = NotMountedError if ended_by == "offline" else TransactionAbortedError

    def block() -> None:
        with store.transaction() as tx:
            tx.put("t", b"never", b"logged")
            if ended_by == "offline":
                sg.go_offline("a test took it offline")
            else:
                assert store.abort_writer(TransactionAbortedError("the test took the latch away")) is tx

    with pytest.raises(error):
        block()
    if not sg.mounted:
        sg.mount()
    with store.snapshot() as snap:
        assert snap.get("t", b"never") is None
    sg.dismount()
    reopen(fs).close()
