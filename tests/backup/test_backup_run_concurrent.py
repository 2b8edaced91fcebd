"""The backup program while commits continue and checkpoints run: every set it lists restores.

The first test is deterministic: the target is slow (the progress callback runs commits, rolls and a
checkpoint while a store is being copied). The second runs as production does: the default maintenance
policy checkpoints by itself while a writer thread commits, on the real file system.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from shadowstore.backup import catalog
from shadowstore.backup.fsspectarget import FsspecTarget
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.run import back_up
from shadowstore.backup.target import Target
from shadowstore.backup.verify import verify_set
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.restore.plan import RestoreTarget, plan_restore
from shadowstore.restore.run import INTO_RECOVERY_GROUP, RECOVERY_SG, run_restore
from tests.conftest import fault_home

SG = "First Storage Group"


def restore_keys(home: ServerHome, target: Target, backup_id: str) -> set[bytes]:
    """Restore the set ``backup_id`` (to the end of its own logs) into the recovery storage group; its keys."""
    sets = catalog.list_sets(target, SG, home=home.home_id)
    last_gen = next(s.manifest.last_gen for s in sets if s.backup_id == backup_id and s.manifest is not None)
    plan = plan_restore(sets, RestoreTarget.at_generation(last_gen), sg=SG)
    run_restore(home, target, plan, into=INTO_RECOVERY_GROUP)
    rsg = home.storage_group(RECOVERY_SG)
    rsg.mount()
    try:
        with rsg.store("Mailbox Store").snapshot() as snap:
            return {key for key, _value in snap.range("t")}
    finally:
        rsg.dismount()


def test_a_full_backup_with_checkpoints_during_the_copy_verifies_and_restores() -> None:
    home = fault_home(FaultFileSystem(seed=5))
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    committed: list[bytes] = []

    def commit(count: int) -> None:
        for _ in range(count):
            key = b"k%06d" % len(committed)
            with store.transaction() as tx:
                if not tx.has_table("t"):
                    tx.create_table("t")
                tx.put("t", key, b"v" * 300)
            committed.append(key)

    commit(200)
    busy = [True]

    def slow_target(name: str, done: int, size: int | None, total: int) -> None:
        if busy[0] and name.endswith(".edb"):  # while the first store is copied: load, rolls, a checkpoint
            busy[0] = False
            for _ in range(3):
                commit(60)
                sg.log.roll()
                sg.log.flush()
            sg.checkpoint()

    target = FsspecTarget(f"memory://{uuid.uuid4().hex}/target")
    before = len(committed)
    outcome = back_up(home, SG, "full", target, progress=slow_target)
    assert not busy[0]
    report = verify_set(target, outcome.backup_id)
    assert report.ok, [str(p) for p in report.errors]
    assert set(committed[:before]) <= restore_keys(home, target, outcome.backup_id)
    home.close()


def test_full_backups_while_a_writer_commits_and_maintenance_checkpoints_by_itself(tmp_path: os.PathLike[str]) -> None:
    home = ServerHome.init(os.path.join(tmp_path, "home"), log_file_size=64 * 1024, policy=MaintenancePolicy())
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
        for i in range(400):
            tx.put("t", b"p%05d" % i, os.urandom(2000))
    committed: list[bytes] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            key = b"k%07d" % len(committed)
            with store.transaction() as tx:
                tx.put("t", key, b"v" * 300)
            committed.append(key)
            stop.wait(0.0005)  # a steady load rather than the fastest possible one

    def slow(name: str, done: int, size: int | None, total: int) -> None:
        if name.endswith(".edb"):
            time.sleep(0.3)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for n in range(3):
            target = LocalTarget(os.path.join(tmp_path, f"target{n}"))
            before = len(committed)
            # a slow target: each chunk of a store takes a while, so the maintenance thread checkpoints meanwhile
            outcome = back_up(home, SG, "full", target, progress=slow)
            report = verify_set(target, outcome.backup_id)
            assert report.ok, f"backup {n}: {[str(p) for p in report.errors]}"
            assert set(committed[:before]) <= restore_keys(home, target, outcome.backup_id), f"backup {n}"
    finally:
        stop.set()
        thread.join()
        home.close()
