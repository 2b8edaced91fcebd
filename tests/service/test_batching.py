"""Commit batching: concurrent clients' writes to one store share transactions, and one client's bad request
fails only that client."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shadowstore.engine.store import Store
from shadowstore.engine.transaction import Transaction
from shadowstore.errors import InvalidParameterError, NotMountedError
from shadowstore.home import ServerHome
from shadowstore.service.batching import CommitBatcher

THREADS, EACH = 16, 40


@pytest.fixture
def store(tmp_path: object) -> Iterator[Store]:
    home = ServerHome.init(f"{tmp_path}/home")
    sg = home.storage_group()
    sg.mount()
    mailbox = sg.store("Mailbox Store")
    with mailbox.transaction() as tx:
        tx.create_table("t")
    yield mailbox
    home.close()


def _put(key: bytes) -> object:
    def work(tx: Transaction) -> bytes:
        tx.put("t", key, key * 10)
        return key

    return work


def test_concurrent_writers_share_commits_and_every_write_is_kept(store: Store) -> None:
    batcher = CommitBatcher(store.transaction)
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(EACH):
                key = f"{n:02d}-{i:04d}".encode()
                assert batcher.submit(_put(key)) == key  # type: ignore[arg-type]
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert batcher.works == THREADS * EACH
    with store.snapshot() as snap:
        assert snap.count("t") == THREADS * EACH
        assert snap.get("t", b"07-0039") == b"07-0039" * 10


def test_works_that_queue_behind_a_transaction_share_the_next_commit(store: Store) -> None:
    batcher = CommitBatcher(store.transaction)
    gate = threading.Event()

    def slow(tx: Transaction) -> str:
        gate.wait(5)  # why: the next works queue while this one's transaction is built
        tx.put("t", b"slow", b"1")
        return "slow"

    first = threading.Thread(target=batcher.submit, args=(slow,))
    first.start()
    while not batcher._leading:
        pass
    queued = [threading.Thread(target=batcher.submit, args=(_put(f"q{i}".encode()),)) for i in range(8)]
    for thread in queued:
        thread.start()
    while len(batcher._queue) < 8:
        pass
    gate.set()
    for thread in [first, *queued]:
        thread.join()
    assert (batcher.commits, batcher.works) == (2, 9)
    with store.snapshot() as snap:
        assert snap.count("t") == 9


def test_a_failing_work_fails_alone(store: Store) -> None:
    batcher = CommitBatcher(store.transaction)
    gate = threading.Event()
    results: dict[str, object] = {}

    def slow(tx: Transaction) -> str:
        gate.wait(5)  # why: holds the first batch open so the next ones queue together
        tx.put("t", b"slow", b"1")
        return "slow"

    def bad(tx: Transaction) -> None:
        tx.put("t", b"bad", b"1")
        raise InvalidParameterError("this client's request is wrong")

    def run(name: str, work: object) -> None:
        try:
            results[name] = batcher.submit(work)  # type: ignore[arg-type]
        except Exception as exc:
            results[name] = exc

    first = threading.Thread(target=run, args=("slow", slow))
    first.start()
    while batcher.works == 0 and not batcher._queue:
        pass
    others = [threading.Thread(target=run, args=(f"good{i}", _put(f"good{i}".encode()))) for i in range(3)]
    others.insert(1, threading.Thread(target=run, args=("bad", bad)))
    for thread in others:
        thread.start()
    gate.set()
    for thread in [first, *others]:
        thread.join()
    assert results["slow"] == "slow"
    assert isinstance(results["bad"], InvalidParameterError)
    assert [results[f"good{i}"] for i in range(3)] == [b"good0", b"good1", b"good2"]
    with store.snapshot() as snap:
        assert snap.get("t", b"bad") is None
        assert all(snap.get("t", f"good{i}".encode()) is not None for i in range(3))


def test_a_store_that_went_away_fails_every_work_of_the_batch(store: Store) -> None:
    batcher = CommitBatcher(store.transaction)
    store.sg.dismount()
    with pytest.raises(NotMountedError):
        batcher.submit(_put(b"k"))  # type: ignore[arg-type]
