"""The fault-injecting file system's own semantics (io/faulty.py).

Every crash and corruption test in the suite trusts these rules, so each is checked here directly: what survives
``crash("drop" | "tear" | "keep")``, directory entries and renames, torn writes at sector granularity, failed
fsyncs, a full disk, armed crash points, and a crashed file system refusing further calls.
"""

from __future__ import annotations

import errno
import threading

import pytest

from shadowstore.errors import StorageGroupBusyError
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from shadowstore.io.fs import SECTOR_SIZE

SEEDS = range(64)
OLD, NEW = b"\xaa", b"\x55"


def durable_file(fs: FaultFileSystem, path: str, data: bytes) -> None:
    """Create ``path`` with ``data`` the way the engine does it: write, fsync the file, fsync its directory."""
    handle = fs.open(path, create=True)
    handle.pwrite(data, 0)
    handle.fsync()
    handle.close()
    fs.fsync_dir(path.rsplit("/", 1)[0] or "/")


def new_fs(seed: int = 0, **kw: object) -> FaultFileSystem:
    fs = FaultFileSystem(seed=seed, **kw)  # type: ignore[arg-type]
    fs.makedirs("/d")
    return fs


def with_unsynced_overwrite() -> FaultFileSystem:
    """/d/f is durably b"durable"; then overwritten and extended without fsync."""
    fs = new_fs()
    durable_file(fs, "/d/f", b"durable")
    fs.open("/d/f").pwrite(b"VOLATILE", 0)
    return fs


# --- unsynced data ------------------------------------------------------------------------------------------------


def test_drop_loses_unsynced_writes() -> None:
    fs = with_unsynced_overwrite()
    assert fs.read_bytes("/d/f") == b"VOLATILE"  # the program sees its write
    assert fs.crash("drop").read_bytes("/d/f") == b"durable"


def test_keep_keeps_unsynced_writes() -> None:
    assert with_unsynced_overwrite().crash("keep").read_bytes("/d/f") == b"VOLATILE"


def test_drop_loses_an_unsynced_truncate() -> None:
    fs = new_fs()
    durable_file(fs, "/d/f", b"0123456789")
    fs.open("/d/f").truncate(3)
    assert fs.read_bytes("/d/f") == b"012"
    assert fs.crash("drop").read_bytes("/d/f") == b"0123456789"


def test_fsync_makes_writes_survive_drop() -> None:
    fs = with_unsynced_overwrite()
    fs.open("/d/f").fsync()
    assert fs.crash("drop").read_bytes("/d/f") == b"VOLATILE"


def test_write_bytes_edits_the_disk_durably() -> None:
    fs = new_fs()
    fs.write_bytes("/d/edited", b"by hand")
    assert fs.crash("drop").read_bytes("/d/edited") == b"by hand"


def test_the_file_system_after_a_crash_is_all_durable() -> None:
    fs = with_unsynced_overwrite()
    again = fs.crash("keep").crash("drop")
    assert again.read_bytes("/d/f") == b"VOLATILE"


# --- directory entries -------------------------------------------------------------------------------------------


def test_synced_file_whose_directory_entry_was_never_synced_disappears() -> None:
    fs = new_fs()
    handle = fs.open("/d/new", create=True)
    handle.pwrite(b"synced data", 0)
    handle.fsync()
    after = fs.crash("drop")
    assert not after.exists("/d/new")
    assert after.listdir("/d") == []


def test_directory_sync_makes_a_new_name_durable() -> None:
    fs = new_fs()
    durable_file(fs, "/d/new", b"synced data")
    assert fs.crash("drop").read_bytes("/d/new") == b"synced data"


def test_unsynced_unlink_is_undone_by_drop_and_kept_by_keep() -> None:
    def unlinked() -> FaultFileSystem:
        fs = new_fs()
        durable_file(fs, "/d/f", b"x")
        fs.unlink("/d/f")
        assert not fs.exists("/d/f")
        return fs

    assert unlinked().crash("drop").read_bytes("/d/f") == b"x"
    assert not unlinked().crash("keep").exists("/d/f")


def rename_scenario(seed: int, *, overwrite: bool) -> FaultFileSystem:
    """/d/src durable; then, unsynced: create /d/before, rename /d/src -> /d/dst, create /d/after."""
    fs = new_fs(seed)
    durable_file(fs, "/d/src", b"new content")
    if overwrite:
        durable_file(fs, "/d/dst", b"old content")
    fs.open("/d/before", create=True)
    fs.rename("/d/src", "/d/dst")
    fs.open("/d/after", create=True)
    return fs.crash("tear", seed=seed)


