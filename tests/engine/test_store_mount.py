"""One store dismounted and mounted again while its storage group stays mounted (engine/storemount.py): writers
on the other store go on, backups and restores with a store dismounted, crashes at each step, a store in Dirty
Shutdown refused, a full data disk, and the refusals."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

import pytest

from shadowstore.backup import catalog
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.run import back_up
from shadowstore.engine.checkpointfile import read_checkpoint
from shadowstore.engine.dbfile import DatabaseFile
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.engine.store import Store
from shadowstore.errors import (
    BackupInProgressError,
    DatabaseDirtyShutdownError,
    DiskFullError,
    InvalidParameterError,
    NotFoundError,
    NotMountedError,
    TransactionAbortedError,
)
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN, STATE_DIRTY_SHUTDOWN
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from shadowstore.restore.plan import RestoreTarget, plan_restore
from shadowstore.restore.run import INTO_PLACE, INTO_RECOVERY_GROUP, RECOVERY_SG, run_restore
from tests.conftest import QUIET, fault_home, reopen

SG = "First Storage Group"
MAIL, PUBLIC = "Mailbox Store", "Public Folder Store"
MODES = [("drop", 0), ("tear", 1), ("tear", 2)]

Rows = dict[bytes, bytes]


def put_rows(store: Store, first: int, count: int, tag: bytes) -> Rows:
    """Commit ``count`` transactions of one row each into table "t" of ``store``; returns the rows."""
    rows: Rows = {}
    for n in range(first, first + count):
        key, value = tag + b"%05d" % n, tag + b"-%d" % n * (5 + n % 40)
        with store.transaction() as tx:
            if not tx.has_table("t"):
                tx.create_table("t")
            tx.put("t", key, value)
        rows[key] = value
    return rows


def read(store: Store) -> Rows:
    with store.snapshot() as snap:
        return dict(snap.range("t")) if snap.has_table("t") else {}


def event_ids(home: ServerHome) -> list[int]:
    return [e.event_id for e in home.events.memory]


def attached_names(sg: StorageGroup) -> list[str]:
    """The stores E00.chk names as attached."""
    return [info.name for info in read_checkpoint(sg.fs, sg.checkpoint_path)[0].attached]


class Writers:
    """Threads committing rows into one store until stopped; what they had acknowledged is ``acknowledged``."""

    def __init__(self, store: Store, threads: int = 3) -> None:
        self.store = store
        self.acknowledged: Rows = {}
        self.errors: list[BaseException] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        with store.transaction() as tx:
            if not tx.has_table("t"):
                tx.create_table("t")
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self, index: int) -> None:
        n = 0
        try:
            while not self._stop.is_set():
                key, value = b"w%d-%06d" % (index, n), b"%d" % n * 60
                with self.store.transaction() as tx:
                    tx.put("t", key, value)
                with self._cond:
                    self.acknowledged[key] = value
                    self._cond.notify_all()
                n += 1
        except BaseException as exc:
            with self._cond:
                self.errors.append(exc)
                self._cond.notify_all()

    def wait_for_more(self, commits: int, timeout: float = 60.0) -> None:
        """Wait until ``commits`` more commits were acknowledged (raises if a writer failed or it takes too long)."""
        with self._cond:
            target = len(self.acknowledged) + commits
            done = self._cond.wait_for(lambda: len(self.acknowledged) >= target or self.errors, timeout)
        assert not self.errors, f"a writer failed: {self.errors[0]!r}"
        assert done, f"the writers made no progress in {timeout} s"

    def stop(self) -> Rows:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not self.errors, f"a writer failed: {self.errors[0]!r}"
        return dict(self.acknowledged)


# --- dismount and mount while the storage group stays mounted ---------------------------------------------------


def test_a_store_dismounts_and_mounts_again_while_writers_commit_to_the_other_store(home: ServerHome) -> None:
    sg = home.storage_group()
    sg.mount()
    mail, public = sg.store(MAIL), sg.store(PUBLIC)
    public_rows = put_rows(public, 0, 200, b"p")
    writers = Writers(mail)
    writers.start()
    writers.wait_for_more(100)
    first_generation = sg.log.generation
    for cycle in range(4):  # each phase spans log rolls, and with the production policy, checkpoints
        assert sg.dismount_store(PUBLIC) is True
        assert sg.mounted
        assert mail.mounted
        assert not public.mounted
        assert public.read_header().state == STATE_CLEAN_SHUTDOWN
        assert attached_names(sg) == ["priv1.edb"]
        with pytest.raises(NotMountedError, match="not mounted, while its storage group is"):
            public.transaction()
        with pytest.raises(NotMountedError):
            public.snapshot()
        writers.wait_for_more(300)  # the other store goes on
        sg.checkpoint()

        assert sg.mount_store(PUBLIC) is True
        assert public.mounted
        assert attached_names(sg) == ["priv1.edb", "pub1.edb"]
        assert read(public) == public_rows
        public_rows |= put_rows(public, 200 + 50 * cycle, 50, b"p")  # it takes writes again, beside the writers
        writers.wait_for_more(300)
    mail_rows = writers.stop()
    assert sg.log.generation >= first_generation + 4, "the phases should span log rolls"

    assert read(mail) == mail_rows
    assert read(public) == public_rows
    ids = event_ids(home)
    assert ids.count(1003) == 4  # the store's dismounts
    assert ids.count(1002) == 2 + 4  # two at the mount, then each mount_store
    sg.dismount()
    sg.mount()
    assert read(mail) == mail_rows
    assert read(public) == public_rows
    sg.dismount()


def test_a_transaction_left_open_on_the_store_is_aborted_so_that_its_dismount_goes_on() -> None:
    fs = FaultFileSystem(seed=3)
    home = fault_home(fs, policy=replace(QUIET, transaction_timeout=0.2))
    sg = home.storage_group()
    sg.mount()
    public = sg.store(PUBLIC)
    rows = put_rows(public, 0, 10, b"p")
    stalled = public.transaction()  # a client that began a write and went away
    stalled.put("t", b"never", b"committed")
    assert sg.dismount_store(PUBLIC)
    assert 1026 in event_ids(home)
    with pytest.raises(TransactionAbortedError):
        stalled.put("t", b"again", b"x")
    assert sg.mount_store(PUBLIC)
    assert read(public) == rows
    sg.dismount()


def test_dismounting_every_store_leaves_the_storage_group_mounted_with_none(home: ServerHome) -> None:
    sg = home.storage_group()
    sg.mount()
    mail_rows, public_rows = put_rows(sg.store(MAIL), 0, 20, b"m"), put_rows(sg.store(PUBLIC), 0, 20, b"p")
    assert sg.dismount_store(MAIL)
    assert sg.dismount_store(PUBLIC)
    assert sg.mounted
    assert not any(s.mounted for s in sg.stores.values())
    assert attached_names(sg) == []
    assert sg.checkpoint() == sg.log.tail  # nothing holds the checkpoint back
    with pytest.raises(InvalidParameterError, match=r"no store of storage group .* is mounted"):
        sg.begin_backup("full", owner="test")
    assert sg.dismount_store(MAIL) is False  # already dismounted: nothing to do
    assert sg.mount_store(MAIL) is True
    assert sg.mount_store(MAIL) is False  # already mounted: nothing to do
    assert read(sg.store(MAIL)) == mail_rows
    sg.dismount()
    assert sg.dismount_store(PUBLIC) is False  # the storage group is not mounted, so neither is the store
    with pytest.raises(NotMountedError, match="cannot be mounted on its own"):
        sg.mount_store(PUBLIC)
    sg.mount()  # mounts every store, whatever was dismounted before
    assert all(s.mounted for s in sg.stores.values())
    assert read(sg.store(PUBLIC)) == public_rows
    with pytest.raises(NotFoundError, match="has no store 'Nonesuch'"):
        sg.dismount_store("Nonesuch")
    with pytest.raises(NotFoundError, match="has no store 'Nonesuch'"):
        sg.mount_store("Nonesuch")
    sg.dismount()


# --- backups --------------------------------------------------------------------------------------------------


def test_a_store_cannot_be_dismounted_or_mounted_while_a_backup_session_runs(home: ServerHome) -> None:
    sg = home.storage_group()
    sg.mount()
    put_rows(sg.store(MAIL), 0, 5, b"m")
    assert sg.dismount_store(PUBLIC)
    with sg.begin_backup("full", owner="the nightly backup") as session:
        with pytest.raises(BackupInProgressError, match="the nightly backup"):
            sg.mount_store(PUBLIC)
        with pytest.raises(BackupInProgressError, match="the nightly backup"):
            sg.dismount_store(MAIL)
        assert [s.name for s in session.databases()] == [MAIL]
        session.abort("the test is done")
    assert sg.store(MAIL).mounted
    assert not sg.store(PUBLIC).mounted
    assert sg.mount_store(PUBLIC)
    sg.dismount()


@pytest.mark.parametrize("into", [INTO_RECOVERY_GROUP, INTO_PLACE])
def test_a_backup_with_a_store_dismounted_holds_the_other_and_restores_it(
    home: ServerHome, tmp_path: os.PathLike[str], into: str
) -> None:
    sg = home.storage_group()
    sg.mount()
    mail, public = sg.store(MAIL), sg.store(PUBLIC)
    mail_rows, public_rows = put_rows(mail, 0, 150, b"m"), put_rows(public, 0, 150, b"p")
    assert sg.dismount_store(PUBLIC)
    mail_rows |= put_rows(mail, 150, 100, b"m")
    target = LocalTarget(os.path.join(tmp_path, "backups"))

    outcome = back_up(home, SG, "full", target)

    assert sorted(f.source for f in outcome.files if f.role == "db") == ["priv1.edb"]
    assert outcome.completion is not None
    assert outcome.completion.stamped == [MAIL]
    assert outcome.left_out == [PUBLIC]
    assert not mail.read_header().full_prev.is_empty
    assert public.read_header().full_prev.is_empty, "a store not in the set is not stamped"
    after_backup = put_rows(mail, 250, 40, b"m")  # committed after the backup: only in the live logs
    sg.dismount()

    sets = catalog.list_sets(target, SG, home=home.home_id)
    plan = plan_restore(sets, RestoreTarget.latest(), sg=SG, roll_forward_live=into == INTO_PLACE)
    assert [d.database.store for d in plan.databases] == [MAIL]
    run_restore(home, target, plan, into=into)

    if into == INTO_RECOVERY_GROUP:
        recovered = home.storage_group(RECOVERY_SG)
        recovered.mount()
        assert list(recovered.stores) == [MAIL]
        assert read(recovered.store(MAIL)) == mail_rows
        recovered.dismount()
    sg.mount()
    expected_mail = mail_rows | after_backup  # in place: rolled forward through the live logs
    assert read(mail) == expected_mail
    assert read(public) == public_rows, "the store the backup does not hold was left alone"
    sg.dismount()


# --- crashes ----------------------------------------------------------------------------------------------------


def two_stores(fs: FaultFileSystem) -> tuple[ServerHome, StorageGroup, Rows, Rows]:
    """A mounted home on ``fs`` with rows in both stores."""
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    return home, sg, put_rows(sg.store(MAIL), 0, 60, b"m"), put_rows(sg.store(PUBLIC), 0, 60, b"p")


def remount_and_check(fs: FaultFileSystem, mail_rows: Rows, public_rows: Rows, replayed: set[str]) -> StorageGroup:
    """A restarted machine mounts the storage group: soft recovery replays exactly ``replayed``, both stores
    hold their rows, and the store can be dismounted and mounted again on its own."""
    sg = reopen(fs).storage_group()
    report = sg.mount()
    assert set(report.stores) == replayed
    assert read(sg.store(MAIL)) == mail_rows
    assert read(sg.store(PUBLIC)) == public_rows
    assert sg.dismount_store(PUBLIC)
    assert sg.mount_store(PUBLIC)
    more = put_rows(sg.store(PUBLIC), 1000, 3, b"p")
    assert read(sg.store(PUBLIC)) == public_rows | more
    return sg


@pytest.mark.parametrize(("mode", "seed"), MODES)
def test_crash_after_store_dismount_before_storage_group_dismount(mode: str, seed: int) -> None:
    fs = FaultFileSystem(seed=seed)
    _home, sg, mail_rows, public_rows = two_stores(fs)
    assert sg.dismount_store(PUBLIC)
    mail_rows |= put_rows(sg.store(MAIL), 60, 80, b"m")  # the log goes on past the DETACH
    sg.log.roll()
    mail_rows |= put_rows(sg.store(MAIL), 140, 20, b"m")
    # The dismounted store is in Clean Shutdown: recovery must not replay into it, and it mounts again.
    sg = remount_and_check(fs.crash(mode, seed), mail_rows, public_rows, {MAIL})
    sg.dismount()


@pytest.mark.parametrize(("mode", "seed"), MODES)
def test_crash_during_store_dismount_after_detach_record(mode: str, seed: int) -> None:
    fs = FaultFileSystem(seed=seed)
    _home, sg, mail_rows, public_rows = two_stores(fs)
    fs.arm_crash("dismount.after_detach_record")
    with pytest.raises(SimulatedCrash):
        sg.dismount_store(PUBLIC)
    # Still in Dirty Shutdown: replayed like any store, and the log holds nothing of it after the DETACH.
    sg = remount_and_check(fs.crash(mode, seed), mail_rows, public_rows, {MAIL, PUBLIC})
    sg.dismount()


@pytest.mark.parametrize(("mode", "seed"), MODES)
def test_crash_during_store_dismount_after_clean_header(mode: str, seed: int) -> None:
    fs = FaultFileSystem(seed=seed)
    _home, sg, mail_rows, public_rows = two_stores(fs)
    fs.arm_crash("dismount.after_clean_header")
    with pytest.raises(SimulatedCrash):
        sg.dismount_store(PUBLIC)
    sg = remount_and_check(fs.crash(mode, seed), mail_rows, public_rows, {MAIL})
    sg.dismount()


@pytest.mark.parametrize(("mode", "seed"), MODES)
def test_crash_during_store_mount_after_attach_record_before_dirty_header(mode: str, seed: int) -> None:
    fs = FaultFileSystem(seed=seed)
    _home, sg, mail_rows, public_rows = two_stores(fs)
    assert sg.dismount_store(PUBLIC)
    mail_rows |= put_rows(sg.store(MAIL), 60, 20, b"m")
    fs.arm_crash("mount.after_attach_record")
    with pytest.raises(SimulatedCrash):
        sg.mount_store(PUBLIC)
    # The header still says Clean Shutdown and no transaction of the store ran: the ATTACH changes nothing.
    sg = remount_and_check(fs.crash(mode, seed), mail_rows, public_rows, {MAIL})
    sg.dismount()


@pytest.mark.parametrize(("mode", "seed"), MODES)
def test_crash_after_store_mount_replays_what_it_committed_since(mode: str, seed: int) -> None:
    fs = FaultFileSystem(seed=seed)
    _home, sg, mail_rows, public_rows = two_stores(fs)
    assert sg.dismount_store(PUBLIC)
    mail_rows |= put_rows(sg.store(MAIL), 60, 20, b"m")
    assert sg.mount_store(PUBLIC)
    public_rows |= put_rows(sg.store(PUBLIC), 60, 40, b"p")
    sg = remount_and_check(fs.crash(mode, seed), mail_rows, public_rows, {MAIL, PUBLIC})
    sg.dismount()


# --- refusals and failures --------------------------------------------------------------------------------------


def make_dirty(fs: FaultFileSystem, store: Store) -> int:
    """Rewrite the header of the closed ``store`` as Dirty Shutdown from its replay start (as a copy of the file
    taken while it was mounted would say); returns that generation."""
    header = store.read_header()
    dirty = header._replace(state=STATE_DIRTY_SHUTDOWN, sequence=header.sequence + 1)
    file = DatabaseFile(fs, store.path, store.page_size, store.sg.events, store.sg.name)
    try:
        file.write_header(dirty)
    finally:
        file.close()
    return dirty.replay_start.gen


def test_a_store_in_dirty_shutdown_is_refused_naming_the_storage_group_mount_that_recovers_it() -> None:
    fs = FaultFileSystem(seed=11)
    _home, sg, mail_rows, public_rows = two_stores(fs)
    public = sg.store(PUBLIC)
    assert sg.dismount_store(PUBLIC)
    needed_from = make_dirty(fs, public)
    mail_rows |= put_rows(sg.store(MAIL), 60, 80, b"m")
    sg.log.roll()

    with pytest.raises(DatabaseDirtyShutdownError) as info:
        sg.mount_store(PUBLIC)
    assert info.value.code == -550
    assert "'Public Folder Store'" in info.value.message
    assert "Dirty Shutdown" in info.value.message
    assert f"dismount storage group {SG!r} and mount it again" in info.value.hint
    assert not public.mounted
    assert public.file is None
    # Until then the checkpoint keeps the logs the store needs: the storage group's mount replays them.
    assert sg.checkpoint().gen <= needed_from
    assert sg.mounted
    assert read(sg.store(MAIL)) == mail_rows

    sg.dismount()  # as the hint says
    report = sg.mount()
    assert PUBLIC in report.stores
    assert read(public) == public_rows
    assert public.mounted
    sg.dismount()


def test_a_full_data_disk_leaves_the_store_mounted_and_in_use() -> None:
    fs = FaultFileSystem(seed=13)
    home, sg, mail_rows, public_rows = two_stores(fs)
    public = sg.store(PUBLIC)
    public_rows |= put_rows(public, 60, 40, b"p")  # only in the log: the dismount must write its pages
    fs.capacity = (1 << 40) - fs.free_space("/")  # not one more byte
    with pytest.raises(DiskFullError):
        sg.dismount_store(PUBLIC)
    assert public.mounted
    assert sg.mounted
    assert 1005 in event_ids(home)
    assert 1003 not in event_ids(home)
    assert read(public) == public_rows
    fs.capacity = None  # space was freed
    public_rows |= put_rows(public, 100, 5, b"p")
    assert sg.dismount_store(PUBLIC)
    assert public.read_header().state == STATE_CLEAN_SHUTDOWN
    assert sg.mount_store(PUBLIC)
    assert read(public) == public_rows
    assert read(sg.store(MAIL)) == mail_rows
    sg.dismount()


def test_a_store_a_full_disk_left_in_dirty_shutdown_keeps_its_logs_under_circular_logging() -> None:
    # A dismount that cannot write a store leaves it in Dirty Shutdown (event 1004); the checkpoint it writes
    # last must not pass that store's replay start, or circular logging deletes the logs its recovery needs.
    fs = FaultFileSystem(seed=17)
    home = fault_home(fs, circular_logging=True)
    sg = home.storage_group()
    sg.mount()
    public = sg.store(PUBLIC)
    rows = put_rows(public, 0, 20, b"p")
    for _ in range(3):
        sg.log.roll()
        rows |= put_rows(public, len(rows), 20, b"p")
    fs.capacity = (1 << 40) - fs.free_space("/")  # the pages of the dismount's checkpoint find no room
    with pytest.raises(DiskFullError):
        sg.dismount()
    assert 1004 in event_ids(home)
    assert public.read_header().state == STATE_DIRTY_SHUTDOWN
    fs.capacity = None
    report = sg.mount()
    assert PUBLIC in report.stores
    assert read(public) == rows
    sg.dismount()
