"""The maintenance thread of a mounted storage group.

Every ``policy.interval`` seconds (sooner when the log writer reports a roll or a full disk) one cycle:

1. takes the storage group offline if the log writer failed (event 1020);
2. dismounts it if the log disk filled and a reserve log is in use (event 1021);
3. flushes lazily committed transactions;
4. after log rolls, records the stores' Log Required maximum in their headers;
5. aborts a write transaction that held its store's writer latch longer than ``transaction_timeout``
   (event 1026), so that no idle client can hold up dismount, checkpoints or backups;
6. reports once a lock file someone deleted or replaced (event 1028);
7. checks the log folder (engine/health.py): a deleted, moved or replaced log is reported at once (events
   1010/1011) and, when crash recovery still needed it, every store is written and the checkpoint advanced
   past it (event 1012);
8. takes a checkpoint when the replay start lags by ``checkpoint_generations`` generations or
   ``checkpoint_bytes`` of log, or ``checkpoint_seconds`` passed since the last one with commits since.

While a shadow copy holds the storage group (frozen or completing, engine/snapshot.py), steps 3-8 wait for a
later cycle: they would only wait for the thaw.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shadowstore.engine import layout
from shadowstore.engine.health import MISSING, Finding
from shadowstore.engine.writerlatch import LatchWatch
from shadowstore.errors import LogDiskFullError, ShadowStoreError, StorageGroupOfflineError
from shadowstore.format.common import now_us
from shadowstore.format.logfile import archived_log_name

if TYPE_CHECKING:
    from shadowstore.engine.storagegroup import StorageGroup

_log = logging.getLogger("shadowstore.maintenance")


@dataclass
class MaintenancePolicy:
    interval: float = 0.5
    checkpoint_generations: int = 4
    checkpoint_bytes: int = 64 << 20
    checkpoint_seconds: float = 60.0
    transaction_timeout: float = 60.0  # a write transaction holding its store's writer latch longer is aborted


class Maintenance:
    def __init__(self, sg: StorageGroup) -> None:
        self.sg = sg
        self.policy = sg.policy
        self._wake = threading.Event()
        self._stop = False
        self._cond = threading.Condition()
        self.cycles = 0
        self._disk_full = False
        self._commits = 0
        self._seen_gen = sg.log.disk_generation
        self._bytes_at_checkpoint = sg.log.bytes_appended
        self._last_warning: str | None = None
        self._lock_reported = False
        self._latch_watches: dict[str, LatchWatch] = {}
        self._thread = threading.Thread(target=self._run, name=f"maintenance {sg.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (unless called from it)."""
        self._stop = True
        self._wake.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join()

    def wake(self) -> None:
        """Run the next cycle now (a failure to act on, say)."""
        self._wake.set()

    def note_roll(self, generation: int) -> None:
        self._wake.set()

    def note_disk_full(self) -> None:
        self._disk_full = True
        self._wake.set()

    def note_commit(self) -> None:
        self._commits += 1

    def run_cycles(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Wake the thread and wait until ``count`` more complete cycles ran (for tools and tests)."""
        with self._cond:
            target = self.cycles + count
            while self.cycles < target and self._thread.is_alive():
                self._wake.set()
                if not self._cond.wait(timeout):
                    return False
            return self.cycles >= target

    # --- the loop ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop:
                self._wake.wait(self.policy.interval)
                self._wake.clear()
                if self._stop:
                    break
                try:
                    self._cycle()
                    self._last_warning = None
                except ShadowStoreError as exc:
                    if str(exc) != self._last_warning:  # why: a refusal that repeats each cycle is said once
                        self._last_warning = str(exc)
                        _log.warning("maintenance of %s: %s", self.sg.name, exc)
                except Exception as exc:
                    self._fail(exc)
                with self._cond:
                    self.cycles += 1
                    self._cond.notify_all()
        except BaseException:
            # why: a simulated power loss in tests (or interpreter exit) ends the thread quietly.
            pass
        finally:
            with self._cond:
                self._cond.notify_all()

    def _fail(self, exc: Exception) -> None:
        """An error the engine did not expect (an OSError from a file system that misbehaves, say): maintenance
        cannot go on safely (lazy commits would stay unflushed, leases unenforced, checkpoints not taken), so
        the storage group goes offline once, with event 1025 and one traceback in the log, never a loop."""
        sg = self.sg
        _log.error("maintenance of %s failed; taking it offline", sg.name, exc_info=exc)
        detail = f"{type(exc).__name__}: {exc}"
        sg.log.fail(StorageGroupOfflineError(f"the maintenance of storage group {sg.name!r} failed: {detail}"))
        sg.events.emit(1025, sg=sg.name, error=detail)
        self._stop = True
        sg.go_offline(f"its maintenance failed: {detail}")

    def _cycle(self) -> None:
        sg = self.sg
        log = sg.log
        if not sg.mounted:
            self._stop = True
            return
        if log.failed is not None:
            self._stop = True
            sg.go_offline(str(log.failed))
            return
        if self._disk_full:
            self._stop = True
            self._dismount_for_disk_full()
            return
        if sg.backups.snapshot is not None:
            # why: a shadow copy holds this storage group's writes (engine/snapshot.py); a flush, header write or
            # checkpoint would wait for the thaw, and this thread with it. The next cycle after it does them.
            return
        if log.tail > log.flushed:
            log.flush()
            for store in sg.stores.values():
                if store.mounted:
                    store.publish_flushed()
        self._after_rolls()
        sg.backups.tick()
        self._enforce_transaction_timeout()
        self._check_lock_file()
        with log.stable_current() as (handle, header, generation):
            findings = sg.watch.check(generation, handle, None if header is None else header.pack())
        if findings:
            self._handle_findings(findings)
        if self._checkpoint_due():
            self._checkpoint()

    def _check_lock_file(self) -> None:
        """Report once (event 1028) a lock file someone deleted or replaced: the lock still holds, but the next
        mount should make the file again."""
        lock = self.sg.held_lock
        intact = lock is None or lock.path_intact()
        if not intact and not self._lock_reported:
            self.sg.events.emit(1028, sg=self.sg.name, file=self.sg.lock_path)
        self._lock_reported = not intact

    def _enforce_transaction_timeout(self) -> None:
        """Abort a write transaction that has held its store's writer latch past the bound (event 1026)."""
        bound = self.policy.transaction_timeout
        for store in self.sg.stores.values():
            held = self._latch_watches.setdefault(store.name, LatchWatch()).held(store.latch)
            if store.mounted and held > bound:
                why = "a transaction may not hold it longer"
                if store.abort_writer(self.sg.writer_timeout_error(store, held, why)) is not None:
                    self.sg.events.emit(1026, sg=self.sg.name, store=store.name, seconds=f"{held:.1f}", why=why)

    def _after_rolls(self) -> None:
        sg = self.sg
        current = sg.log.disk_generation
        if current == self._seen_gen:
            return
        self._seen_gen = current
        for store in sg.stores.values():
            if store.mounted:
                store.update_required_max(current)

    def _checkpoint_due(self) -> bool:
        sg, policy = self.sg, self.policy
        if sg.log.generation - sg.checkpoint_position.gen >= policy.checkpoint_generations:
            return True
        if sg.log.bytes_appended - self._bytes_at_checkpoint >= policy.checkpoint_bytes:
            return True
        elapsed = (now_us() - sg.last_checkpoint_us) / 1e6
        return self._commits > 0 and elapsed >= policy.checkpoint_seconds

    def _checkpoint(self) -> None:
        self._commits = 0
        self._bytes_at_checkpoint = self.sg.log.bytes_appended
        self.sg.checkpoint()

    def _handle_findings(self, findings: list[Finding]) -> None:
        sg = self.sg
        checkpoint_gen = sg.checkpoint_position.gen
        needed = [f for f in findings if f.current or f.generation >= checkpoint_gen]
        for finding in findings:
            name = archived_log_name(sg.base, finding.generation) if not finding.current else finding.path
            if finding in needed:
                detail = "Crash recovery needed it; the checkpoint will be advanced past it."
            else:
                detail = (
                    "It is below the checkpoint, so crash recovery does not need it; an incremental backup does, "
                    "so take a full backup."
                )
            if finding.problem == MISSING:
                sg.events.emit(1011, sg=sg.name, file=name, gen=finding.generation, detail=detail)
            else:
                sg.events.emit(1010, sg=sg.name, file=name, gen=finding.generation)
        if not needed:
            return
        if any(f.current for f in needed):
            sg.log.roll()
            sg.log.flush()
        before = sg.checkpoint_position
        self._checkpoint()
        after = sg.checkpoint_position
        low = min(f.generation for f in needed)
        high = max(f.generation for f in needed)
        reason = ", ".join(f"generation {f.generation} {f.problem}" for f in needed)
        sg.events.emit(
            1012, sg=sg.name, checkpoint=str(after), low=min(low, before.gen), high=high, reason=reason, sync=True
        )

    def _dismount_for_disk_full(self) -> None:
        """Dismount cleanly while the log runs on a reserve log.

        The reserve log not yet in use is released first: it exists only to make this shutdown possible,
        and its space lets the stores write their last pages. The next mount creates it again.
        """
        sg = self.sg
        sg.stopped_because = LogDiskFullError(
            f"storage group {sg.name!r} was dismounted because its log disk ({sg.config.log_dir}) is full"
        )
        released = layout.release_spare_reserve(sg.fs, sg.config.log_dir)
        try:
            sg.dismount()
        except ShadowStoreError as exc:
            _log.warning("dismount of %s after a full log disk: %s", sg.name, exc)
        sg.events.emit(1021, sg=sg.name, file=sg.current_log_path, released=released or "none")
