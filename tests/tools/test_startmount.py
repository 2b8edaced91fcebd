"""What the service mounts at start (tools/startmount.py): the stores configured to mount at start, each storage
group that has one, and nothing else; a failure of one storage group stops no other."""

from __future__ import annotations

import os

from shadowstore import config as cfg
from shadowstore.errors import DatabaseNotFoundError
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN
from shadowstore.home import DEFAULT_SG, ServerHome
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.tools.startmount import mount_configured
from tests.conftest import HOME, fault_home, reopen

MAIL, PUBLIC = "Mailbox Store", "Public Folder Store"
SECOND, ARCHIVE = "Second Storage Group", "Archive Store"


def three_groups(fs: FaultFileSystem) -> ServerHome:
    """The default storage group with a row in each store, a second one with one store, one with no store."""
    home = fault_home(fs)
    home.create_storage_group(SECOND, stores=[(ARCHIVE, "archive.edb")])
    home.create_storage_group("Empty Group")
    sg = home.storage_group()
    sg.mount()
    for name in (MAIL, PUBLIC):
        with sg.store(name).transaction() as tx:
            tx.create_table("t")
            tx.put("t", b"key", name.encode())
    return home


def configure(home: ServerHome, *settings: tuple[str, str, bool]) -> ServerHome:
    """Save ``mount_at_start`` settings and open the home again, as a service starting would."""
    for sg, store, value in settings:
        cfg.set_mount_at_start(home.config, sg, store, value)
    cfg.save(home.fs, HOME, home.config)
    home.close()
    assert isinstance(home.fs, FaultFileSystem)
    return reopen(home.fs)


def read_key(home: ServerHome, store: str) -> bytes | None:
    with home.storage_group().store(store).snapshot() as snap:
        return snap.get("t", b"key")


def test_the_configured_stores_are_mounted_and_the_others_left_dismounted() -> None:
    home = configure(three_groups(FaultFileSystem(seed=5)), (DEFAULT_SG, PUBLIC, False), (SECOND, ARCHIVE, False))

    report = mount_configured(home)

    assert report.mounted == [(DEFAULT_SG, MAIL)]
    assert report.skipped == [(DEFAULT_SG, PUBLIC), (SECOND, ARCHIVE)]
    assert report.failed == []
    sg = home.storage_group()
    assert sg.mounted
    assert sg.store(MAIL).mounted
    assert not sg.store(PUBLIC).mounted
    assert sg.store(PUBLIC).read_header().state == STATE_CLEAN_SHUTDOWN
    assert not home.storage_group(SECOND).mounted, "a storage group with no store to mount stays dismounted"
    assert not home.storage_group("Empty Group").mounted
    assert read_key(home, MAIL) == MAIL.encode()

    again = mount_configured(home)  # converges: nothing changes
    assert (again.mounted, again.skipped, again.failed) == (report.mounted, report.skipped, [])
    assert not sg.store(PUBLIC).mounted

    cfg.set_mount_at_start(home.config, DEFAULT_SG, PUBLIC, True)
    cfg.set_mount_at_start(home.config, SECOND, ARCHIVE, True)
    after_change = mount_configured(home)
    assert after_change.mounted == [(DEFAULT_SG, MAIL), (DEFAULT_SG, PUBLIC), (SECOND, ARCHIVE)]
    assert after_change.skipped == []
    assert read_key(home, PUBLIC) == PUBLIC.encode()
    assert home.storage_group(SECOND).store(ARCHIVE).mounted
    home.close()


def test_a_store_in_dirty_shutdown_configured_to_stay_dismounted_is_recovered_first() -> None:
    fs = FaultFileSystem(seed=6)
    home = three_groups(fs)  # mounted: both stores in Dirty Shutdown, their rows only in the log
    cfg.set_mount_at_start(home.config, DEFAULT_SG, PUBLIC, False)
    cfg.save(fs, HOME, home.config)
    home = reopen(fs.crash("drop"))

    report = mount_configured(home)

    assert report.skipped == [(DEFAULT_SG, PUBLIC)]
    public = home.storage_group().store(PUBLIC)
    assert public.read_header().state == STATE_CLEAN_SHUTDOWN, "recovered by the mount, then dismounted cleanly"
    recovery = home.storage_group().last_recovery
    assert recovery is not None
    assert PUBLIC in recovery.stores
    assert home.storage_group().mount_store(PUBLIC)
    assert read_key(home, PUBLIC) == PUBLIC.encode()
    home.close()


def test_a_storage_group_that_fails_to_mount_is_reported_and_stops_no_other() -> None:
    fs = FaultFileSystem(seed=7)
    home = three_groups(fs)
    home.close()
    fs.unlink(os.path.join(HOME, SECOND, "archive.edb"))
    home = reopen(fs)

    report = mount_configured(home)

    assert report.mounted == [(DEFAULT_SG, MAIL), (DEFAULT_SG, PUBLIC)]
    [(sg, store, error)] = report.failed
    assert (sg, store) == (SECOND, None)
    assert isinstance(error, DatabaseNotFoundError)
    assert "archive.edb does not exist" in error.message
    assert home.storage_group().mounted
    assert not home.storage_group(SECOND).mounted
    home.close()
