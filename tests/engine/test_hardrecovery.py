"""Hard recovery on its own: store copies from a backup session, logs copied beside them, replay to a stop.

The live storage group commits transactions ``k1..kN`` (one per commit, each in the Mailbox Store), a full
backup session copies the stores, more commits follow across several generations; the copies and the closed
logs are put in a staging folder that a never-mounted storage group object names.
"""

from __future__ import annotations

import itertools
import os

import pytest

from shadowstore.config import SgConfig, StoreConfig
from shadowstore.engine.hardrecovery import ReplayLog, Stop, hard_recover
from shadowstore.engine.logstream import LogSet
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.errors import (
    DatabaseLogSetMismatchError,
    MissingRestoreLogFilesError,
    RestoreError,
)
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN
from shadowstore.format.logfile import archived_log_name
from shadowstore.home import ServerHome
from shadowstore.io.blockread import owned
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.restore.place import replace_log_stream
from tests.conftest import fault_home

STAGES = itertools.count(1)


class Scene:
    """A backed-up home with commits after the backup; ``times[i]`` is the commit time of ``k<i+1>``."""

    def __init__(self) -> None:
        self.fs = FaultFileSystem(seed=5)
        self.home = fault_home(self.fs)
        self.sg = self.home.storage_group()
        self.sg.mount()
        self.times: list[int] = []
        self.commit(20)
        with self.sg.begin_backup("full", owner="test") as session:
            self.copies = {}
            for store in session.databases():
                with session.open_database(store) as copy:
                    self.copies[os.path.basename(store.path)] = b"".join(owned(copy.chunks()))
            self.backup_logs = {gen: session.read_log(gen) for gen in session.prepare_logs().copy}
            session.complete()  # truncates the live logs the backup holds
        self.at_backup = len(self.times)
        self.generation_ends: dict[int, int] = {}  # generation -> commits made before it was closed
        for _ in range(4):
            self.commit(30)
            self.generation_ends[self.sg.log.disk_generation] = len(self.times)
            self.sg.log.roll()
        self.sg.log.flush()
        self.sg.dismount()

    def commit(self, count: int) -> None:
        store = self.sg.store("Mailbox Store")
        for _ in range(count):
            n = len(self.times) + 1
            with store.transaction() as tx:
                if not tx.has_table("t"):
                    tx.create_table("t")
                tx.put("t", b"k%04d" % n, b"v%d" % n * 30)
            assert tx.commit_time_us is not None
            self.times.append(tx.commit_time_us)

    def staged(self) -> tuple[StorageGroup, list[ReplayLog]]:
        """The copies and every archived log in a new staging folder, and a storage group object naming them."""
        stage = f"/stage{next(STAGES)}"
        self.fs.makedirs(stage)
        for name, data in self.copies.items():
            self.fs.write_bytes(os.path.join(stage, name), data)
        live = self.home.storage_group().config
        archived = LogSet.scan(self.fs, live.log_dir, live.log_base).archived
        contents = {gen: self.fs.read_bytes(path) for gen, path in archived.items()} | self.backup_logs
        logs = []
        for gen in sorted(contents):
            path = os.path.join(stage, archived_log_name("E00", gen))
            self.fs.write_bytes(path, contents[gen])
            logs.append(ReplayLog(gen, path))
        config = SgConfig(
            name="staging",
            log_base="E00",
            log_dir=stage,
            system_dir=stage,
            data_dir=stage,
            stores=[StoreConfig(s.name, s.file, s.dbid) for s in live_stores(self.home)],
        )
        return StorageGroup(config, self.fs, self.home.events), logs


def live_stores(home: ServerHome) -> list[StoreConfig]:
    return home.config.find("First Storage Group").stores


