"""The log writer's commit times: rising in log order, and bounded by the generations' creation times."""

from __future__ import annotations

import itertools
import os
import threading

import pytest

from shadowstore.engine.logreader import RecordAssembler, scan_generation
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.errors import DiskIOError, ShadowStoreError
from shadowstore.format.logrecord import KIND_TXN, TXN_HEADER
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.io.fs import read_file
from tests.conftest import HOME, PausingFS, fault_home, mounted_with_table, reopen


def test_commit_times_rise_in_log_order_within_their_generations_creation_times() -> None:
    fs = FaultFileSystem(seed=5)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    stores = [sg.store("Mailbox Store"), sg.store("Public Folder Store")]
    for store in stores:
        with store.transaction() as tx:
            tx.create_table("t")

    def commit(store_index: int, thread: int) -> None:
        for i in range(150):
            with stores[store_index].transaction() as tx:
                # 64 KiB logs: a roll every ~80 small commits; every tenth record spans generations
                tx.put("t", b"%d-%d" % (thread, i), b"v" * (30_000 if i % 10 == 0 else 700))

    threads = [threading.Thread(target=commit, args=(t % 2, t)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sg.dismount()

    log_dir = os.path.join(HOME, "First Storage Group")
    logs = LogSet.scan(fs, log_dir, "E00")
    assert logs.current is not None
    paths = [logs.archived[g] for g in sorted(logs.archived)] + [logs.current]
    headers = [read_header(fs, p) for p in paths]
    assert len(headers) > 5
    assembler = RecordAssembler()
    times: list[tuple[int, int]] = []  # (generation where the record ends, commit time)
    spanning = 0
    for path, header in zip(paths, headers, strict=True):
        scan = scan_generation(path, read_file(fs, path), header, tolerate_torn_tail=True)
        for start, end, data in assembler.feed(scan):
            if data[0] == KIND_TXN:
                times.append((end.gen, TXN_HEADER.unpack_from(data, 0)[4]))
                spanning += start.gen != end.gen
    assert len(times) == 4 * 150 + 2
    assert spanning > 5
    assert all(a[1] < b[1] for a, b in itertools.pairwise(times)), "commit times must rise in log order"
    created = {h.generation: h.created_us for h in headers}
    for gen, t in times:  # so the logs up to g hold every commit made before generation g + 1 was created
        assert created[gen] <= t, f"a record ending in generation {gen} is older than the generation"
        if gen + 1 in created:
            assert t < created[gen + 1], f"a record ending in generation {gen} is not older than the next"


def test_going_offline_waits_for_a_flush_leader_still_writing_before_closing_the_log() -> None:
    # A failed write elsewhere fenced the log while a leader was between its write and its fdatasync. Closing
    # the file under it would make its fdatasync fail (EBADF) or, on the real system, land on whatever file
    # reuses the descriptor. The leader finishes; its commit was durable and stays so.
    fs = PausingFS(seed=61)
    _home, sg, store = mounted_with_table(fs)
    outcome: list[object] = []

    def commit() -> None:
        try:
            with store.transaction() as tx:
                tx.put("t", b"k", b"in flight")
            outcome.append("committed")
        except ShadowStoreError as exc:
            outcome.append(exc)

    fs.pause_at = "log.flush.after_write"
    committer = threading.Thread(target=commit)
    committer.start()
    assert fs.paused.wait(10)
    sg.lost_writes("/elsewhere", DiskIOError("a test failed a write elsewhere"))
    offline = threading.Thread(target=sg.go_offline, args=("a test",))
    offline.start()
    offline.join(0.5)
    assert offline.is_alive(), "the log was closed under a leader still writing it"
    fs.resume.set()
    committer.join(10)
    offline.join(10)
    assert outcome == ["committed"]
    after = reopen(fs.crash("drop"))
    after.storage_group().mount()
    with after.storage_group().store("Mailbox Store").snapshot() as snap:
        assert snap.get("t", b"k") == b"in flight"
    after.close()


def test_after_a_roll_the_current_log_is_named_as_e00_log_in_errors_and_faults() -> None:
    fs = FaultFileSystem(seed=62)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    sg.log.roll()
    sg.log.flush()
    handle = sg.log.current_file()
    assert handle is not None
    assert os.path.basename(handle.path) == "E00.log"  # it was opened as E00tmp.log
    fs.fail_fsync("E00.log")
    with pytest.raises(ShadowStoreError, match=r"E00\.log"), sg.store("Mailbox Store").transaction() as tx:
        tx.create_table("t")
    home.close()
