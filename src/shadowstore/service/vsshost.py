"""The writers in the service: the store writer lives here, beside the stores it freezes, and a backup program
(the requestor) drives it through the API (service/api/vss.py, client side in service/remotewriter.py).

One shadow-copy job at a time (as Exchange 2003's writer allowed). A job has a lease like a backup session
(``service.session_lease_seconds``):
every call renews it; a requestor that dies, or stops calling, loses the job when the lease lapses: the writer
aborts (thawing first, although the engine's own freeze deadline thaws a frozen group sooner or later anyway)
and shuts the job down, so the next job starts at once.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from shadowstore.backup.snapshotrun import freeze_seconds
from shadowstore.errors import InvalidBackupSequenceError, NoBackupError, SnapshotJobRunningError
from shadowstore.vss.storewriter import StoreWriter

if TYPE_CHECKING:
    from shadowstore.service.host import InformationStore


class _Job:
    def __init__(self, job_id: str, owner: str, lease: float) -> None:
        self.id = job_id
        self.owner = owner
        self.lease = lease
        self.renewed = time.monotonic()

    def lapsed(self) -> bool:
        return time.monotonic() - self.renewed > self.lease


class VssHost:
    def __init__(self, host: InformationStore) -> None:
        self.host = host
        self._lock = threading.RLock()
        self._writer: StoreWriter | None = None
        self.job: _Job | None = None
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watch_leases, name="vss job leases", daemon=True)
        self._watch.start()

    def writer(self) -> StoreWriter:
        with self._lock:
            home = self.host.owned()
            if self._writer is None or self._writer.home is not home:
                self._writer = StoreWriter(home, freeze_seconds=freeze_seconds(home))
            return self._writer

    def writers(self) -> list[dict[str, Any]]:
        return [self.writer().status()]

    # --- the job ----------------------------------------------------------------------------------------------

    def begin(self, kind: str, components: list[str], owner: str, lease: float | None) -> dict[str, Any]:
        with self._lock:
            self._reap()
            if self.job is not None:
                raise SnapshotJobRunningError(
                    f"a shadow-copy job is running, owned by {self.job.owner!r}; one runs at a time",
                    hint="wait for it to end (its lease ends it if its owner died)",
                )
            writer = self.writer()
            writer.freeze_seconds = freeze_seconds(self.host.owned())
            metadata = writer.identify()
            self.job = _Job(secrets.token_hex(8), owner, lease or self.host.session_lease())
            try:
                writer.prepare_for_backup(kind, components)
            except BaseException:
                self.end(self.job.id)
                raise
            return {"id": self.job.id, "lease_seconds": self.job.lease, "metadata": metadata.to_dict()}

    def step(self, job_id: str, step: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._own(job_id)
            writer = self.writer()
            if step == "prepare-snapshot":
                writer.prepare_for_snapshot()
            elif step == "freeze":
                writer.freeze()
                return self._frozen(writer)
            elif step == "thaw":
                writer.thaw()
            elif step == "post-snapshot":
                writer.post_snapshot({str(k): str(v) for k, v in dict(body.get("files") or {}).items()})
            elif step == "backup-complete":
                writer.backup_complete({str(k): bool(v) for k, v in dict(body.get("succeeded") or {}).items()})
                return {
                    sg: {"truncated": r.truncated, "missing": r.missing, "stamped": r.stamped}
                    for sg, r in writer.completed.items()
                }
            elif step == "abort":
                writer.abort()
            elif step != "heartbeat":
                raise InvalidBackupSequenceError(f"no such step of a shadow-copy job: {step!r}")
            return {"id": job_id, "state": writer.status()}

    def end(self, job_id: str) -> dict[str, Any]:
        """BackupShutdown: the job ends, whatever happened in it."""
        with self._lock:
            if self.job is None or self.job.id != job_id:
                return {"id": job_id, "ended": "not running"}
            writer = self.writer()
            writer.backup_shutdown()
            self.job = None
            return {"id": job_id, "ended": True, "state": writer.status()}

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self.job is not None:
                self.writer().abort()
                self.end(self.job.id)

    # --- inner workings -------------------------------------------------------------------------------------

    def _own(self, job_id: str) -> None:
        self._reap()
        if self.job is None or self.job.id != job_id:
            raise NoBackupError(f"shadow-copy job {job_id} is not running (it ended, or its lease lapsed)")
        self.job.renewed = time.monotonic()

    def _reap(self) -> None:
        if self.job is not None and self.job.lapsed():
            writer = self.writer()
            writer.abort()
            owner = self.job.owner
            self.end(self.job.id)
            self.host.owned().events.emit(1062, owner=owner)

    def _watch_leases(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if self.host.home is not None:
                    self._reap()

    @staticmethod
    def _frozen(writer: StoreWriter) -> dict[str, Any]:
        groups = {}
        for name, frozen in writer.frozen.items():
            groups[name] = {
                "started_us": frozen.started_us,
                "last_generation": frozen.last_generation,
                "low_generation": frozen.low_generation,
                "headers": {s: base64.b64encode(h.pack()).decode() for s, h in frozen.headers.items()},
                "last_commit_us": writer.last_commit_us.get(name),
            }
        return {"groups": groups, "files": writer.snapshot_files()}
