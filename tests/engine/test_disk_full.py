"""A full log disk: reserve log, -529 LogDiskFull, events 428/429, clean dismount, nothing lost.

Tested twice: on the fault-injecting file system with a byte capacity, and for real on a small ext4 file
system mounted from a loop device (CI runs as root; the test skips only where loop devices or mkfs.ext4 are
genuinely absent).
"""

from __future__ import annotations

import os
import shutil
from contextlib import suppress

import pytest

from shadowstore.errors import DiskFullError, LogDiskFullError
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem
from tests.conftest import QUIET, fault_home, reopen


def fill_until_refused(home: ServerHome, value_size: int = 400) -> dict[bytes, bytes]:
    """Commit until the engine refuses with -529; returns every acknowledged key and value."""
    sg = home.storage_group()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        if not tx.has_table("t"):
            tx.create_table("t")
    acknowledged: dict[bytes, bytes] = {}
    for i in range(1_000_000):
        key, value = b"k%07d" % i, bytes([i % 251]) * value_size
        try:
            with store.transaction() as tx:
                tx.put("t", key, value)
        except LogDiskFullError as exc:
            refused = exc
            break
        acknowledged[key] = value
        if i % 200 == 199:
            with suppress(DiskFullError):  # the store's file may find the disk full first: the log goes on
                sg.checkpoint()
    else:
        raise AssertionError("the disk never filled")
    assert refused.code == -529
    return acknowledged


def read_table(home: ServerHome) -> dict[bytes, bytes]:
    with home.storage_group().store("Mailbox Store").snapshot() as snap:
        return dict(snap.range("t"))


def test_full_log_disk_refuses_updates_dismounts_cleanly_and_loses_nothing() -> None:
    fs = FaultFileSystem(seed=21)
    home = fault_home(fs)
    used_at_start = (1 << 40) - fs.free_space("/")
    fs.capacity = used_at_start + 1_500_000
    sg = home.storage_group()
    sg.mount()
    acknowledged = fill_until_refused(home)
    assert len(acknowledged) > 100
    assert home.events.wait_for(1021, timeout=30.0) is not None, "the storage group did not dismount"
    ids = [e.event_id for e in home.events.memory]
    assert 428 in ids
    assert ids.index(428) < ids.index(1021)
    assert not sg.mounted
    for store in sg.stores.values():
        assert store.read_header().state == STATE_CLEAN_SHUTDOWN
    # A backup that begins now is told why it cannot, as a store's user is: not only "not mounted"
    with pytest.raises(LogDiskFullError, match=r"is not mounted: .* its log disk .* is full") as refused:
        sg.begin_backup("full", owner="test")
    assert refused.value.hint is not None
    assert "shadowstore sg move" in refused.value.hint
    # Space is freed (a bigger disk); the storage group mounts again and goes on.
    fs.capacity = None
    sg.mount()
    assert read_table(home) == acknowledged
    with sg.store("Mailbox Store").transaction() as tx:
        tx.put("t", b"after", b"space was freed")
    sg.dismount()
    again = reopen(fs)
    again.storage_group().mount()
    assert read_table(again)[b"after"] == b"space was freed"
    again.storage_group().dismount()


def test_a_transaction_longer_than_the_room_left_is_refused_and_the_group_still_dismounts_in_order() -> None:
    fs = FaultFileSystem(seed=23)
    home = fault_home(fs)  # 64 KiB logs, so the transaction below spans ten of them
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
        tx.put("t", b"before", b"acknowledged")
    fs.capacity = (1 << 40) - fs.free_space("/") + 3 * 64 * 1024  # room for three more log files
    refused = pytest.raises(LogDiskFullError, match="reserve logs, which are kept for a clean shutdown")
    with refused, store.transaction() as tx:
        tx.put("t", b"big", bytes(10 * 64 * 1024))  # laid out, it would take the reserves and more
    assert home.events.wait_for(1021, timeout=30.0) is not None, "the storage group did not dismount in order"
    ids = [e.event_id for e in home.events.memory]
    assert 428 in ids
    assert 1020 not in ids  # not offline
    assert 429 not in ids  # no generation went without a file
    fs.capacity = None
    sg.mount()
    assert read_table(home) == {b"before": b"acknowledged"}
    sg.dismount()


def test_mount_refuses_when_reserve_logs_cannot_be_created() -> None:
    fs = FaultFileSystem(seed=22)
    home = fault_home(fs)
    sg = home.storage_group()
    reserve = os.path.join(sg.config.log_dir, "res2.log")
    fs.unlink(reserve)
    fs.capacity = (1 << 40) - fs.free_space("/") + 1000
    with pytest.raises(LogDiskFullError) as info:
        sg.mount()
    assert "res2.log" in str(info.value)
    assert not sg.mounted
    fs.capacity = None
    sg.mount()
    assert fs.exists(reserve)
    sg.dismount()


# --- the same on a real, small, loop-mounted ext4 file system ------------------------------------------------


@pytest.mark.root
def test_full_ext4_log_disk_on_a_loop_device(small_ext4: str) -> None:
    home_dir = os.path.join(small_ext4, "home")
    home = ServerHome.init(home_dir, log_file_size=256 * 1024, policy=QUIET)
    ballast = os.path.join(small_ext4, "ballast")
    with open(ballast, "wb") as f:  # most of the disk, so that the logs fill it soon
        free = shutil.disk_usage(small_ext4).free
        f.write(b"\0" * max(0, free - 5 * 1024 * 1024))
        f.flush()
        os.fsync(f.fileno())
    sg = home.storage_group()
    sg.mount()
    acknowledged = fill_until_refused(home, value_size=900)
    assert acknowledged
    assert home.events.wait_for(1021, timeout=60.0) is not None
    ids = [e.event_id for e in home.events.memory]
    assert 428 in ids
    assert not sg.mounted
    states = {s.name: s.read_header().state for s in sg.stores.values()}
    os.unlink(ballast)
    sg.mount()
    assert read_table(home) == acknowledged
    with sg.store("Mailbox Store").transaction() as tx:
        tx.put("t", b"after", b"ok")
    sg.dismount()
    assert all(s.read_header().state == STATE_CLEAN_SHUTDOWN for s in sg.stores.values())
    # On the full disk itself each store reached Clean Shutdown, or, where its file could not grow to take the
    # last pages (the spare reserve is one log file), stayed in Dirty Shutdown saying so (event 1004): its
    # logs were kept, and the mount above replayed them.
    dirty = {e.params["store"] for e in home.events.memory if e.event_id == 1004}
    assert {name for name, state in states.items() if state != STATE_CLEAN_SHUTDOWN} == dirty, states
