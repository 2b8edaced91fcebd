"""Mounting a storage group: from its files on disk to every store mounted, in named phases.

In order, all under the storage group's mutex: take its lock, refuse a storage group a restore is half-way
through replacing (engine/mountlog.py), clear what a crash left and make durable what will be read
(engine/resync.py), open every store's header, find the log set, complete a log roll a crash interrupted, open
the current log, start the log writer at its end, run soft recovery for stores in Dirty Shutdown
(engine/recovery.py), set a torn tail aside, make sure the reserve logs exist, open ``E00.chk``, then attach
each store (an ATTACH record, then its header marked Dirty Shutdown before any page write), write ``E00.chk``
and start the maintenance thread. A failure at any step closes everything again without writing
(``StorageGroup._abandon``).

Kept out of engine/storagegroup.py, like dismounting (engine/dismount.py): that module holds what a mounted
storage group does, this one how it gets there. ``attach`` is shared with mounting one store while its
storage group stays mounted (engine/storemount.py); crash point ``mount.after_attach_record`` is in it.
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

from shadowstore.engine import layout, mountlog, resync
from shadowstore.engine.checkpointfile import CheckpointFile, read_checkpoint
from shadowstore.engine.logreader import Generation, scan_generation
from shadowstore.engine.logstream import LogSet
from shadowstore.engine.logwriter import LogWriter
from shadowstore.engine.maintenance import Maintenance
from shadowstore.engine.recovery import RecoveryReport, recover
from shadowstore.errors import DatabaseNotFoundError, ShadowStoreError, StorageGroupBusyError
from shadowstore.format.common import now_us
from shadowstore.format.dbheader import STATE_DIRTY_SHUTDOWN
from shadowstore.format.logfile import LogHeader
from shadowstore.format.logrecord import AttachRecord, pack_attach
from shadowstore.io.fs import read_file
from shadowstore.io.locks import this_command

if TYPE_CHECKING:
    from shadowstore.engine.storagegroup import StorageGroup
    from shadowstore.engine.store import Store


def mount(sg: StorageGroup) -> RecoveryReport:
    """Mount every store of ``sg``, running soft recovery first if any is in Dirty Shutdown; a no-op returning
    the last report when it is mounted.

    Raises StorageGroupBusyError (another process), DatabaseNotFoundError, the log errors of recovery
    (-528, -543, -530, -515, -501, ...) with their events, LogDiskFullError when the reserve logs cannot
    be created. On failure nothing stays open.
    """
    with sg._mutex:
        if sg._mounted:
            return sg.last_recovery or RecoveryReport()
        sg._offline_reason = None
        sg.stopped_because = None
        try:
            sg._lock = sg.fs.lock(sg.lock_path, f"pid {os.getpid()} ({this_command()})")
        except StorageGroupBusyError as exc:
            raise StorageGroupBusyError(exc.message, hint=_busy_hint(sg.name)) from None
        try:
            report = _phases(sg)
        except BaseException:
            sg._abandon()
            raise
        sg._mounted = True
        sg.last_checkpoint_us = now_us()
        sg.last_recovery = report
        sg.events.emit(1000, sg=sg.name, stores=", ".join(sg.stores) or "no stores")
        return report


def _busy_hint(name: str) -> str:
    """What to do when another process has the storage group: a command that opens the stores itself (a table
    read, a workload) cannot go through the service, so the service must let go of the group first."""
    quoted = shlex.quote(name)
    return (
        f"when it is the Information Store service, have it dismount the group ('shadowstore dismount {quoted}'), "
        f"run this again, then 'shadowstore mount {quoted}'; else wait for the other program or stop it"
    )


def _phases(sg: StorageGroup) -> RecoveryReport:
    mountlog.refuse_interrupted_restore(sg.fs, sg.config)
    removed = resync.sweep_temporaries(sg.fs, sg.config)
    if removed:
        sg.events.emit(1027, sg=sg.name, files=", ".join(os.path.basename(p) for p in removed))
    resync.sync_folders(sg.fs, sg.config)  # see engine/resync.py: a failed fsync before this mount
    _open_store_files(sg)
    logs = mountlog.complete_interrupted_roll(sg.fs, sg.config, LogSet.scan(sg.fs, sg.config.log_dir, sg.base))
    dirty = [
        f"{s.path} (logs from generation {s.replay_start.gen})"
        for s in sg.stores.values()
        if s.header is not None and s.header.state == STATE_DIRTY_SHUTDOWN
    ]
    followed = max((s.header.log_signature.created_us for s in sg.stores.values() if s.header), default=0)
    current, logs = mountlog.open_current_log(sg.fs, sg.config, logs, dirty, sg.events, followed)
    sg.signature = current.signature
    current_scan = scan_generation(
        logs.current or sg.current_log_path,
        read_file(sg.fs, sg.current_log_path),
        current,
        tolerate_torn_tail=True,
    )
    _start_log_writer(sg, current, current_scan, logs)
    handle = sg.log.current_file()
    assert handle is not None
    resync.resync_last_block(handle, current_scan)  # before recovery writes anything that relies on it
    report = recover(sg, logs, current, current_scan)
    mountlog.quarantine_torn_tail(sg.fs, sg.config, current_scan, handle)
    created = layout.ensure_reserve_logs(sg.fs, sg.config.log_dir, sg.config.log_file_size)
    if created:
        sg.events.emit(1022, sg=sg.name, files=", ".join(created))
    _open_checkpoint_file(sg)
    for gen in logs.archived:
        sg.watch.remember(gen)
    for store in sg.stores.values():
        attach(sg, store)
    sg.write_checkpoint()
    sg._maintenance = Maintenance(sg)
    sg._maintenance.start()
    return report


def _open_store_files(sg: StorageGroup) -> None:
    for store in sg.stores.values():
        try:
            header = store.open()
            assert store.file is not None
            store.file.write_header(header)  # durable as read (engine/resync.py)
        except FileNotFoundError:
            raise store_missing(sg, store) from None


def store_missing(sg: StorageGroup, store: Store) -> DatabaseNotFoundError:
    """The refusal to mount ``store``, whose file is not where the configuration says. Why the hint starts with a
    move: a file moved by hand, or by a move cut short, is not lost, and a restore would replace it."""
    name = shlex.quote(sg.name)
    return DatabaseNotFoundError(
        f"store {store.name!r} of {sg.name!r}: {store.path} does not exist",
        hint="if the file was moved, put it back or name its folder in the configuration (a move cut short is "
        f"finished by 'shadowstore sg move {name} --resume'); if it is lost, restore it from a backup ('shadowstore "
        f"restore plan --sg {name} --in-place' shows how) or remove the store from the configuration",
    )


def _start_log_writer(sg: StorageGroup, current: LogHeader, scan: Generation, logs: LogSet) -> None:
    sg.log = LogWriter(
        fs=sg.fs,
        log_dir=sg.config.log_dir,
        base=sg.base,
        signature=current.signature,
        file_size=current.file_size,
        page_size=sg.config.page_size,
        circular=sg.config.circular_logging,
        events=sg.events,
        sg=sg.name,
        attached=sg.attach_list,
        checkpoint=lambda: sg._checkpoint_pos,
        waits=sg.waits,
    )
    sg.log.on_roll.append(sg._on_roll)
    sg.log.on_disk_full.append(sg._on_disk_full)
    newest = mountlog.newest_time(sg.fs, logs, scan)
    sg.log.start(current, sg.fs.open(sg.current_log_path), scan.end_offset, scan.blocks, newest)


def _open_checkpoint_file(sg: StorageGroup) -> None:
    problem = None
    try:
        chk, _damaged = read_checkpoint(sg.fs, sg.checkpoint_path)
        if chk.signature == sg.signature:
            sg._chk = CheckpointFile(sg.fs, sg.checkpoint_path, chk.sequence, sg.lost_writes)
            sg._checkpoint_pos = chk.checkpoint
            if chk.full_backup_us:
                sg.last_full_backup = (chk.full_backup, chk.full_backup_us)
            if chk.inc_backup_us:
                sg.last_inc_backup = (chk.inc_backup, chk.inc_backup_us)
            return
        problem = "from another log stream"
    except ShadowStoreError as exc:
        problem = f"unusable ({exc.message})"
    sg.events.emit(1031, sg=sg.name, file=sg.checkpoint_path, problem=problem)
    sg._chk = CheckpointFile.create(
        sg.fs, sg.checkpoint_path, sg._checkpoint_record(sg.log.tail, sg.signature, []), sg.lost_writes
    )
    sg._checkpoint_pos = sg.log.tail


def attach(sg: StorageGroup, store: Store) -> None:
    """Load and verify the durable state, then: ATTACH record, durable; then the header says Dirty Shutdown.

    Nothing is written before the catalog and space map were read, so a store that cannot be loaded is
    left exactly as it was (in Clean Shutdown, needing no logs). Requires: ``sg._mutex`` is held (a mount, or
    ``mount_store``).
    """
    assert store.header is not None
    store.load_state()
    record = pack_attach(AttachRecord(store.dbid, store.header.db_signature, now_us(), store.path))
    start, end = sg.log.append(record, update=False)
    sg.log.flush(end)
    sg.fs.crash_point("mount.after_attach_record")
    store.write_dirty_header(start, end)
    store.mounted = True
    sg.events.emit(1002, sg=sg.name, store=store.name, file=store.path, lgpos=str(end))
