"""Named crash points of a restore: cut it at an exact instant, lose or tear what was not synced, run it again.

The home lives on the fault-injecting file system; the backups on a local folder (a target survives the crash of
the machine restoring from it). After the crash the destination must never mount with a mix of restored and
unrestored stores, and running the same restore again must give exactly the backed-up data.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from shadowstore.backup import catalog
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.run import back_up
from shadowstore.errors import DiskFullError, LogDiskFullError, NotFoundError, RestoreInProgressError
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from shadowstore.restore import phases
from shadowstore.restore.plan import RestorePlan, RestoreTarget, plan_restore
from shadowstore.restore.run import INTO_PLACE, INTO_RECOVERY_GROUP, RECOVERY_SG, finish_restore, run_restore
from tests.conftest import HOME, fault_home, reopen

SG = "First Storage Group"
POINTS = [
    "restore.fetch.file",
    "restore.replay.log",
    "restore.recover.store",
    "restore.place.store",
    "restore.place.stream",
]


def commit(home: ServerHome, first: int, count: int) -> None:
    sg = home.storage_group()
    with sg.store("Mailbox Store").transaction() as tx:
        if not tx.has_table("t"):
            tx.create_table("t")
    for n in range(first, first + count):
        with sg.store("Mailbox Store").transaction() as tx:
            tx.put("t", b"k%05d" % n, b"v%d" % n * 40)
            if n % 3 == 0:
                tx.delete("t", b"k%05d" % (n - 2))
        with sg.store("Public Folder Store").transaction() as tx:
            if not tx.has_table("p"):
                tx.create_table("p")
            tx.put("p", b"p%05d" % (n % 50), b"%d" % n)


def model(upto: int) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    mail: dict[bytes, bytes] = {}
    public: dict[bytes, bytes] = {}
    for n in range(1, upto + 1):
        mail[b"k%05d" % n] = b"v%d" % n * 40
        if n % 3 == 0:
            mail.pop(b"k%05d" % (n - 2), None)
        public[b"p%05d" % (n % 50)] = b"%d" % n
    return mail, public


def read(home: ServerHome, sg_name: str) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    sg = home.storage_group(sg_name)
    sg.mount()
    try:
        with sg.store("Mailbox Store").snapshot() as a, sg.store("Public Folder Store").snapshot() as b:
            return dict(a.range("t")), dict(b.range("p"))
    finally:
        sg.dismount()


@pytest.fixture
def backed_up(tmp_path: os.PathLike[str]) -> tuple[FaultFileSystem, LocalTarget, RestorePlan]:
    """A home with 300 transactions in a full and an incremental backup and 100 more only in its logs."""
    fs = FaultFileSystem(seed=7)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    target = LocalTarget(os.path.join(tmp_path, "backups"))
    commit(home, 1, 200)
    back_up(home, SG, "full", target)
    commit(home, 201, 100)
    back_up(home, SG, "incremental", target)
    commit(home, 301, 100)
    sg.dismount()
    plan = plan_restore(catalog.list_sets(target, SG, home=home.home_id), RestoreTarget.latest(), sg=SG)
    assert len(plan.logs) >= 3, "the restore should replay several generations"
    return fs, target, plan


@pytest.mark.parametrize(("mode", "seed"), [("drop", 0), ("tear", 1)])
@pytest.mark.parametrize("into", [INTO_RECOVERY_GROUP, INTO_PLACE])
@pytest.mark.parametrize("point", POINTS)
def test_a_restore_cut_at_a_crash_point_finishes_when_run_again(
    backed_up: tuple[FaultFileSystem, LocalTarget, RestorePlan], point: str, into: str, mode: str, seed: int
) -> None:
    fs, target, plan = backed_up
    fs.arm_crash(point, after=1 if point == "restore.replay.log" else 0)
    with pytest.raises(SimulatedCrash):
        run_restore(reopen(fs), target, plan, into=into)
    after = fs.crash(mode, seed)
    home = reopen(after)
    dest = SG if into == INTO_PLACE else RECOVERY_SG
    if point.startswith("restore.place"):
        with pytest.raises(RestoreInProgressError, match="interrupted while putting its files in place"):
            home.storage_group(dest).mount()
    elif into == INTO_PLACE:
        # nothing of the live storage group changed yet: it still mounts with its newer data
        assert read(home, SG) == model(400)
    outcome = run_restore(home, target, plan, into=into)
    assert outcome.resumed
    assert read(home, dest) == model(300)
    for store in home.storage_group(dest).stores.values():
        store.open()
        assert store.header is not None
        assert store.header.state == STATE_CLEAN_SHUTDOWN
        store.close()
    assert not after.exists(os.path.join(home.storage_group(dest).config.system_dir, "restore"))


def test_a_crash_point_is_reached_in_every_phase(backed_up: tuple[FaultFileSystem, LocalTarget, RestorePlan]) -> None:
    fs, target, plan = backed_up
    run_restore(reopen(fs), target, plan, into=INTO_PLACE)
    assert set(POINTS) <= set(fs.points_seen)


@pytest.mark.parametrize("into", [INTO_RECOVERY_GROUP, INTO_PLACE])
@pytest.mark.parametrize("point", POINTS)
def test_an_interrupted_restore_is_finished_or_cleaned_up_without_the_target(
    backed_up: tuple[FaultFileSystem, LocalTarget, RestorePlan], point: str, into: str, tmp_path: os.PathLike[str]
) -> None:
    fs, target, plan = backed_up
    fs.arm_crash(point)
    with pytest.raises(SimulatedCrash):
        run_restore(reopen(fs), target, plan, into=into)
    home = reopen(fs.crash("drop"))
    os.rename(os.path.join(tmp_path, "backups"), os.path.join(tmp_path, "gone"))  # the target is unreachable
    dest = SG if into == INTO_PLACE else RECOVERY_SG
    if point.startswith("restore.place"):
        outcome = finish_restore(home, dest)
        assert outcome is not None
        assert outcome.resumed
        assert read(home, dest) == model(300)
    else:
        assert finish_restore(home, dest) is None
        if into == INTO_PLACE:
            assert read(home, SG) == model(400)  # untouched
        else:
            assert RECOVERY_SG not in {g.name for g in home.config.storage_groups}
            with pytest.raises(NotFoundError, match="no restore into"):
                finish_restore(home, dest)
    assert not home.fs.exists(os.path.join(HOME, dest, "restore"))


def test_a_disk_without_room_for_the_copies_is_refused_before_anything_is_copied(
    backed_up: tuple[FaultFileSystem, LocalTarget, RestorePlan],
) -> None:
    fs, target, plan = backed_up
    fs.capacity = 1 << 40
    fs.capacity = (1 << 40) - fs.free_space("/") + 200_000  # 200 kB left
    home = reopen(fs)
    with pytest.raises(DiskFullError, match=r"the restore needs [\d,]+ bytes in .* but only [\d,]+ are free"):
        run_restore(home, target, plan, into=INTO_PLACE)
    assert read(home, SG) == model(400)  # nothing changed
    fs.capacity = None
    run_restore(home, target, plan, into=INTO_PLACE)
    assert read(home, SG) == model(300)


def test_a_disk_that_fills_during_the_copy_fails_cleanly_and_frees_the_copies(
    backed_up: tuple[FaultFileSystem, LocalTarget, RestorePlan], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, target, plan = backed_up
    fs.capacity = 1 << 40
    fs.capacity = (1 << 40) - fs.free_space("/") + 300_000
    monkeypatch.setattr(fs, "free_space", lambda path: 1 << 40)  # a file system that overstates its room
    home = reopen(fs)
    with pytest.raises(DiskFullError, match="the disk filled while restoring in") as err:
        run_restore(home, target, plan, into=INTO_PLACE)
    assert "run the restore again" in err.value.hint
    assert not fs.exists(os.path.join(HOME, SG, "restore"))
    assert read(home, SG) == model(400)


@pytest.mark.parametrize("into", [INTO_PLACE, INTO_RECOVERY_GROUP])
@pytest.mark.parametrize("room", [20_000, 60_000, 120_000, 250_000])
def test_a_disk_that_fills_after_the_copy_fails_with_a_named_error_and_a_way_on(
    backed_up: tuple[FaultFileSystem, LocalTarget, RestorePlan],
    monkeypatch: pytest.MonkeyPatch,
    into: str,
    room: int,
) -> None:
    """The copies fit, then the replay, the stores' checkpoint or the placement runs out of room; the hint
    says how to go on with the restore (the engine's own hints speak of mounting)."""
    fs, target, plan = backed_up
    fetched = sum(d.entry.size for d in plan.databases) + sum(log.entry.size for log in plan.logs)
    fs.capacity = 1 << 40
    fs.capacity = (1 << 40) - fs.free_space("/") + fetched + room
    monkeypatch.setattr(fs, "free_space", lambda path: 1 << 40)
    home = reopen(fs)
    dest = SG if into == INTO_PLACE else RECOVERY_SG
    with pytest.raises((DiskFullError, LogDiskFullError)) as err:  # a store's disk, or the new log stream's
        run_restore(home, target, plan, into=into)
    placing = fs.exists(os.path.join(HOME, dest, "restore", "restore.json"))  # only a placement keeps it
    expected = f"run 'shadowstore restore finish --sg {dest!r}'" if placing else "run the restore again"
    assert err.value.hint.startswith("free space ")
    assert err.value.hint.endswith(expected)
    fs.capacity = None
    home = reopen(fs)
    if placing:
        finish_restore(home, dest)
    else:
        run_restore(home, target, plan, into=into)
    assert read(home, dest) == model(300)


def test_rolling_forward_from_a_mounted_storage_group_whose_log_rolls_meanwhile(
    backed_up: tuple[FaultFileSystem, LocalTarget, RestorePlan], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live storage group commits and rolls its log while the restore lists its logs: the restore rolls
    forward to the point of the live stream it read, not into a generation that moved (-557 or -513 before)."""
    fs, target, _ = backed_up
    home = reopen(fs)
    live = home.storage_group(SG)
    live.mount()
    sets = catalog.list_sets(target, SG, home=home.home_id)
    plan = plan_restore(sets, RestoreTarget.latest(), sg=SG, roll_forward_live=True)
    original = phases.LogSet.scan
    rolls = []

    def scan_then_roll(fs: Any, log_dir: str, base: str) -> Any:
        found = original(fs, log_dir, base)
        if not rolls:  # once: right after the restore listed the live folder
            commit(home, 401, 20)
            rolls.append(live.log.roll())
            commit(home, 421, 20)
        return found

    monkeypatch.setattr(phases.LogSet, "scan", scan_then_roll)
    outcome = run_restore(home, target, plan, into=INTO_RECOVERY_GROUP)
    assert rolls, "the live log rolled during the restore"
    # the current log was read before the folder was listed (and before the roll): 400 transactions
    assert read(home, RECOVERY_SG) == model(400), outcome
    live.dismount()
    assert read(home, SG) == model(440)  # the live storage group went on untouched
