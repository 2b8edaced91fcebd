"""A storage group: stores that share one log stream, one checkpoint and one recovery.

Here: creating one, what a mounted storage group does (checkpoints and ``E00.chk``, deleting logs, the log
writer's callbacks, the entry to its backup session) and how a failed write of any of its files stops it for
good (``lost_writes``, ``go_offline``): the next mount recovers from the durable state.

Mount, in named phases: engine/mount.py. Dismount: engine/dismount.py. One store while the storage group stays
mounted: engine/storemount.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from contextlib import suppress

from shadowstore.config import SgConfig, no_such_store
from shadowstore.engine import dismount, layout, mount, storemount
from shadowstore.engine.backup import BackupSession
from shadowstore.engine.backupslot import BackupSlot, note_backup_in_checkpoint
from shadowstore.engine.checkpointfile import CheckpointFile, checkpoint_record
from shadowstore.engine.flushwaits import FlushWaits
from shadowstore.engine.health import LogFolderWatch
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.engine.logwriter import LogWriter
from shadowstore.engine.maintenance import Maintenance, MaintenancePolicy
from shadowstore.engine.recovery import RecoveryReport
from shadowstore.engine.store import Store
from shadowstore.engine.writerlatch import latch_timeout_error
from shadowstore.errors import (
    DiskIOError,
    InvalidParameterError,
    NotMountedError,
    ShadowStoreError,
    StorageGroupOfflineError,
    TransactionAbortedError,
)
from shadowstore.events import EventLog
from shadowstore.format.checkpoint import Checkpoint
from shadowstore.format.common import AttachInfo, BackupInfo, LgPos, Signature, now_us
from shadowstore.format.logfile import checkpoint_name, current_log_name
from shadowstore.io.fs import FileStat, FileSystem, Lock


class StorageGroup:
    """One storage group of a server home. Thread-safe; mount before use, dismount when done."""

    def __init__(
        self,
        config: SgConfig,
        fs: FileSystem,
        events: EventLog,
        *,
        policy: MaintenancePolicy | None = None,
        waits: FlushWaits | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.base = config.log_base
        self.fs = fs
        self.events = events
        self.policy = policy or MaintenancePolicy()
        self.waits = waits or FlushWaits()  # the home's, when it made this group (engine/flushwaits.py)
        self.stores: dict[str, Store] = {
            s.name: Store(self, s.name, s.dbid, config.store_path(s), config.page_size) for s in config.stores
        }
        self.signature: Signature = Signature(0, 0, "")
        self.log: LogWriter = None  # type: ignore[assignment]  # set by mount
        self.last_recovery: RecoveryReport | None = None
        self.watch = LogFolderWatch(fs, config.log_dir, config.log_base)
        self._mutex = threading.RLock()
        self._lock: Lock | None = None
        self._chk: CheckpointFile | None = None
        self._checkpoint_pos = LgPos(0, 0)
        self._maintenance: Maintenance | None = None
        self._mounted = False
        self.backups = BackupSlot(self)
        self.last_full_backup: tuple[LgPos, int] | None = None  # (mark, time) recorded in E00.chk
        self.last_inc_backup: tuple[LgPos, int] | None = None
        self._offline_reason: str | None = None
        self.stopped_because: ShadowStoreError | None = None  # why the engine itself dismounted it
        self.last_checkpoint_us = 0

    def __repr__(self) -> str:
        return f"<StorageGroup {self.name!r} {'mounted' if self._mounted else 'dismounted'}>"

    # --- paths --------------------------------------------------------------------------------------------

    @property
    def current_log_path(self) -> str:
        return os.path.join(self.config.log_dir, current_log_name(self.base))

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.config.system_dir, checkpoint_name(self.base))

    @property
    def lock_path(self) -> str:
        return os.path.join(self.config.system_dir, f"{self.base}.lock")

    @property
    def quarantine_dir(self) -> str:
        return os.path.join(self.config.log_dir, "quarantine")

    @property
    def held_lock(self) -> Lock | None:
        """The storage group's lock while this object holds it (mounted, or mounting)."""
        return self._lock

    @property
    def mounted(self) -> bool:
        return self._mounted

    @property
    def log_open(self) -> bool:
        return self.log is not None and self.log.current_file() is not None

    @property
    def checkpoint_position(self) -> LgPos:
        return self._checkpoint_pos

    def store(self, name: str) -> Store:
        try:
            return self.stores[name]
        except KeyError:
            for store in self.stores.values():
                if os.path.basename(store.path) == name:
                    return store
            raise no_such_store(self.name, name, list(self.stores)) from None

    # --- creation -----------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        config: SgConfig,
        fs: FileSystem,
        events: EventLog,
        *,
        policy: MaintenancePolicy | None = None,
        waits: FlushWaits | None = None,
    ) -> StorageGroup:
        """Create the directories, the first log generation, reserve logs, checkpoint and store files."""
        for directory in {config.log_dir, config.system_dir, config.data_dir}:
            fs.makedirs(directory)
        sg = cls(config, fs, events, policy=policy, waits=waits)
        if fs.exists(sg.current_log_path):
            raise InvalidParameterError(f"{sg.current_log_path} already exists; pick another log folder")
        header = layout.start_log_stream(fs, config)
        tail = header.checkpoint
        CheckpointFile.create(fs, sg.checkpoint_path, sg._checkpoint_record(tail, header.signature, []))
        for store in sg.stores.values():
            layout.create_store_file(fs, store.path, config.page_size, store.dbid, header.signature, tail)
        return sg

    def add_store(self, name: str, dbid: int, path: str) -> Store:
        """Create a new store file (the storage group must be dismounted)."""
        with self._mutex:
            if self._mounted:
                raise InvalidParameterError(f"dismount storage group {self.name!r} before adding a store")
            signature = read_header(self.fs, self.current_log_path).signature
            layout.create_store_file(self.fs, path, self.config.page_size, dbid, signature, LgPos(0, 0))
            store = Store(self, name, dbid, path, self.config.page_size)
            self.stores[name] = store
            return store

    # --- mount --------------------------------------------------------------------------------------------

    def mount(self) -> RecoveryReport:
        """Mount every store, running soft recovery first if any is in Dirty Shutdown (engine/mount.py).

        Raises StorageGroupBusyError (another process), DatabaseNotFoundError, the log errors of recovery
        (-528, -543, -530, -515, -501, ...) with their events, LogDiskFullError when the reserve logs cannot
        be created. On failure nothing stays open.
        """
        return mount.mount(self)

    # --- dismount -----------------------------------------------------------------------------------------

    def dismount(self) -> None:
        """Bring every store to Clean Shutdown and close (engine/dismount.py). Stores that cannot be written stay
        in Dirty Shutdown (event 1004) and are recovered at the next mount; the storage group is closed either
        way."""
        dismount.dismount(self)

    def dismount_store(self, name: str) -> bool:
        """Dismount one store while the storage group and its other stores go on (engine/storemount.py)."""
        return storemount.dismount_store(self, name)

    def mount_store(self, name: str) -> bool:
        """Mount again one store of this mounted storage group (engine/storemount.py)."""
        return storemount.mount_store(self, name)

    def _abandon(self) -> None:
        """Close everything without writing (after a failed mount, at the end of dismount, when offline).

        Each store is closed under its flush lock and the log after its flush leader: a thread still writing
        one of them (a backup stamping a header, a leader syncing the log) finishes first, so no write of it
        can land in a file that reuses the descriptor. Requires: ``_mutex`` is held."""
        self._mounted = False
        for store in self.stores.values():
            with store._flush_lock:
                store.close()
        if self.log is not None:
            with suppress(ShadowStoreError):
                self.log.close()
        if self._chk is not None:
            self._chk.close()
            self._chk = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def lost_writes(self, path: str, error: ShadowStoreError) -> None:
        """A write or fsync of a store or checkpoint file failed: what it holds on disk is no longer known, and
        the writes a retry would seem to make durable may be gone. Fence the log writer at once (no commit is
        acknowledged from now on, and no checkpoint writes anything), report it (event 1024), and let the
        maintenance thread take the storage group offline; the next mount recovers from the durable state.

        Called from whatever thread did the write, possibly holding store locks: it takes none of its own."""
        first = self.log is not None and self.log.fail(error)
        if first or self.log is None:
            self.events.emit(1024, sg=self.name, file=path, error=str(error))
        maintenance = self._maintenance
        if maintenance is not None:
            maintenance.wake()

    def writer_timeout_error(self, store: Store, held: float, why: str) -> TransactionAbortedError:
        """The error a write transaction gets when its writer latch is taken away after ``held`` seconds."""
        return latch_timeout_error(self.name, store.name, held, why, self.policy.transaction_timeout)

    def check_writable(self) -> None:
        """Raise StorageGroupOfflineError when a failed write fenced this storage group (see ``lost_writes``)."""
        log = self.log
        if log is not None and log.failed is not None:
            raise StorageGroupOfflineError(
                f"storage group {self.name!r} stopped writing after an I/O failure: {log.failed}",
                hint=f"mount {self.name!r} again: soft recovery replays the log from the last durable state",
            )

    def stopped_error(self, what: str) -> ShadowStoreError | None:
        """``what`` (a store, a backup of this group) cannot be used because the engine itself dismounted the
        group (a full log disk, an I/O error): that reason as an error of its kind, or None when it did not."""
        stopped = self.stopped_because
        if stopped is None:
            return None
        return type(stopped)(f"{what} is not mounted: {stopped.message}", hint=stopped.hint)

    def go_offline(self, reason: str) -> None:
        """After an I/O failure: stop everything without writing; the next mount replays the log."""
        self.backups.terminate()  # why first: a session thread completing would wait for the mutex
        with self._mutex:
            if not self._mounted:
                return
            self._offline_reason = reason
            self.stopped_because = StorageGroupOfflineError(f"storage group {self.name!r} went offline: {reason}")
            self.events.emit(1020, sg=self.name, error=reason)
            self._abandon()

    # --- checkpoint ---------------------------------------------------------------------------------------

    def checkpoint(self) -> LgPos:
        """Write every mounted store's newest state and advance the checkpoint file. Returns the checkpoint."""
        with self._mutex:
            if not self._mounted:
                raise NotMountedError(f"storage group {self.name!r} is not mounted")
            for store in self.stores.values():
                if store.mounted:
                    store.checkpoint()
            self.last_checkpoint_us = now_us()
            return self.write_checkpoint()

    def write_checkpoint(self) -> LgPos:
        """E00.chk := the oldest replay start of the mounted stores and of those a failed dismount left in Dirty
        Shutdown (the next mount replays them from there), or the log tail when there are none.

        Under the storage group's mutex, like every checkpoint: a backup completing in another thread records
        its mark here too, and two writers would interleave sequence numbers and records."""
        with self._mutex:
            self.check_writable()
            if self._chk is None:
                raise NotMountedError(f"storage group {self.name!r} is not mounted")
            held = [s for s in self.stores.values() if s.mounted or dismount.left_dirty(self, s)]
            position = min((s.replay_start for s in held), default=self.log.tail)
            self._chk.write(self._checkpoint_record(position, self.signature, self.attach_list()))
            previous, self._checkpoint_pos = self._checkpoint_pos, position
            if self.config.circular_logging and position.gen > previous.gen:
                self._delete_below(position)
            return position

    def _checkpoint_record(self, position: LgPos, signature: Signature, attached: list[AttachInfo]) -> Checkpoint:
        return checkpoint_record(
            self.config, position, signature, attached, self.last_full_backup, self.last_inc_backup
        )

    def _delete_below(self, position: LgPos) -> None:
        """Circular logging: archived generations below the checkpoint are not needed; delete them."""
        logs = LogSet.scan(self.fs, self.config.log_dir, self.base)
        doomed = sorted(g for g in logs.archived if g < position.gen)
        if not doomed:
            return
        self.watch.forget_below(position.gen)
        self.delete_logs(doomed)
        self.events.emit(1030, sg=self.name, low=doomed[0], high=doomed[-1], checkpoint=str(position), sync=True)

    def delete_logs(self, generations: Iterable[int], *, crash_point: str | None = None) -> tuple[list[int], list[int]]:
        """Delete archived log generations (truncation, circular logging) and sync the log folder. Returns
        (deleted, already gone). Raises DiskIOError when one cannot be deleted (those before it are), or when
        the folder's fsync fails: that loses writes like any failed fsync (``lost_writes``)."""
        deleted: list[int] = []
        missing: list[int] = []
        try:
            layout.delete_generations(self.fs, self.config, generations, deleted, missing, crash_point)
        finally:
            if deleted:
                self.sync_folder(self.config.log_dir)
        return deleted, missing

    def sync_folder(self, folder: str) -> None:
        """fsync a folder of this storage group. Raises DiskIOError, after ``lost_writes``, when it fails."""
        try:
            self.fs.fsync_dir(folder)
        except OSError as exc:
            error = DiskIOError(f"I/O error while syncing the folder {folder}: {os.strerror(exc.errno or 0)}")
            self.lost_writes(folder, error)
            raise error from exc

    def attach_list(self) -> list[AttachInfo]:
        return [
            AttachInfo(s.dbid, s.header.db_signature, s.header.last_attach, os.path.basename(s.path))
            for s in self.stores.values()
            if s.mounted and s.header is not None
        ]

    # --- backups ------------------------------------------------------------------------------------------

    def begin_backup(self, kind: str, *, owner: str, lease_seconds: float | None = None) -> BackupSession:
        """Start a streaming backup session (see engine/backup.py). Raises -505, -526, -560."""
        return self.backups.begin(kind, owner, lease_seconds)

    @property
    def backup_session(self) -> BackupSession | None:
        return self.backups.session

    def backup_ended(self, session: BackupSession) -> None:
        self.backups.ended(session)

    def note_backup(self, kind: str, info: BackupInfo) -> None:
        with self._mutex:  # why: the marks and the E00.chk write that records them change together
            note_backup_in_checkpoint(self, kind, info)

    # --- callbacks from the log writer (flush leader thread: keep them short) ------------------------------

    def _on_roll(self, generation: int, closed: FileStat | None) -> None:
        # why: remember the closed generation now, as the writer saw it; a file deleted before the next health
        # check, even before this call, must still be known to have existed.
        self.watch.remember(generation - 1, closed)
        if self._maintenance is not None:
            self._maintenance.note_roll(generation)

    def _on_disk_full(self) -> None:
        if self._maintenance is not None:
            self._maintenance.note_disk_full()

    def note_commit(self) -> None:
        if self._maintenance is not None:
            self._maintenance.note_commit()

    # --- status -------------------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return {
            "name": self.name,
            "log_base": self.base,
            "mounted": self._mounted,
            "offline_reason": self._offline_reason,
            "log_dir": self.config.log_dir,
            "system_dir": self.config.system_dir,
            "current_generation": self.log.disk_generation if self._mounted else None,
            "checkpoint": str(self._checkpoint_pos) if self._mounted else None,
            "circular_logging": self.config.circular_logging,
            "stores": [s.status() for s in self.stores.values()],
        }
