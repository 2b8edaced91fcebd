"""How long durable commits waited for the log disk (engine/flushwaits.py): the buckets, and the log writer
counting each commit that waited, in the bucket of its wait."""

from __future__ import annotations

import itertools
import mmap
import threading

from hypothesis import given
from hypothesis import strategies as st

from shadowstore.engine.flushwaits import BUCKETS, SIZE, FlushWaits, bucket_of, lower_ns, split
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.vss.storewriter import StoreWriter
from tests.conftest import SlowSyncFS, mounted_with_table


def every(waits: FlushWaits) -> list[int]:
    return split(waits.reading())[0]


@given(st.integers(min_value=0, max_value=10**12))
def test_a_wait_falls_in_the_one_bucket_whose_bounds_hold_it(ns: int) -> None:
    index = bucket_of(ns)
    assert 0 <= index < BUCKETS
    assert lower_ns(index) <= ns
    if index < BUCKETS - 1:
        assert ns < lower_ns(index + 1)


def test_buckets_rise_by_at_most_a_quarter_from_four_microseconds_up() -> None:
    bounds = [lower_ns(i) for i in range(BUCKETS)]
    assert bounds[:5] == [0, 1024, 2048, 3072, 4096]
    assert all(1.14 < b / a <= 1.25 for a, b in itertools.pairwise(bounds[4:]))
    assert 1.8e9 < bounds[-1] < 2e9  # the last bucket: everything from about 1.9 s


def test_readings_are_copies_and_counts_kept_in_shared_memory_are_read_from_it() -> None:
    local = FlushWaits()
    local.record(500_000)
    reading = every(local)
    local.record(500_000)
    assert sum(reading) == 1
    assert every(local)[bucket_of(500_000)] == 2
    with mmap.mmap(-1, SIZE) as memory:
        shared = FlushWaits(memory)
        shared.record(50_000_000)
        shared.record(50_000_000)
        counts = memoryview(memory).cast("Q")
        assert counts[bucket_of(50_000_000)] == 2  # where another process mapping it reads them
        assert shared.reading() == counts.tolist()
        counts.release()
        del shared


def test_every_storage_group_of_a_home_counts_into_the_homes_waits() -> None:
    fs = FaultFileSystem(seed=2)
    home, sg, store = mounted_with_table(fs)
    second = home.create_storage_group("Second Storage Group", stores=[("Archive", "archive.edb")])
    second.mount()
    archive = second.store("Archive")
    with archive.transaction() as tx:
        tx.create_table("t")
    before = sum(every(home.flush_waits))
    for i in range(5):
        for each in (store, archive):
            with each.transaction() as tx:
                tx.put("t", b"k%d" % i, b"v")
    assert sum(every(home.flush_waits)) - before == 10
    assert sg.waits is second.waits is home.flush_waits
    sg.dismount()
    sg.mount()  # a new log writer: the counts go on
    assert sum(every(home.flush_waits)) - before >= 10


def test_each_durable_commit_counts_its_wait_in_its_bucket_and_reads_count_nothing() -> None:
    fs = SlowSyncFS()
    _home, sg, store = mounted_with_table(fs)
    before = every(sg.log.waits)
    for i in range(20):
        with store.transaction() as tx:
            tx.put("t", b"k%d" % i, b"v")
    with store.snapshot() as snap:
        snap.get("t", b"k1")
    fast = [a - b for a, b in zip(every(sg.log.waits), before, strict=True)]
    assert sum(fast) == 20
    assert sum(fast[bucket_of(20_000_000) :]) == 0  # nothing near the slow commits below

    fs.delay = 0.02
    for i in range(3):
        with store.transaction() as tx:
            tx.put("t", b"s%d" % i, b"v")
    slow = [a - b - c for a, b, c in zip(every(sg.log.waits), before, fast, strict=True)]
    assert sum(slow) == 3
    assert sum(slow[bucket_of(20_000_000) :]) == 3


def test_a_commit_waiting_behind_another_leader_counts_its_own_wait() -> None:
    fs = SlowSyncFS()
    _home, sg, store = mounted_with_table(fs)
    before = sum(every(sg.log.waits))
    fs.delay = 0.05

    def commit(key: bytes) -> None:
        with store.transaction() as tx:
            tx.put("t", key, b"v")

    threads = [threading.Thread(target=commit, args=(b"w%d" % i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reading = every(sg.log.waits)
    assert sum(reading) - before == 4  # leaders and followers alike
    assert sum(reading[bucket_of(40_000_000) :]) >= 2  # each waited at least one slow flush


def test_waits_while_a_backup_runs_are_counted_but_not_as_normal_ones() -> None:
    fs = FaultFileSystem(seed=6)
    home, sg, store = mounted_with_table(fs)

    def commit(n: int) -> tuple[int, int]:
        before = [sum(part) for part in split(home.flush_waits.reading())]
        for i in range(n):
            with store.transaction() as tx:
                tx.put("t", b"b%d" % i, b"v")
        after = [sum(part) for part in split(home.flush_waits.reading())]
        return after[0] - before[0], after[1] - before[1]

    assert commit(5) == (5, 5)
    session = sg.backups.begin("full", "test", None)
    assert commit(5) == (5, 0)  # a streaming backup runs: these waits are not what commits normally wait
    session.abort("the test is done with it")
    assert commit(5) == (5, 5)
    writer = StoreWriter(home)
    writer.prepare_for_backup("full", [sg.name])
    assert commit(3) == (3, 0)  # a shadow-copy job, from PrepareForBackup
    writer.backup_shutdown()
    assert commit(3) == (3, 3)
    assert not home.flush_waits.busy
