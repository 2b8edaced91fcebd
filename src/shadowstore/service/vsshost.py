"""The writers in the service: the store writer lives here, beside the stores it freezes, and so do the command
hooks of ``[[vss.hook]]`` (vss/hookwriter.py); a backup program (the requestor) drives them through the API
(service/api/vss.py, client side in service/remotewriter.py) as one participant: each step goes to every hosted
writer, the hooks frozen before the store and thawed after it, so the store's commits are held only while the
provider commits.

One shadow-copy job at a time (as Exchange 2003's writer allowed). A job has a lease like a backup session
(``service.session_lease_seconds``): every call renews it; a requestor that dies, or stops calling, loses the
job when the lease lapses: every writer aborts (the store thaws, the hooks' post-thaw commands run) and the job
is shut down, so the next job starts at once. A job frozen past ``vss.freeze_seconds`` has its hooks resumed
then (the store thaws by its own watchdog), so no application stays paused longer than a freeze may last.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from shadowstore.backup.snapshotrun import freeze_seconds
from shadowstore.errors import InvalidBackupSequenceError, NoBackupError, SnapshotJobRunningError
from shadowstore.vss.hookwriter import CommandHookWriter, hook_writers
from shadowstore.vss.storewriter import StoreWriter
from shadowstore.vss.writer import Writer

if TYPE_CHECKING:
    from shadowstore.service.host import InformationStore


class _Job:
    def __init__(self, job_id: str, owner: str, lease: float) -> None:
        self.id = job_id
        self.owner = owner
        self.lease = lease
        self.renewed = time.monotonic()
        self.frozen_at: float | None = None

    def lapsed(self) -> bool:
        return time.monotonic() - self.renewed > self.lease

    def frozen_too_long(self, limit: float) -> bool:
        return self.frozen_at is not None and time.monotonic() - self.frozen_at > limit


class VssHost:
    def __init__(self, host: InformationStore) -> None:
        self.host = host
        self._lock = threading.RLock()
        self._writer: StoreWriter | None = None
        self._hooks: list[CommandHookWriter] = []  # the job's (read from the configuration at its begin)
        self.job: _Job | None = None
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watch_leases, name="vss job leases", daemon=True)
        self._watch.start()

    def writer(self) -> StoreWriter:
        with self._lock:
            home = self.host.owned()
            if self._writer is None or self._writer.home is not home:
                self._writer = StoreWriter(home, freeze_seconds=freeze_seconds(self.host.settings()))
            return self._writer

    def writers(self) -> list[dict[str, Any]]:
        """The store writer's status, then each hook's: the job's hooks while one runs or after it, else as the
        configuration names them now."""
        with self._lock:
            hooks = self._hooks or hook_writers(self.host.settings())
            return [self.writer().status(), *(hook.status() for hook in hooks)]

    def _all(self) -> list[Writer]:
        """The hosted writers in freeze order: the hooks first, so the store holds commits the shortest time."""
        return [*self._hooks, self.writer()]

    # --- the job ----------------------------------------------------------------------------------------------

    def begin(self, kind: str, components: list[str], owner: str, lease: float | None) -> dict[str, Any]:
        with self._lock:
            self._reap()
            if self.job is not None:
                raise SnapshotJobRunningError(
                    f"a shadow-copy job is running, owned by {self.job.owner!r}; one runs at a time",
                    hint="wait for it to end (its lease ends it if its owner died)",
                )
            settings = self.host.settings()
            writer = self.writer()
            writer.freeze_seconds = freeze_seconds(settings)
            self._hooks = hook_writers(settings)
            metadata = writer.identify()
            hooks = [hook.identify().to_dict() for hook in self._hooks]
            self.job = _Job(secrets.token_hex(8), owner, lease or self.host.session_lease())
            try:
                for each in self._all():
                    each.prepare_for_backup(kind, components)
            except BaseException:
                self.abort_job()
                raise
            return {
                "id": self.job.id,
                "lease_seconds": self.job.lease,
                "metadata": metadata.to_dict(),
                "hooks": hooks,
            }

    def step(self, job_id: str, step: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._own(job_id)
            job = self.job
            assert job is not None
            try:
                return self._step(job, step, body)
            finally:
                # why renew at the end too: a requestor waiting for a long step (hooks pausing) is not silent,
                # and the lease must not lapse under it the moment the step returns
                job.renewed = time.monotonic()

    def _step(self, job: _Job, step: str, body: dict[str, Any]) -> dict[str, Any]:
        writer = self.writer()
        if step == "prepare-snapshot":
            for each in self._all():
                each.prepare_for_snapshot()
        elif step == "freeze":
            for each in self._all():
                each.freeze()
            # why after: the bound is on the time frozen, as the store's own deadline is, not on how long the
            # hooks took to pause (their timeout bounds that); set before, a slow pre_freeze had the watchdog
            # resume the hooks right after the step, before the provider committed
            job.frozen_at = time.monotonic()
            return self._frozen(writer, self._hooks)
        elif step == "thaw":
            for each in reversed(self._all()):
                each.thaw()
            job.frozen_at = None
        elif step == "post-snapshot":
            files = {str(k): str(v) for k, v in dict(body.get("files") or {}).items()}
            for each in self._all():
                each.post_snapshot(files)
        elif step == "backup-complete":
            succeeded = {str(k): bool(v) for k, v in dict(body.get("succeeded") or {}).items()}
            for each in self._all():
                each.backup_complete(succeeded)
            return {
                sg: {"truncated": r.truncated, "missing": r.missing, "stamped": r.stamped}
                for sg, r in writer.completed.items()
            }
        elif step == "abort":
            self._abort_all()
        elif step != "heartbeat":
            raise InvalidBackupSequenceError(f"no such step of a shadow-copy job: {step!r}")
        return {"id": job.id, "state": writer.status()}

    def end(self, job_id: str) -> dict[str, Any]:
        """BackupShutdown: the job ends, whatever happened in it."""
        with self._lock:
            if self.job is None or self.job.id != job_id:
                return {"id": job_id, "ended": "not running"}
            for each in reversed(self._all()):
                each.backup_shutdown()  # why every one, in any state: a hook still paused resumes here
            self.job = None
            return {"id": job_id, "ended": True, "state": self.writer().status()}

    def abort_job(self) -> None:
        """Abort the running job (if any) and shut it down: every writer thaws or resumes."""
        with self._lock:
            if self.job is not None:
                self._abort_all()
                self.end(self.job.id)

    def stop(self) -> None:
        self._stop.set()
        self.abort_job()

    # --- inner workings -------------------------------------------------------------------------------------

    def _own(self, job_id: str) -> None:
        self._reap()
        if self.job is None or self.job.id != job_id:
            raise NoBackupError(
                f"shadow-copy job {job_id} is not running (it ended, or its lease lapsed)",
                hint="the service ended it and thawed its writers (event 1062 if its lease lapsed); run the backup "
                "again, and if the lease lapses again raise service.session_lease_seconds",
            )  # why a hint of its own: the default one says nothing needs doing, but this job's backup failed
        self.job.renewed = time.monotonic()

    def _abort_all(self) -> None:
        for each in reversed(self._all()):
            each.abort()  # never raises: a failure shows in that writer's state

    def _reap(self) -> None:
        job = self.job
        if job is None:
            return
        if job.lapsed():
            self._abort_all()
            self.end(job.id)
            self.host.owned().events.emit(1062, owner=job.owner)
        elif job.frozen_too_long(self.writer().freeze_seconds):
            # why only the hooks: the store writer thaws by its own watchdog and answers the requestor's thaw
            # with -2402; the hooks have no watchdog of their own, and their application must not stay paused
            job.frozen_at = None
            for hook in self._hooks:
                hook.abort()

    def _watch_leases(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if self.host.home is not None:
                    self._reap()

    @staticmethod
    def _frozen(writer: StoreWriter, hooks: list[CommandHookWriter]) -> dict[str, Any]:
        groups = {}
        for name, frozen in writer.frozen.items():
            groups[name] = {
                "started_us": frozen.started_us,
                "last_generation": frozen.last_generation,
                "low_generation": frozen.low_generation,
                "headers": {s: base64.b64encode(h.pack()).decode() for s, h in frozen.headers.items()},
                "last_commit_us": writer.last_commit_us.get(name),
            }
        files = writer.snapshot_files() + [path for hook in hooks for path in hook.snapshot_files()]
        return {"groups": groups, "files": files}
