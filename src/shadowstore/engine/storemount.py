"""Mounting and dismounting one store while its storage group stays mounted.

Exchange lets an administrator dismount one store (the Public Folder Store, say) while the other stores of the
same storage group go on. The log stream, the checkpoint, the maintenance thread and the lock are the storage
group's, so only the store changes:

* ``dismount_store``: the steps of one store of a storage group's dismount (engine/dismount.py ``detach``):
  take its writer latch (a transaction that keeps it past ``transaction_timeout`` is aborted, event 1026), log a
  DETACH record (durable), write the newest state with a header in Clean Shutdown consistent at the DETACH,
  close the file, event 1003; then ``E00.chk``, whose attach list no longer names the store and whose checkpoint
  no longer waits for it. Crash points ``dismount.after_detach_record`` and ``dismount.after_clean_header``.
* ``mount_store``: open the file, refuse a store in Dirty Shutdown (-550, below), then the attach a mount does
  (engine/mount.py ``attach``: load and verify the catalog and space map, ATTACH record durable, crash point
  ``mount.after_attach_record``, header in Dirty Shutdown, event 1002); then ``E00.chk``.

Why a crash at any instant is safe: soft recovery replays only stores whose header says Dirty Shutdown, and it
ignores ATTACH and DETACH records. After a store's dismount its header says Clean Shutdown and no record of it
follows (its latch was held from before the DETACH until it was closed), so the next mount replays the other
stores and attaches it with them. A crash after the DETACH record but before the Clean header leaves it Dirty:
it is replayed like any store, and the log holds nothing of it after the DETACH. A crash between a
``mount_store``'s ATTACH record and its Dirty header leaves the header Clean, and no transaction of the store
ran (it counts as mounted only once the header is durable).

Why a store in Dirty Shutdown is refused rather than recovered here: soft recovery (engine/recovery.py) replays
the log from the store's replay start to the end of the stream as it stood when the storage group opened its
current log, with no writer appending behind it; replaying one store while the others commit would need a
replay that follows a live writer. Dismounting and mounting the storage group runs soft recovery.

Both refuse while a backup session runs (-505): a full backup copies, and its ``complete`` stamps, the stores
that are mounted, so a store coming or going in the middle would leave a set that names what it does not hold.
Both run under the storage group's mutex, so neither runs beside a mount, a dismount or a checkpoint. A store
dismounted here is mounted again by the next mount of its storage group, which mounts every store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shadowstore.engine import dismount, mount
from shadowstore.errors import (
    BackupInProgressError,
    DatabaseDirtyShutdownError,
    NotMountedError,
    ShadowStoreError,
)
from shadowstore.format.dbheader import STATE_DIRTY_SHUTDOWN

if TYPE_CHECKING:
    from shadowstore.engine.storagegroup import StorageGroup
    from shadowstore.engine.store import Store


def dismount_store(sg: StorageGroup, name: str) -> bool:
    """Bring store ``name`` of the mounted ``sg`` to Clean Shutdown and close it; the storage group and its other
    stores go on (with no store mounted, if it was the last one). Returns True when it dismounted the store,
    False, doing nothing, when the store is not mounted (as none is while ``sg`` is not mounted).

    Raises NotFoundError (no such store), BackupInProgressError (-505) while a backup session runs,
    StorageGroupOfflineError when a failed write fenced ``sg``, and what the DETACH record or the Clean Shutdown
    write raised: the store then stays mounted and in use when ``sg`` is not fenced (event 1005: a full data
    disk changes nothing of it), else it is closed in Dirty Shutdown (event 1004) and ``sg`` goes offline, to be
    recovered by its next mount. Raises what writing ``E00.chk`` raises after a clean dismount.
    """
    with sg._mutex:
        store = sg.store(name)
        if not sg.mounted or not store.mounted:
            return False
        _check_can_change(sg, store, "dismount")
        store.take_latch(sg.policy.transaction_timeout, "the store is being dismounted")
        try:
            end = dismount.detach(sg, store)
        except ShadowStoreError as exc:
            _after_failed_detach(sg, store, exc)
            raise
        else:
            _close(store)
        finally:
            store.latch.release_anonymous()
        sg.events.emit(1003, sg=sg.name, store=store.name, file=store.path, lgpos=str(end))
        sg.write_checkpoint()
        return True


def mount_store(sg: StorageGroup, name: str) -> bool:
    """Open store ``name`` of the mounted ``sg`` again and attach it, as a mount does. Returns True when it
    mounted the store, False, doing nothing, when it is mounted already.

    Raises NotMountedError when ``sg`` is not mounted (mounting it mounts every store), NotFoundError (no such
    store), BackupInProgressError (-505) while a backup session runs, StorageGroupOfflineError when a failed
    write fenced ``sg``, DatabaseNotFoundError (-1203) when the file is gone, DatabaseDirtyShutdownError (-550)
    when the store is in Dirty Shutdown (it needs soft recovery: dismount and mount the storage group), the
    errors of reading the header and loading the store (-1206, -1018, page size), and what the ATTACH record or
    the Dirty header write raises. On any failure the store is closed and not mounted.
    """
    with sg._mutex:
        store = sg.store(name)
        if not sg.mounted:
            raise NotMountedError(
                f"storage group {sg.name!r} is not mounted, so its store {store.name!r} cannot be mounted on its own",
                hint=f"mount storage group {sg.name!r}: that mounts every store of it",
            )
        if store.mounted:
            return False
        _check_can_change(sg, store, "mount")
        try:
            _open_clean(sg, store)
            mount.attach(sg, store)
        except BaseException:
            _close(store)
            raise
        sg.write_checkpoint()
        return True


def _check_can_change(sg: StorageGroup, store: Store, doing: str) -> None:
    session = sg.backups.session
    if session is not None:
        raise BackupInProgressError(
            f"cannot {doing} store {store.name!r} of {sg.name!r} while a backup session is running: "
            f"{session.describe()}",
            hint="wait for the backup to end, or end it with 'shadowstore backup abort', then try again",
        )
    sg.check_writable()


def _open_clean(sg: StorageGroup, store: Store) -> None:
    """Open the store's file and read its header. Raises DatabaseNotFoundError, DatabaseDirtyShutdownError."""
    try:
        header = store.open()
    except FileNotFoundError:
        raise mount.store_missing(sg, store) from None
    if header.state == STATE_DIRTY_SHUTDOWN:
        raise DatabaseDirtyShutdownError(
            f"store {store.name!r} of {sg.name!r} ({store.path}) is in Dirty Shutdown: some of its committed data "
            f"is only in the logs from generation {header.replay_start.gen}, and soft recovery replays them only "
            "when the storage group mounts",
            hint=f"dismount storage group {sg.name!r} and mount it again: the mount recovers the store and mounts "
            "every store of it",
            file=store.path,
        )


def _after_failed_detach(sg: StorageGroup, store: Store, error: ShadowStoreError) -> None:
    """A detach that failed without fencing the log changed nothing of the store but a DETACH record, which
    replay ignores (a full data disk: the checkpoint left everything as it was), so the store goes on mounted;
    after a lost write the storage group goes offline, and the store is closed in Dirty Shutdown.
    Requires: the store's writer latch is held."""
    if sg.log.failed is None:
        store.mounted = True
        sg.events.emit(1005, sg=sg.name, store=store.name, file=store.path, error=str(error))
        return
    _close(store)
    sg.events.emit(1004, sg=sg.name, store=store.name, file=store.path, error=str(error))


def _close(store: Store) -> None:
    """Close the store under its flush lock: the maintenance thread may be writing its header after a log roll
    (``update_required_max``), and that write must not land in a file that reuses the descriptor."""
    with store._flush_lock:
        store.close()
