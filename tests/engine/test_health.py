"""Log stream health: logs deleted, moved or replaced while a storage group is mounted."""

from __future__ import annotations

import os
import time

from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.format.logfile import archived_log_name
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem
from tests.conftest import HOME, QUIET, fault_home, reopen

SG_DIR = os.path.join(HOME, "First Storage Group")


def log_path(gen: int, base_dir: str = SG_DIR) -> str:
    return os.path.join(base_dir, archived_log_name("E00", gen))


def mounted_with_generations(fs: FaultFileSystem, rolls: int = 4) -> ServerHome:
    """A mounted home whose checkpoint is in generation 1 while generations 2.. hold committed data.

    Quiet maintenance even in the production pass: its defaults checkpoint every 4 generations, which would
    take away the situation these tests need. The same finding with the production defaults, through the
    command line, is tests/backup/test_backup_run.py::test_scenario_2_logs_above_the_checkpoint_deleted_..."""
    home = fault_home(fs, policy=QUIET)
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
    sg.checkpoint()
    for r in range(rolls):
        with store.transaction() as tx:
            tx.put("t", b"gen-%d" % r, b"x" * 300)
        sg.log.roll()
        sg.log.flush()
    maintenance = sg._maintenance
    assert maintenance is not None
    maintenance.run_cycles(1)  # records the identity of the closed generations
    assert sg.checkpoint_position.gen == 1
    return home


def cycle(home: ServerHome) -> None:
    maintenance = home.storage_group()._maintenance
    assert maintenance is not None
    assert maintenance.run_cycles(1)


def all_keys(home: ServerHome) -> dict[bytes, bytes]:
    with home.storage_group().store("Mailbox Store").snapshot() as snap:
        return dict(snap.range("t"))


def test_deleting_a_log_recovery_needs_advances_the_checkpoint() -> None:
    fs = FaultFileSystem(seed=11)
    home = mounted_with_generations(fs)
    sg = home.storage_group()
    expected = all_keys(home)
    fs.unlink(log_path(3))
    cycle(home)
    removed = [e for e in home.events.memory if e.event_id == 1011]
    assert removed
    assert "generation 3" in removed[-1].description
    assert "Crash recovery needed it" in removed[-1].description
    advanced = [e for e in home.events.memory if e.event_id == 1012]
    assert advanced
    assert "no longer needs log generations 1-3" in advanced[-1].description
    assert sg.checkpoint_position.gen > 3
    assert sg.store("Mailbox Store").header.log_required_min > 3  # type: ignore[union-attr]
    # A crash right after loses nothing, although generation 3 is gone.
    after = reopen(fs.crash("keep"))
    after.storage_group().mount()
    assert all_keys(after) == expected
    after.storage_group().dismount()


def test_a_log_deleted_the_instant_it_is_closed_is_still_noticed() -> None:
    """The file vanishes between the roll's rename and the storage group's first look at it: the engine knows
    it existed from the open file, so the next check still finds it missing."""
    fs = FaultFileSystem(seed=12)
    home = mounted_with_generations(fs)
    sg = home.storage_group()
    store = sg.store("Mailbox Store")
    sg.log.on_roll.insert(0, lambda generation, closed: fs.unlink(log_path(generation - 1)))
    with store.transaction() as tx:
        tx.put("t", b"last", b"y" * 300)
    sg.log.roll()
    sg.log.flush()
    closed = sg.log.generation - 1
    assert not fs.exists(log_path(closed))
    cycle(home)
    removed = [e for e in home.events.memory if e.event_id == 1011]
    assert any(f"generation {closed})" in e.description for e in removed)
    assert sg.checkpoint_position.gen > closed