@pytest.mark.parametrize("overwrite", [False, True])
def test_rename_is_atomic_after_a_crash_for_every_seed(overwrite: bool) -> None:
    outcomes = set()
    for seed in SEEDS:
        after = rename_scenario(seed, overwrite=overwrite)
        names = set(after.listdir("/d"))
        renamed = "src" not in names
        assert "dst" in names or not renamed, f"seed {seed}: neither name exists: {sorted(names)}"
        if renamed:
            assert after.read_bytes("/d/dst") == b"new content", f"seed {seed}"
        else:
            assert after.read_bytes("/d/src") == b"new content", f"seed {seed}"
            assert ("dst" in names) == overwrite, f"seed {seed}: both names exist: {sorted(names)}"
            if overwrite:
                assert after.read_bytes("/d/dst") == b"old content", f"seed {seed}"
        # Directory changes reach the disk in order: a later change implies every earlier one.
        assert "after" not in names or (renamed and "before" in names), f"seed {seed}: {sorted(names)}"
        assert not renamed or "before" in names, f"seed {seed}: {sorted(names)}"
        outcomes.add((renamed, "before" in names, "after" in names))
    assert outcomes == {(False, False, False), (False, True, False), (True, True, False), (True, True, True)}


def test_rename_across_directories_is_durable_after_syncing_either_directory() -> None:
    for synced in ("/a", "/b"):
        fs = FaultFileSystem(seed=1)
        fs.makedirs("/a")
        fs.makedirs("/b")
        durable_file(fs, "/a/x", b"payload")
        fs.rename("/a/x", "/b/x")
        fs.fsync_dir(synced)
        after = fs.crash("drop")
        assert (after.exists("/a/x"), after.read_bytes("/b/x")) == (False, b"payload"), synced


def test_open_handle_follows_its_file_across_a_rename() -> None:
    fs = new_fs()
    handle = fs.open("/d/tmp", create=True)
    fs.rename("/d/tmp", "/d/final")
    handle.pwrite(b"written after the rename", 0)
    assert fs.read_bytes("/d/final") == b"written after the rename"


# --- torn writes -------------------------------------------------------------------------------------------------


def torn_overwrite(seed: int, offset: int, length: int) -> bytes:
    """8 durable sectors of OLD, overwritten with NEW at [offset, offset+length) without fsync, then torn."""
    fs = new_fs(seed)
    durable_file(fs, "/d/f", OLD * (8 * SECTOR_SIZE))
    fs.open("/d/f").pwrite(NEW * length, offset)
    return fs.crash("tear", seed=seed).read_bytes("/d/f")


def test_tear_applies_whole_sectors_only() -> None:
    patterns = set()
    for seed in SEEDS:
        data = torn_overwrite(seed, 0, 8 * SECTOR_SIZE)
        assert len(data) == 8 * SECTOR_SIZE
        sectors = [data[i : i + SECTOR_SIZE] for i in range(0, len(data), SECTOR_SIZE)]
        for number, sector in enumerate(sectors):
            assert sector in (OLD * SECTOR_SIZE, NEW * SECTOR_SIZE), f"seed {seed}: sector {number} is mixed"
        patterns.add(tuple(s[0] for s in sectors))
    assert len(patterns) > 32, "tearing must choose sectors independently"


def test_tear_of_an_unaligned_write_never_splits_a_sector() -> None:
    start, length = 100, 2 * SECTOR_SIZE + 50  # touches sectors 0..2, partly 0 and 2
    for seed in SEEDS:
        data = torn_overwrite(seed, start, length)
        for first in range(0, 3 * SECTOR_SIZE, SECTOR_SIZE):
            lo, hi = max(first, start), min(first + SECTOR_SIZE, start + length)
            written = data[lo:hi]
            assert written in (OLD * (hi - lo), NEW * (hi - lo)), f"seed {seed}: sector {first // SECTOR_SIZE}"
        assert data[:start] == OLD * start
        assert data[start + length :] == OLD * (8 * SECTOR_SIZE - start - length)


# --- failed fsync and a full disk ----------------------------------------------------------------------------------


def test_fail_fsync_raises_eio_once_and_the_data_stays_unsynced() -> None:
    fs = with_unsynced_overwrite()
    fs.fail_fsync()
    handle = fs.open("/d/f")
    with pytest.raises(OSError, match="Input/output error") as info:
        handle.fsync()
    assert info.value.errno == errno.EIO
    assert fs.crash("drop").read_bytes("/d/f") == b"durable"


def test_a_failed_fsync_loses_the_unsynced_writes_for_good_as_linux_does() -> None:
    # Linux marks the pages clean after a failed writeback and reports the error once: the program still
    # reads its writes, the next fsync succeeds, and yet the disk never gets them.
    fs = with_unsynced_overwrite()
    fs.fail_fsync()
    handle = fs.open("/d/f")
    with pytest.raises(OSError, match="Input/output error"):
        handle.fdatasync()
    assert handle.pread(100, 0) == b"VOLATILE"
    handle.fdatasync()
    assert fs.copy().read_bytes("/d/f") == b"VOLATILE"  # a process crash keeps the page cache
    assert fs.crash("drop").read_bytes("/d/f") == b"durable"


