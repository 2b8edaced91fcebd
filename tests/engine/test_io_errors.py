"""I/O errors are final: a failed fsync of any file takes the storage group offline, and nothing acknowledged is
lost.

The fault-injecting file system fails an fsync the way Linux does: the file's unsynced writes never reach the
disk, the program still reads them, and a later fsync succeeds for nothing. So an engine that retried and went
on would acknowledge commits and checkpoints that a power loss then undoes. Every fsync of a run (logs, store
pages and headers, the checkpoint file, folders) is failed in turn; each time the storage group must stop
accepting work, and after a power loss it must mount with every acknowledged commit whole.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

import pytest

from shadowstore.errors import ShadowStoreError, StorageGroupOfflineError
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from tests.conftest import PausingFS, fault_home, mounted_with_table, reopen
from tests.engine.test_backup_session import run_backup

COMMITS = 60


def workload(home: ServerHome, acked: dict[str, set[bytes]]) -> ShadowStoreError | None:
    """Commits in two stores (durable and lazy), rolls, checkpoints, a full backup that stamps the headers and
    rewrites E00.chk, then a dismount. Stops at the first error, which it returns."""
    sg = home.storage_group()
    priv, pub = sg.store("Mailbox Store"), sg.store("Public Folder Store")
    try:
        for store in (priv, pub):
            with store.transaction() as tx:
                tx.create_table("t")
        for i in range(COMMITS):
            key = b"k%04d" % i
            with priv.transaction() as tx:
                tx.put("t", key, b"p" * (100 + 40 * i))
            acked["Mailbox Store"].add(key)
            with pub.transaction(lazy=i % 3 != 0) as tx:
                tx.put("t", key, b"q" * 3000)
            if i % 3 == 0:
                acked["Public Folder Store"].add(key)
            if i % 15 == 14:
                sg.log.roll()
                sg.log.flush()
            if i % 20 == 19:
                sg.checkpoint()
            if i == 45:
                run_backup(home, "full")
        sg.dismount()
    except ShadowStoreError as exc:
        return exc
    return None


def fsyncs_of_a_clean_run() -> list[str]:
    fs = FaultFileSystem(seed=11)
    home = fault_home(fs)
    home.storage_group().mount()
    start = len(fs.fsyncs_seen)
    assert workload(home, {"Mailbox Store": set(), "Public Folder Store": set()}) is None
    return fs.fsyncs_seen[start:]


def kind(path: str) -> str:
    name = os.path.basename(path)
    if name.endswith(".edb"):
        return "store"
    if name.endswith(".chk"):
        return "checkpoint"
    if name.endswith(".log"):
        return "log"
    return "folder" if "." not in name else "other"


def run_with_failed_fsync(index: int) -> tuple[str, str]:
    """Fail the fsync at ``index``; check the storage group stopped and that a power loss loses nothing
    acknowledged. Returns (path that failed, what happened)."""
    fs = FaultFileSystem(seed=11)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    acked: dict[str, set[bytes]] = {"Mailbox Store": set(), "Public Folder Store": set()}
    start = len(fs.fsyncs_seen)
    fs.fail_fsync(after=index)
    error = workload(home, acked)
    seen = fs.fsyncs_seen[start:]
    failed = seen[index] if index < len(seen) else ""
    if failed and kind(failed) in ("store", "checkpoint", "log") and not failed.endswith("tmp.log"):
        # the failure of a file the storage group depends on: it stopped, and said why
        assert error is not None, f"fsync {index} of {failed} failed and the workload went on"
        store = sg.store("Mailbox Store")
        if sg.mounted:
            with pytest.raises(ShadowStoreError), store.transaction() as tx:
                tx.put("t", b"after", b"must not be acknowledged")
        if kind(failed) in ("store", "checkpoint"):  # reported by whichever thread wrote (maintenance, say)
            assert home.events.wait_for(1024, timeout=10) is not None, f"no event 1024 after {failed}"
    after = reopen(fs.crash("drop"))
    try:
        after.storage_group().mount()
    except ShadowStoreError as exc:
        raise AssertionError(f"fsync {index} ({failed}) failed; after a power loss the mount failed: {exc}") from exc
    for name, keys in acked.items():
        with after.storage_group().store(name).snapshot() as snap:
            present = {k for k, _ in snap.range("t")} if snap.has_table("t") else set()
        lost = sorted(keys - present)
        assert not lost, f"fsync {index} ({failed}): {name} lost acknowledged commits {lost[:5]}"
    after.close()
    return failed, "stopped" if error is not None else "went on"


def test_every_fsync_of_a_run_failed_in_turn_stops_the_storage_group_and_loses_nothing() -> None:
    reference = fsyncs_of_a_clean_run()
    kinds = {kind(p) for p in reference}
    assert {"store", "checkpoint", "log", "folder"} <= kinds, kinds
    seen: dict[str, int] = {}
    for index in range(len(reference)):
        failed, _outcome = run_with_failed_fsync(index)
        seen[kind(failed)] = seen.get(kind(failed), 0) + 1
    assert seen.get("store", 0) >= 10, seen
    assert seen.get("checkpoint", 0) >= 3, seen
    assert seen.get("log", 0) >= 10, seen


def test_a_failed_store_fsync_fences_commits_at_once_and_takes_the_storage_group_offline() -> None:
    fs = FaultFileSystem(seed=12)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
        tx.put("t", b"before", b"1")
    fs.fail_fsync("priv1.edb")
    with pytest.raises(ShadowStoreError, match="writes to it may be lost"):
        sg.checkpoint()
    with pytest.raises(StorageGroupOfflineError), store.transaction() as tx:
        tx.put("t", b"after", b"2")
    assert home.events.wait_for(1020, timeout=10) is not None  # the maintenance thread took it offline
    assert not sg.mounted
    ids = [e.event_id for e in home.events.memory]
    assert ids.index(1024) < ids.index(1020)
    sg.mount()  # recovery from the durable state: the commit before the failure is there
    with sg.store("Mailbox Store").snapshot() as snap:
        assert snap.get("t", b"before") == b"1"
        assert snap.get("t", b"after") is None
    home.close()


def test_a_failed_shadow_header_fsync_never_frees_the_pages_the_durable_primary_names() -> None:
    # The primary copy of the new header is durable; its twin's fsync fails. Told the write failed, an engine
    # that carried on would free the pages the durable primary names and overwrite them at the next
    # checkpoint: after a power loss the store would not mount (-1206).
    fs = FaultFileSystem(seed=13)
    _home, sg, store = mounted_with_table(fs)
    for round_ in range(3):
        with store.transaction() as tx:
            for i in range(50):
                tx.put("t", b"r%d-%03d" % (round_, i), b"v" * 500)
        if round_ == 1:
            fs.fail_fsync("priv1.edb", after=2)  # pages, primary header, then the shadow header
        try:
            sg.checkpoint()
        except ShadowStoreError:
            break
    with pytest.raises(ShadowStoreError), store.transaction() as tx:
        tx.put("t", b"more", b"v" * 500)
    after = reopen(fs.crash("drop"))
    after.storage_group().mount()
    with after.storage_group().store("Mailbox Store").snapshot() as snap:
        assert sum(1 for _ in snap.range("t")) == 100
    after.close()


def test_an_unexpected_error_in_maintenance_takes_the_storage_group_offline_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # On a file system that misbehaves (a read refused on a handle the engine opened read-write, say) the
    # maintenance thread meets an OSError no engine code expects. It must not print a traceback every half
    # second forever while commits go on unflushed and unchecked: it stops the storage group, once, saying why.
    fs = FaultFileSystem(seed=14)
    home, sg, store = mounted_with_table(fs)

    def misbehaving_check(*_args: object) -> list[object]:
        raise OSError(9, "Bad file descriptor")

    sg.watch.check = misbehaving_check  # type: ignore[method-assign,assignment]
    assert sg._maintenance is not None
    sg._maintenance.wake()
    event = home.events.wait_for(1025, timeout=10)
    assert event is not None
    assert "OSError: [Errno 9] Bad file descriptor" in event.description
    assert home.events.wait_for(1020, timeout=10) is not None
    assert not sg.mounted
    with pytest.raises(ShadowStoreError, match="maintenance"), store.transaction() as tx:
        tx.put("t", b"k", b"v")
    tracebacks = [r for r in caplog.records if r.name == "shadowstore.maintenance" and r.exc_info]
    assert len(tracebacks) == 1
    sg.mount()  # the way back
    home.close()


def test_a_remount_after_a_failed_header_fsync_builds_only_on_what_is_on_disk() -> None:
    # The failed header write is still in the page cache, so a mount in this process (or the next one, until a
    # reboot) reads it. Soft recovery building on it (its space map frees pages the header on disk still
    # names) and then losing power would leave a store whose durable header points at overwritten pages.
    fs = PausingFS(seed=15)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    acked: set[bytes] = set()

    def commit(tag: bytes, count: int) -> None:
        for i in range(count):
            key = tag + b"%03d" % i
            with store.transaction() as tx:
                if not tx.has_table("t"):
                    tx.create_table("t")
                tx.put("t", key, bytes([i % 251]) * 700)
            acked.add(key)

    commit(b"a", 60)
    sg.checkpoint()
    commit(b"b", 60)
    fs.pause_at = "flush.after_page_sync"  # the checkpoint has synced its pages; commits go on meanwhile
    checkpointer = threading.Thread(target=lambda: suppress_errors(sg.checkpoint))
    checkpointer.start()
    assert fs.paused.wait(10)
    commit(b"c", 60)  # in the log after the replay start the failed header names: recovery replays them
    # the checkpoint holds the store's flush lock, so its primary header copy is the next fsync of the file
    fs.fail_fsync("priv1.edb")
    fs.resume.set()
    checkpointer.join(10)
    assert home.events.wait_for(1020, timeout=10) is not None
    fs.arm_crash("flush.after_page_sync")  # recovery has written the replayed state's pages; power fails
    with pytest.raises(SimulatedCrash):
        sg.mount()
    after_crash = reopen(fs.crash("drop"))
    after_crash.storage_group().mount()
    with after_crash.storage_group().store("Mailbox Store").snapshot() as snap:
        present = {k for k, _ in snap.range("t")}
    assert acked <= present
    after_crash.close()


def suppress_errors(action: Callable[[], object]) -> None:
    with contextlib.suppress(ShadowStoreError):
        action()


def test_a_dismount_right_after_a_failed_write_takes_the_storage_group_offline() -> None:
    # The failed fsync fenced the log; the program dismounts before the maintenance thread's next cycle
    # (what `shadowstore workload run` does when its commit fails). It must say the storage group went offline
    # (1020), not fail store by store (1004) and end as an ordinary dismount (1001).
    fs = FaultFileSystem(seed=16)
    home, sg, _store = mounted_with_table(fs)
    assert sg._maintenance is not None
    sg._maintenance.stop()  # the cycle that would take it offline never comes
    fs.fail_fsync("priv1.edb")
    with pytest.raises(ShadowStoreError):
        sg.checkpoint()
    sg.dismount()
    ids = [e.event_id for e in home.events.memory]
    assert 1020 in ids
    assert 1004 not in ids
    assert ids.index(1024) < ids.index(1020)
    assert not sg.mounted
    sg.mount()
    sg.dismount()