def test_deleting_the_current_log_keeps_its_records() -> None:
    fs = FaultFileSystem(seed=12)
    home = mounted_with_generations(fs)
    sg = home.storage_group()
    store = sg.store("Mailbox Store")
    gen = sg.log.disk_generation
    fs.unlink(os.path.join(SG_DIR, "E00.log"))
    for i in range(5):  # committed into the deleted file before anyone noticed
        with store.transaction() as tx:
            tx.put("t", b"late-%d" % i, b"y" * 100)
    expected = all_keys(home)
    cycle(home)
    assert fs.exists(os.path.join(SG_DIR, "E00.log"))
    assert fs.exists(log_path(gen)), "the deleted generation is written back from the open file"
    assert sg.log.disk_generation == gen + 1
    assert sg.checkpoint_position.gen == gen + 1
    ids = [e.event_id for e in home.events.memory]
    assert 1011 in ids
    assert 1012 in ids
    after = reopen(fs.crash("keep"))
    after.storage_group().mount()
    assert all_keys(after) == expected
    after.storage_group().dismount()


def test_replacing_the_current_log_quarantines_the_stranger() -> None:
    fs = FaultFileSystem(seed=13)
    home = mounted_with_generations(fs)
    sg = home.storage_group()
    gen = sg.log.disk_generation
    stranger = b"not a log at all" * 100
    fs.write_bytes(os.path.join(SG_DIR, "E00.tmp-user"), stranger)
    fs.rename(os.path.join(SG_DIR, "E00.tmp-user"), os.path.join(SG_DIR, "E00.log"))
    expected = all_keys(home)
    cycle(home)
    assert any(e.event_id == 1010 for e in home.events.memory)
    quarantined = fs.listdir(os.path.join(SG_DIR, "quarantine"))
    assert len(quarantined) == 1
    assert quarantined[0].startswith("E00.log.")
    assert fs.read_bytes(os.path.join(SG_DIR, "quarantine", quarantined[0])) == stranger
    assert fs.exists(log_path(gen))
    after = reopen(fs.crash("keep"))
    after.storage_group().mount()
    assert all_keys(after) == expected
    after.storage_group().dismount()


def test_a_log_below_the_checkpoint_changed_is_reported_without_a_checkpoint() -> None:
    fs = FaultFileSystem(seed=14)
    home = mounted_with_generations(fs)
    sg = home.storage_group()
    sg.checkpoint()
    before = sg.checkpoint_position
    data = bytearray(fs.read_bytes(log_path(1)))
    data[5000] ^= 0xFF
    fs.write_bytes(log_path(1), bytes(data))
    cycle(home)
    replaced = [e for e in home.events.memory if e.event_id == 1010]
    assert replaced
    assert "generation 1" in replaced[-1].description
    assert not [e for e in home.events.memory if e.event_id == 1012]
    assert sg.checkpoint_position == before
    cycle(home)
    assert len([e for e in home.events.memory if e.event_id == 1010]) == 1, "each problem is reported once"
    sg.dismount()


def test_deleted_log_is_noticed_within_seconds_on_a_real_disk(tmp_path: os.PathLike[str]) -> None:
    """Real file system, real maintenance thread at its default interval: no test hooks drive it."""
    home = ServerHome.init(os.path.join(tmp_path, "home"), log_file_size=64 * 1024, policy=MaintenancePolicy())
    sg = home.storage_group()
    sg.mount()
    try:
        store = sg.store("Mailbox Store")
        with store.transaction() as tx:
            tx.create_table("t")
        sg.checkpoint()
        for _ in range(3):
            with store.transaction() as tx:
                tx.put("t", os.urandom(8), b"z" * 200)
            sg.log.roll()
            sg.log.flush()
        victim = log_path(2, sg.config.log_dir)
        marker = len(home.events.memory)
        started = time.monotonic()
        os.unlink(victim)
        event = home.events.wait_for(1012, timeout=10.0, after=marker)
        elapsed = time.monotonic() - started
        assert event is not None, "the deletion was not noticed within 10 seconds"
        assert elapsed < 10.0
        assert sg.checkpoint_position.gen > 2
    finally:
        sg.dismount()