def test_writes_after_a_failed_fsync_are_made_durable_by_the_next_one() -> None:
    fs = with_unsynced_overwrite()
    fs.fail_fsync()
    handle = fs.open("/d/f")
    with pytest.raises(OSError, match="Input/output error"):
        handle.fsync()
    handle.pwrite(b"X", 0)
    handle.fsync()
    assert fs.crash("drop").read_bytes("/d/f") == b"Xurable"


def test_fail_fsync_for_a_path_spares_other_files_and_hits_a_directory() -> None:
    fs = new_fs()
    fs.fail_fsync("/d")
    fs.makedirs("/x")
    fs.open("/x/f", create=True).fsync()  # "/x/f" does not contain "/d"
    with pytest.raises(OSError, match="Input/output error") as info:
        fs.fsync_dir("/d")
    assert info.value.errno == errno.EIO
    fs.fsync_dir("/d")


def test_capacity_raises_enospc_and_writes_nothing() -> None:
    fs = new_fs(capacity=1000)
    handle = fs.open("/d/f", create=True)
    handle.pwrite(b"a" * 900, 0)
    assert fs.free_space("/d") == 100
    with pytest.raises(OSError, match="No space left on device") as info:
        handle.pwrite(b"b" * 200, 850)
    assert info.value.errno == errno.ENOSPC
    assert fs.read_bytes("/d/f") == b"a" * 900
    with pytest.raises(OSError, match="No space left on device"):
        handle.truncate(1001)
    handle.pwrite(b"c" * 100, 900)  # exactly full is allowed
    handle.pwrite(b"d" * 10, 0)  # overwriting needs no space
    assert fs.free_space("/d") == 0
    assert fs.crash("keep").read_bytes("/d/f") == b"d" * 10 + b"a" * 890 + b"c" * 100


def test_an_allocation_that_runs_out_of_space_keeps_what_it_got_as_ext4_does() -> None:
    fs = new_fs(capacity=1000)
    handle = fs.open("/d/f", create=True)
    handle.pwrite(b"a" * 600, 0)
    with pytest.raises(OSError, match="No space left on device"):
        handle.allocate(600, 1000)
    assert handle.size() == 1000
    assert fs.free_space("/d") == 0
    handle.truncate(600)  # what gives the space back
    assert fs.free_space("/d") == 400
    assert fs.read_bytes("/d/f") == b"a" * 600


# --- crash points and the crashed state ------------------------------------------------------------------------------


def test_armed_crash_point_fires_on_its_nth_visit() -> None:
    fs = new_fs()
    fs.arm_crash("log.roll.after_new_header", after=2)
    fs.crash_point("log.roll.after_new_header")
    fs.crash_point("other.point")
    fs.crash_point("log.roll.after_new_header")
    with pytest.raises(SimulatedCrash, match=r"^log\.roll\.after_new_header$"):
        fs.crash_point("log.roll.after_new_header")
    assert fs.points_seen == ["log.roll.after_new_header", "other.point"] + ["log.roll.after_new_header"] * 2


def test_simulated_crash_is_not_an_exception_an_engine_handler_could_swallow() -> None:
    assert not issubclass(SimulatedCrash, Exception)


def test_crashed_file_system_refuses_every_further_call() -> None:
    fs = new_fs()
    handle = fs.open("/d/f", create=True)
    fs.crash("keep")
    calls = [
        lambda: fs.open("/d/f"),
        lambda: fs.exists("/d/f"),
        lambda: fs.stat("/d/f"),
        lambda: fs.listdir("/d"),
        lambda: fs.rename("/d/f", "/d/g"),
        lambda: fs.unlink("/d/f"),
        lambda: fs.fsync_dir("/d"),
        lambda: fs.crash_point("anything"),
        lambda: handle.pread(1, 0),
        lambda: handle.pwrite(b"x", 0),
        lambda: handle.fsync(),
        lambda: handle.size(),
    ]
    for call in calls:
        with pytest.raises(SimulatedCrash):
            call()


def test_a_fired_crash_point_also_crashes_the_file_system() -> None:
    fs = new_fs()
    fs.arm_crash("p")
    with pytest.raises(SimulatedCrash):
        fs.crash_point("p")
    with pytest.raises(SimulatedCrash):
        fs.open("/d/f", create=True)


def test_unknown_crash_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown crash mode 'melt'"):
        new_fs().crash("melt")


