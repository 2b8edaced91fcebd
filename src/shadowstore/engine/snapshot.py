"""Freezing a storage group for a shadow copy: the engine side of the store writer (DESIGN §6; ESE's
JetOSSnapshotFreeze / Thaw / End, research/ese.md §2).

    prepare_snapshot(sg)                          # PrepareForSnapshot: a checkpoint, the slow part
    frozen = freeze(sg, timeout=60.0)             # roll the log, hold every write of sg
    ... the provider snapshots frozen.files ...
    frozen.thaw()                                 # -2402 if the watchdog thawed it first (event 2004)
    ... copy from the snapshot, store the set ...
    complete_snapshot(sg, "full", frozen)         # truncate (full, incremental), stamp the headers

What a freeze holds, and where:

* **log writes**: ``LogWriter.pause`` (engine/logwriter.py). The flush leader waits before writing; appends go
  on in memory, so a durable commit waits in its flush until the thaw and is never refused for the freeze.
* **page and header writes, checkpoints, ``E00.chk``, circular-log deletion, mount/dismount of a store**: a
  *holder* thread owns the storage group's mutex and every store's flush lock for the whole freeze (locks a
  thread owns can only be released by it, and the watchdog must be able to end the freeze whoever froze). The
  holder waits on nothing else once it holds them; it is the watchdog too: after ``timeout`` it thaws by itself.
* **the maintenance thread** skips its writing steps while a shadow copy holds the slot (engine/maintenance.py),
  so it neither writes nor blocks.
* **streaming backups**: ``BackupSlot.claim_for_snapshot`` (engine/backupslot.py): a begin is refused with -505
  while frozen or completing, and a freeze with -2403 while a session runs. Log truncation runs only inside a
  session or ``complete_snapshot``, so no log is deleted during a freeze.

Other storage groups are untouched: every hold is per storage group. A dismount (or going offline) while frozen
thaws first (``BackupSlot.terminate``, event 2007); the freeze's owner then gets -800 from ``thaw``: its shadow
copy may have been taken after the writes resumed. The lock order of docs/architecture.md holds: the holder
takes the storage group's mutex, then the flush locks; the freezing thread waits only for the holder and the log.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shadowstore.engine import storeheader
from shadowstore.engine.backup import KINDS, CompletionReport, check_can_begin
from shadowstore.engine.logstream import LogSet
from shadowstore.errors import (
    BackupAbortedError,
    InvalidBackupSequenceError,
    InvalidParameterError,
    MissingFileToBackupError,
    NotMountedError,
    OSSnapshotNotAllowedError,
    OSSnapshotTimeOutError,
)
from shadowstore.format.common import BACKUP_SNAPSHOT, BackupInfo, LgPos, now_us
from shadowstore.format.dbheader import DbHeader
from shadowstore.format.logfile import archived_log_name

if TYPE_CHECKING:
    from shadowstore.engine.storagegroup import StorageGroup
    from shadowstore.engine.store import Store

_log = logging.getLogger("shadowstore.snapshot")

# The states of a freeze: setting up, in place, and how it ended.
FREEZING, FROZEN, THAWED, TIMED_OUT, ABORTED, FAILED = "freezing", "frozen", "thawed", "timed out", "aborted", "failed"


# --- the API -----------------------------------------------------------------------------------------------------


def prepare_snapshot(sg: StorageGroup) -> None:
    """PrepareForSnapshot: write a checkpoint (every store's newest state, then ``E00.chk``) so that the freeze
    window holds little. Raises OSSnapshotNotAllowedError (-2403) when a streaming backup session runs on ``sg``,
    a shadow copy already holds it, or it is not mounted (or still recovering); what ``checkpoint`` raises."""
    _refuse_if_not_allowed(sg, "prepare a shadow copy of")
    sg.checkpoint()


def freeze(sg: StorageGroup, *, timeout: float, on_timeout: Callable[[], None] | None = None) -> FrozenGroup:
    """Freeze ``sg`` for a shadow copy and return what the snapshot must hold (event 2001).

    Refuses with -2403 (no event: the writer emits 2002 and 9611) when a streaming backup session runs, ``sg``
    is already frozen, or it is not mounted (recovering). Otherwise: takes the holds (module docstring), rolls
    the log (the current generation becomes archived generation G, so the snapshot holds whole generations),
    and pauses the log writer. Raises OSSnapshotTimeOutError when the holds cannot be taken within ``timeout``
    (a long checkpoint or dismount), MissingFileToBackupError (-569, event 459) when a generation the snapshot
    needs is missing, and what the log roll raises; nothing stays held then.

    After ``timeout`` seconds the holder thread thaws by itself: ``timed_out`` is set, event 2004 logged, every
    hold released, then ``on_timeout`` called (from that thread); ``thaw`` then raises -2402.
    """
    if not timeout > 0:
        raise InvalidParameterError(f"the freeze timeout must be positive, not {timeout!r}")
    _refuse_if_not_allowed(sg, "freeze")
    frozen = FrozenGroup(sg.name, now_us())
    hold = _Hold(sg, frozen, timeout, on_timeout)
    frozen._hold = hold
    refusal = sg.backups.claim_for_snapshot(hold)
    if refusal is not None:
        raise _not_allowed(sg, "freeze", refusal)
    hold.put_in_place()
    return frozen


@dataclass
class FrozenGroup:
    """A storage group frozen for a shadow copy (``freeze``); what the snapshot must contain."""

    sg_name: str
    started_us: int
    last_generation: int = 0  # G: every commit acknowledged before the freeze is in generations <= G
    low_generation: int = 0  # the lowest generation a restore of the snapshot needs
    headers: dict[str, DbHeader] = field(default_factory=dict)  # store name -> durable header at the freeze
    files: list[str] = field(default_factory=list)  # stores, log generations low..G, the checkpoint file
    timed_out: bool = False
    _hold: _Hold | None = field(default=None, repr=False, compare=False)

    def thaw(self) -> None:
        """Release the holds (event 2003); the log writer flushes what commits appended meanwhile. Idempotent.

        Raises OSSnapshotTimeOutError (-2402) when the watchdog thawed first (event 2004 was logged then), and
        BackupAbortedError (-800) when a dismount thawed it (event 2007): in both cases writes may have resumed
        while the provider ran, so the shadow copy cannot be trusted."""
        assert self._hold is not None
        self._hold.thaw()

    def __str__(self) -> str:
        return self._hold.describe() if self._hold is not None else f"shadow copy of {self.sg_name!r}"


def complete_snapshot(sg: StorageGroup, kind: str, frozen: FrozenGroup) -> CompletionReport:
    """BackupComplete for a shadow-copy backup whose set is stored: truncate the logs (full, incremental) by the
    rules of ``BackupSession.complete``, stamp the headers of the stores the snapshot holds (the previous-backup
    slot of ``kind`` and 'Current Shadow copy backup', type BACKUP_SNAPSHOT), record the backup in ``E00.chk``,
    event 2006. Truncation events 224/225, and 227 for logs already gone (counted, not fatal).

    Raises -1003 for an unknown kind or a group that is not ``sg``'s, -521 while still frozen or when already
    completed, -2402 / -800 when the freeze ended before thaw (nothing truncated or stamped), -2403 when a
    streaming session runs, -526 / -560 (event 206) for an incremental or differential that cannot be one, and
    what deleting or stamping raises (DiskIOError)."""
    hold = frozen._hold
    if kind not in KINDS:
        raise InvalidParameterError(f"backup kind {kind!r} is not one of {', '.join(KINDS)}")
    if hold is None or frozen.sg_name != sg.name or hold.sg is not sg:
        raise InvalidParameterError(f"this frozen group is of {frozen.sg_name!r}, not of {sg.name!r}")
    hold.check_completable()
    refusal = sg.backups.claim_for_snapshot(hold)
    if refusal is not None:
        raise _not_allowed(sg, "complete the shadow copy of", refusal)
    try:
        if not sg.mounted:
            raise NotMountedError(f"storage group {sg.name!r} is not mounted")
        check_can_begin(sg, kind)
        report = CompletionReport()
        if kind in ("full", "incremental"):
            _truncate(sg, _delete_range(sg, kind, frozen, hold), report)
        info = BackupInfo(hold.mark, now_us(), _set_low(sg, kind, frozen), frozen.last_generation, BACKUP_SNAPSHOT)
        for name in frozen.headers:
            store = sg.stores.get(name)
            if store is not None and store.mounted:
                _stamp(store, kind, info)
                report.stamped.append(name)
        sg.note_backup(kind, info)
        hold.completed = True
        sg.events.emit(2006, sg=sg.name, instance=sg.name, sync=True)
        return report
    finally:
        sg.backups.release_snapshot(hold)


# --- refusals ------------------------------------------------------------------------------------------------------


def _refuse_if_not_allowed(sg: StorageGroup, doing: str) -> None:
    """-2403 when a shadow copy of ``sg`` cannot start: not mounted (recovering), a session runs, one holds it."""
    if not sg.mounted:
        raise _not_allowed(sg, doing, "it is not mounted (or is still recovering)")
    session, snapshot = sg.backups.session, sg.backups.snapshot
    if session is not None:
        raise _not_allowed(sg, doing, f"a streaming backup session is running: {session.describe()}")
    if snapshot is not None:
        raise _not_allowed(sg, doing, snapshot.describe())


def _not_allowed(sg: StorageGroup, doing: str, why: str) -> OSSnapshotNotAllowedError:
    error = OSSnapshotNotAllowedError(f"cannot {doing} storage group {sg.name!r}: {why}")
    if why.startswith("it is not mounted"):
        error.hint = f"mount {sg.name!r} (and let its recovery finish), then retry (this error is retryable)"
    elif not why.startswith("a streaming"):
        error.hint = "wait for the other shadow copy to thaw and complete (its deadline bounds it), then retry"
    return error


# --- the holds -------------------------------------------------------------------------------------------------------


class _Hold:
    """The mechanism of one freeze: its state, the holder thread (also the watchdog), the paused log."""

    def __init__(
        self, sg: StorageGroup, frozen: FrozenGroup, timeout: float, on_timeout: Callable[[], None] | None
    ) -> None:
        self.sg = sg
        self.frozen = frozen
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.state = FREEZING
        self.completed = False
        self.mark = LgPos(0, 0)  # the position the freeze's roll started: the backup mark
        self.checkpoint_gen = 0  # the checkpoint at the freeze: truncation never passes it
        self.on_disk_low = 0  # the lowest archived generation on disk at the freeze
        self._lock = threading.Lock()  # the state; held by the freezing thread while it sets the freeze up
        self._holding = False
        self._log_paused = False
        self._held = threading.Event()  # the holder owns the locks, or gave up
        self._release = threading.Event()  # end the holds
        self._done = threading.Event()  # the holder released every lock
        self._thread = threading.Thread(target=self._run, name=f"snapshot freeze {sg.name}", daemon=True)

    def describe(self) -> str:
        if self.state == FREEZING:
            return f"a shadow copy is being frozen (deadline {self.timeout:g} s)"
        if self.state == FROZEN:
            return (
                f"it is frozen for a shadow copy since {_clock(self.frozen.started_us)} (it thaws by itself "
                f"after {self.timeout:g} s)"
            )
        return f"a shadow copy frozen at {_clock(self.frozen.started_us)} is completing"

    # --- the freezing thread ---------------------------------------------------------------------------------

    def put_in_place(self) -> None:
        """Take the holds, roll the log and pause it, fill in the frozen group. On failure nothing stays held."""
        self._thread.start()
        self._held.wait()
        with self._lock:
            try:
                self._roll_and_pause()
                self._describe_files()
            except BaseException:
                self.state = FAILED
                self._unhold()
                raise
            self.frozen.started_us = now_us()
            self.state = FROZEN
            # why under the lock: the watchdog's 2004 must come after it
            self.sg.events.emit(2001, sg=self.sg.name, instance=self.sg.name)

    def _roll_and_pause(self) -> None:
        # Requires: the holder is done taking the locks (no checkpoint, so no store header, can then move past
        # the roll).
        sg = self.sg
        if not self._holding:
            raise OSSnapshotTimeOutError(
                f"could not freeze storage group {sg.name!r} within {self.timeout:g} s: a checkpoint, mount or "
                "dismount kept its writes going"
            )
        if not sg.mounted:
            raise _not_allowed(sg, "freeze", "it is not mounted (or is still recovering)")
        sg.check_writable()
        # why from the roll's own position: other threads' commits may fill and roll more generations before
        # the pause; the snapshot ends where this mark is, and later generations are not part of it
        self.mark = sg.log.roll()
        sg.log.flush(self.mark)
        sg.log.pause()
        self._log_paused = True

    def _describe_files(self) -> None:
        sg, frozen = self.sg, self.frozen
        frozen.last_generation = top = self.mark.gen - 1
        frozen.headers = {s.name: s.header for s in sg.stores.values() if s.mounted and s.header is not None}
        self.checkpoint_gen = sg.checkpoint_position.gen
        frozen.low_generation = low = min([self.checkpoint_gen, *(h.replay_start.gen for h in frozen.headers.values())])
        logs = LogSet.scan(sg.fs, sg.config.log_dir, sg.base)
        self.on_disk_low = min(logs.archived, default=top + 1)
        missing = [g for g in range(low, top + 1) if g not in logs.archived]
        if missing:
            for gen in missing[:10]:
                sg.events.emit(459, sg=sg.name, file=archived_log_name(sg.base, gen))
            raise MissingFileToBackupError(
                f"storage group {sg.name!r} cannot be frozen for a shadow copy: log generations {missing[0]}-"
                f"{missing[-1]}, which a restore of it needs, are missing from {sg.config.log_dir}",
                hint="let the storage group's maintenance advance its checkpoint past them (events 1011/1012), then "
                "take a full backup",
            )
        frozen.files = [
            *(sg.stores[name].path for name in frozen.headers),
            *(os.path.join(sg.config.log_dir, archived_log_name(sg.base, g)) for g in range(low, top + 1)),
            sg.checkpoint_path,
        ]

    # --- ending the freeze (any thread) -----------------------------------------------------------------------

    def thaw(self) -> None:
        with self._lock:
            if self.state == TIMED_OUT:
                raise OSSnapshotTimeOutError(
                    f"the freeze of storage group {self.sg.name!r} timed out after {self.timeout:g} s and it thawed "
                    "by itself (event 2004): the shadow copy may hold writes made after the freeze"
                )
            if self.state == ABORTED:
                raise BackupAbortedError(
                    f"the freeze of storage group {self.sg.name!r} ended before the thaw because the storage group "
                    "was dismounted (event 2007): the shadow copy may hold writes made after the freeze",
                    hint="mount the storage group and run the backup again",
                )
            if self.state != FROZEN:
                return
            self.state = THAWED
        self._unhold()
        self.sg.events.emit(2003, sg=self.sg.name, instance=self.sg.name)

    def abort(self, detail: str) -> None:
        """The storage group is going away (``BackupSlot.terminate``): thaw now, event 2007."""
        with self._lock:
            if self.state != FROZEN:
                return
            self.state = ABORTED
        self._unhold()
        self.sg.events.emit(2007, sg=self.sg.name, instance=self.sg.name, detail=detail)

    def _expire(self) -> bool:
        """The watchdog: the deadline passed before the thaw. Returns whether this ended the freeze."""
        with self._lock:
            if self.state != FROZEN:
                return False
            self.state = TIMED_OUT
            self.frozen.timed_out = True
        self.sg.events.emit(2004, sg=self.sg.name, instance=self.sg.name, ms=int(self.timeout * 1000))
        self._unhold()
        return True

    def _unhold(self) -> None:
        """Resume the log, let the holder release its locks (and wait for it), free the slot."""
        if self._log_paused:
            self._log_paused = False
            self.sg.log.resume()
        self._release.set()
        if threading.current_thread() is not self._thread:
            self._done.wait()
        self.sg.backups.release_snapshot(self)

    def check_completable(self) -> None:
        """Before ``complete_snapshot``: the freeze ended by a thaw, and only once completed."""
        if self.state == FROZEN:
            raise InvalidBackupSequenceError(
                f"storage group {self.sg.name!r} is still frozen; thaw it before completing the shadow copy"
            )
        if self.state in (TIMED_OUT, ABORTED):
            self.thaw()  # raises the error the freeze ended with; nothing is truncated or stamped
        if self.completed:
            raise InvalidBackupSequenceError(f"the shadow copy of {self.sg.name!r} was already completed")

    # --- the holder thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        taken: list[threading.RLock] = []
        expired = False
        try:
            for lock in _write_locks(self.sg):
                if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    break
                taken.append(lock)
            else:
                self._holding = True
                self._held.set()
                if not self._release.wait(self.timeout):  # why from here: the freezing thread's setup is short
                    expired = self._expire()
        finally:
            for lock in reversed(taken):
                lock.release()
            self._held.set()
            self._done.set()
        if expired and self.on_timeout is not None:
            try:
                self.on_timeout()
            except Exception:
                _log.exception("the freeze timeout callback of %s failed", self.sg.name)


def _write_locks(sg: StorageGroup) -> list[threading.RLock]:
    """The locks every write of a store file, ``E00.chk`` or a log deletion outside a backup takes: the storage
    group's mutex (checkpoints, mount and dismount of stores, circular logging), then each store's flush lock
    (page and header writes). The lock order of docs/architecture.md."""
    return [sg._mutex, *(store._flush_lock for store in sg.stores.values())]


# --- completion --------------------------------------------------------------------------------------------------


def _delete_range(sg: StorageGroup, kind: str, frozen: FrozenGroup, hold: _Hold) -> range:
    """The generations a completed snapshot makes unnecessary: the rule of ``BackupSession.prepare_logs`` at the
    freeze. From the oldest on disk, below the checkpoint and the set's end, and for a full backup below the
    replay start of every store the snapshot holds."""
    top = frozen.last_generation
    delete_high = min(hold.checkpoint_gen, sg.checkpoint_position.gen, top + 1)
    if kind == "full":
        delete_high = min(delete_high, *(h.replay_start.gen for h in frozen.headers.values()))
    return range(min(hold.on_disk_low, delete_high), delete_high)


def _truncate(sg: StorageGroup, delete: range, report: CompletionReport) -> None:
    """Delete ``delete`` in increasing order, as ``BackupSession._truncate`` does (events 224/225, 227)."""
    if not delete:
        sg.events.emit(225, sg=sg.name)
        return
    low, high = archived_log_name(sg.base, delete.start), archived_log_name(sg.base, delete[-1])
    sg.events.emit(224, sg=sg.name, low=low, high=high, sync=True)  # why synced: before any delete
    sg.watch.forget_below(delete.stop)  # before deleting: the health check must not see them go
    deleted, missing = sg.delete_logs(delete, crash_point="snapshot.truncate.after_delete")
    report.truncated.extend(deleted)
    report.missing.extend(missing)
    if missing:
        names = ", ".join(archived_log_name(sg.base, g) for g in missing[:20])
        sg.events.emit(227, sg=sg.name, count=len(missing), missing=names)


def _set_low(sg: StorageGroup, kind: str, frozen: FrozenGroup) -> int:
    """The first generation of the set: the snapshot's low generation (full, copy), or the generation after the
    previous backup in each store's chain (incremental, differential), as ``BackupSession._copy_low``."""
    if kind in ("full", "copy"):
        return frozen.low_generation
    previous = [
        max(s.header.full_prev.gen_high, s.header.inc_prev.gen_high if kind == "incremental" else 0)
        for s in sg.stores.values()
        if s.mounted and s.header is not None
    ]
    return min(previous, default=frozen.last_generation) + 1


def _stamp(store: Store, kind: str, info: BackupInfo) -> None:
    """The slot of ``kind`` and 'Current Shadow copy backup' in one durable header write (both copies).

    Under the store's flush lock, as ``Store.stamp_backup``: one header write at a time."""
    with store._flush_lock:
        if store.file is None or store.header is None:
            raise NotMountedError(f"store {store.name} is not open")
        store.sg.check_writable()
        header = storeheader.stamped(store.header, kind, info)._replace(snapshot_cur=info)
        store.file.write_header(header)
        store.header = header


def _clock(us: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(us / 1e6)) + " UTC"
