"""Dismounting a storage group: every store brought to Clean Shutdown, then everything closed.

In order: end a running backup session (event 226: a session thread completing would want the storage group's
mutex), stop the maintenance thread (outside the mutex: that thread may be waiting for it), then under the
mutex, for each store: take its writer latch (a transaction that keeps it past ``transaction_timeout`` is
aborted, event 1026), log a DETACH record, write the newest state with a header in Clean Shutdown (Log
Required 0-0, consistent at the DETACH); then ``E00.chk``, and close. A store that cannot be written (full
disk, I/O error) stays in Dirty Shutdown with event 1004: its logs are intact and the next mount recovers it.
A storage group whose log a failed write fenced goes offline instead (event 1020): nothing more may be written.
Crash points ``dismount.after_detach_record`` and ``dismount.after_clean_header``, in ``detach``, which the
dismount of one store while its storage group stays mounted (engine/storemount.py) shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shadowstore.errors import ShadowStoreError
from shadowstore.format.common import LgPos, now_us
from shadowstore.format.dbheader import STATE_DIRTY_SHUTDOWN
from shadowstore.format.logrecord import DetachRecord, pack_detach

if TYPE_CHECKING:
    from shadowstore.engine.storagegroup import StorageGroup
    from shadowstore.engine.store import Store


def dismount(sg: StorageGroup) -> None:
    """Dismount ``sg`` (a no-op when it is not mounted). Raises the first store's failure, if any, unless the
    storage group had gone offline (then nothing could be written, and that is known)."""
    sg.backups.terminate()
    maintenance = sg._maintenance
    if maintenance is not None:
        maintenance.stop()
    if sg.log is not None and sg.log.failed is not None:
        # why: a failed write fenced the log and the maintenance thread, stopped just now, may not have taken
        # the storage group offline yet; detaching would only fail store by store (1004) and end as if it were
        # an ordinary dismount (1001)
        sg.go_offline(str(sg.log.failed))
        return
    with sg._mutex:
        if not sg.mounted:
            return
        sg._maintenance = None
        failures = []
        for store in sg.stores.values():
            error = _detach(sg, store)
            if error is not None:
                failures.append(error)
        if sg.log.failed is None:
            try:
                sg.write_checkpoint()
            except ShadowStoreError as exc:
                failures.append(exc)
        sg._abandon()
        sg.events.emit(1001, sg=sg.name, sync=True)
        if failures and sg._offline_reason is None:
            raise failures[0]


def _detach(sg: StorageGroup, store: Store) -> ShadowStoreError | None:
    if not store.mounted:
        store.close()
        return None
    store.take_latch(sg.policy.transaction_timeout, "the storage group is being dismounted")
    try:
        end = detach(sg, store)
    except ShadowStoreError as exc:
        sg.events.emit(1004, sg=sg.name, store=store.name, file=store.path, error=str(exc))
        return exc
    else:
        sg.events.emit(1003, sg=sg.name, store=store.name, file=store.path, lgpos=str(end))
        return None
    finally:
        store.latch.release_anonymous()
        store.close()


def detach(sg: StorageGroup, store: Store) -> LgPos:
    """Mark ``store`` not mounted, log its DETACH record (durable), then write its newest state with a header in
    Clean Shutdown, consistent at the DETACH. Returns the end of the DETACH record.

    Requires: the storage group's ``_mutex`` and the store's writer latch are held (so no transaction of it
    can log anything after the DETACH). Raises what the append, the flush or the checkpoint raises; unless a
    write was lost (the log is then fenced, ``StorageGroup.lost_writes``) the store keeps the header and state
    it had, in Dirty Shutdown, and the DETACH record, which replay ignores, changes nothing.
    """
    store.mounted = False
    start, end = sg.log.append(pack_detach(DetachRecord(store.dbid, now_us())), update=False)
    sg.log.flush(end)
    sg.fs.crash_point("dismount.after_detach_record")
    store.checkpoint(clean_at=end, detach=start)
    sg.fs.crash_point("dismount.after_clean_header")
    return end


def left_dirty(sg: StorageGroup, store: Store) -> bool:
    """Whether ``store``, not mounted, is in Dirty Shutdown in ``sg``'s log stream: a dismount that could not write
    it, or a file ``mount_store`` refused. The next mount replays it from its replay start, so the checkpoint
    must not pass that, nor circular logging delete the logs from there."""
    header = store.header
    return (
        not store.mounted
        and header is not None
        and header.state == STATE_DIRTY_SHUTDOWN
        and header.log_signature == sg.signature
    )