def test_copy_is_an_independent_image_and_the_original_goes_on() -> None:
    fs = with_unsynced_overwrite()
    image = fs.copy()
    fs.open("/d/f").pwrite(b"LATER", 0)
    assert image.read_bytes("/d/f") == b"VOLATILE"
    assert fs.read_bytes("/d/f") == b"LATERILE"


# --- the rest of the FileSystem interface ---------------------------------------------------------------------------


def test_read_only_handle_refuses_writes() -> None:
    fs = new_fs()
    durable_file(fs, "/d/f", b"x")
    with pytest.raises(OSError, match="write on a file opened read-only") as info:
        fs.open("/d/f", readonly=True).pwrite(b"y", 0)
    assert info.value.errno == errno.EBADF


def test_open_modes() -> None:
    fs = new_fs()
    with pytest.raises(FileNotFoundError):
        fs.open("/d/missing")
    fs.open("/d/f", exclusive=True)
    with pytest.raises(FileExistsError):
        fs.open("/d/f", exclusive=True)
    with pytest.raises(FileNotFoundError):
        fs.open("/nodir/f", create=True)


def test_lock_is_exclusive_until_released() -> None:
    fs = new_fs()
    lock = fs.lock("/d/E00.lock", "first")
    with pytest.raises(StorageGroupBusyError):
        fs.lock("/d/E00.lock", "second")
    lock.release()
    fs.lock("/d/E00.lock", "second").release()


def test_fail_fsync_after_lets_that_many_matching_fsyncs_through_first() -> None:
    fs = FaultFileSystem()
    fs.makedirs("/d")
    fs.fsyncs_seen.clear()  # makedirs synced "/"
    a, b = fs.open("/d/a", create=True), fs.open("/d/b", create=True)
    fs.fail_fsync("/d/a", after=2)
    b.fsync()  # does not match: not counted
    a.fsync()
    a.fsync()
    with pytest.raises(OSError, match="Input/output error"):
        a.fsync()
    a.fsync()  # fired once
    assert fs.fsyncs_seen == ["/d/b", "/d/a", "/d/a", "/d/a", "/d/a"]


# --- new folders --------------------------------------------------------------------------------------------------


def test_a_folder_made_by_makedirs_survives_a_power_loss_with_its_durable_files() -> None:
    fs = new_fs()
    fs.makedirs("/d/e/f")
    durable_file(fs, "/d/e/f/x", b"kept")
    after = fs.crash("drop")
    assert after.listdir("/d/e/f") == ["x"]
    assert after.read_bytes("/d/e/f/x") == b"kept"


def test_a_new_folder_whose_parent_was_never_synced_is_lost_with_everything_in_it() -> None:
    fs = new_fs()
    fs.fail_fsync("/d")  # the sync of /d, which would make /d/e durable, fails
    with pytest.raises(OSError, match="Input/output error"):
        fs.makedirs("/d/e/f")
    durable_file(fs, "/d/e/f/x", b"synced, but in a folder that is not")
    after = fs.crash("drop")
    assert after.listdir("/d") == []
    assert not after.exists("/d/e/f/x")


def test_keep_keeps_a_new_folder_whose_parent_was_never_synced() -> None:
    fs = new_fs()
    fs.fail_fsync("/d")
    with pytest.raises(OSError, match="Input/output error"):
        fs.makedirs("/d/e")
    assert fs.crash("keep").listdir("/d") == ["e"]


def test_removing_a_folder_that_never_became_durable_forgets_it() -> None:
    fs = new_fs()
    fs.fail_fsync("/d")
    with pytest.raises(OSError, match="Input/output error"):
        fs.makedirs("/d/e")
    fs.rmdir("/d/e")
    fs.makedirs("/d/e")  # durable this time
    assert fs.crash("drop").listdir("/d") == ["e"]


# --- locks --------------------------------------------------------------------------------------------------------


def test_a_lock_writes_its_owner_into_its_file_as_the_real_one_does() -> None:
    fs = new_fs()
    lock = fs.lock("/d/E00.lock", "pid 7 (mount)")
    assert fs.read_bytes("/d/E00.lock") == b"pid 7 (mount)\n"
    assert lock.path_intact()
    fs.rename("/d/E00.lock", "/d/moved")
    assert not lock.path_intact()


def test_locked_lets_one_thread_in_at_a_time() -> None:
    fs = new_fs()
    inside, second_in, second_trying = threading.Event(), threading.Event(), threading.Event()

    def second() -> None:
        second_trying.set()
        with fs.locked("/d/events.lock"):
            second_in.set()

    with fs.locked("/d/events.lock"):
        inside.set()
        thread = threading.Thread(target=second)
        thread.start()
        assert second_trying.wait(timeout=30)
        assert not second_in.wait(timeout=0.2), "a second thread got in while the first held the lock"
    thread.join(timeout=30)
    assert second_in.is_set()
    assert fs.exists("/d/events.lock")