def rows(scene: Scene, sg: StorageGroup) -> dict[bytes, bytes]:
    """Mount the recovered stores as a restore places them (on a new log stream) and read them."""
    replace_log_stream(scene.fs, sg.config, os.path.join(sg.config.log_dir, "quarantine"), 1)
    mounted = StorageGroup(sg.config, scene.fs, scene.home.events)
    mounted.mount()
    try:
        with mounted.stores["Mailbox Store"].snapshot() as snap:
            return dict(snap.range("t")) if snap.has_table("t") else {}
    finally:
        mounted.dismount()


def expected(commits: int) -> dict[bytes, bytes]:
    return {b"k%04d" % n: b"v%d" % n * 30 for n in range(1, commits + 1)}


def recovered(scene: Scene, stop: Stop) -> tuple[dict[bytes, bytes], object]:
    sg, logs = scene.staged()
    report = hard_recover(sg, logs, stop)
    for store in sg.stores.values():
        assert store.header is not None
        assert store.header.state == STATE_CLEAN_SHUTDOWN
        assert store.header.log_signature == sg.signature
    for store in sg.stores.values():
        store.close()
    return rows(scene, sg), report


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


def test_to_the_end_of_the_logs(scene: Scene) -> None:
    got, report = recovered(scene, Stop())
    assert got == expected(len(scene.times))
    assert report.reached_end  # type: ignore[attr-defined]


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_to_the_end_of_a_generation(scene: Scene, index: int) -> None:
    gen, commits = sorted(scene.generation_ends.items())[index]
    got, report = recovered(scene, Stop(until_gen=gen))
    assert got == expected(commits)
    assert report.stopped == f"at the end of generation {gen}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("n", [21, 35, 64, 99, 139])
def test_to_a_time_between_two_commits_and_at_a_commit(scene: Scene, n: int) -> None:
    between = (scene.times[n - 1] + scene.times[n]) // 2
    assert recovered(scene, Stop(until_us=between))[0] == expected(n)
    assert recovered(scene, Stop(until_us=scene.times[n - 1]))[0] == expected(n)


def test_a_time_before_the_copy_is_refused_and_nothing_is_written(scene: Scene) -> None:
    sg, logs = scene.staged()
    with pytest.raises(RestoreError, match="consistent only from log position"):
        hard_recover(sg, logs, Stop(until_us=scene.times[5]))
    assert all(scene.fs.read_bytes(os.path.join(sg.config.data_dir, n)) == data for n, data in scene.copies.items())


def test_a_gap_is_named_before_anything_is_written(scene: Scene) -> None:
    sg, logs = scene.staged()
    gap = logs[len(logs) // 2].generation
    with pytest.raises(MissingRestoreLogFilesError, match=f"missing: {gap}$") as err:
        hard_recover(sg, [log for log in logs if log.generation != gap], Stop())
    assert err.value.code == -557
    assert any(e.event_id == 435 for e in scene.home.events.memory)
    assert all(scene.fs.read_bytes(os.path.join(sg.config.data_dir, n)) == data for n, data in scene.copies.items())


def test_a_log_that_vanished_is_named(scene: Scene) -> None:
    sg, logs = scene.staged()
    scene.fs.unlink(logs[-1].path)
    with pytest.raises(MissingRestoreLogFilesError, match="disappeared while the restore was reading it"):
        hard_recover(sg, logs, Stop())


def test_stores_of_two_log_streams_are_refused_with_501(scene: Scene) -> None:
    sg, logs = scene.staged()
    other = fault_home(FaultFileSystem(seed=9))
    other_sg = other.storage_group()
    other_sg.mount()
    other_sg.dismount()
    pub = os.path.basename(other_sg.stores["Public Folder Store"].path)
    scene.fs.write_bytes(
        os.path.join(sg.config.data_dir, pub), other.fs.read_bytes(other_sg.stores["Public Folder Store"].path)
    )  # type: ignore[attr-defined]
    with pytest.raises(DatabaseLogSetMismatchError, match="different log streams"):
        hard_recover(sg, logs, Stop())
    assert any(e.event_id == 425 for e in scene.home.events.memory)
