"""The store writer of a running service, seen from the backup program (the requestor): a ``Writer`` whose steps
are calls to the service (service/api/vss.py). While the job runs a thread renews its lease; a program killed
with SIGKILL stops renewing and the service aborts the job (thawing first) when the lease lapses.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from dataclasses import dataclass
from typing import Any

from shadowstore.engine.backup import CompletionReport
from shadowstore.errors import ShadowStoreError
from shadowstore.format.dbheader import DbHeader, unpack_db_header
from shadowstore.service.client import ServiceClient
from shadowstore.vss.storewriter import StoreWriter
from shadowstore.vss.writer import SOURCE_TRANSACTED_DB, USAGE_USER_DATA, SnapshotStoreWriter, WriterMetadata


@dataclass
class RemoteFrozen:
    """What the service's freeze of one storage group left (the fields a SnapshotSource reads)."""

    started_us: int
    last_generation: int
    low_generation: int
    headers: dict[str, DbHeader]


class RemoteStoreWriter(SnapshotStoreWriter):
    name = StoreWriter.name
    writer_id = StoreWriter.writer_id

    def __init__(self, client: ServiceClient, owner: str) -> None:
        super().__init__()
        self.client = client
        self.owner = owner
        self.job: str | None = None
        self.frozen: dict[str, RemoteFrozen] = {}
        self.last_commit_us: dict[str, int | None] = {}
        self.completed: dict[str, CompletionReport] = {}
        self._files: list[str] = []
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _call(self, step: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(f"/v1/vss/jobs/{self.job}/{step}", body)

    def on_identify(self) -> WriterMetadata:
        status = self.client.get("/v1/vss/writers")[0]
        self.instance_id = str(status["instance_id"])
        return WriterMetadata(self.name, self.writer_id, self.instance_id, USAGE_USER_DATA, SOURCE_TRANSACTED_DB, 2)

    def on_prepare_backup(self, kind: str, components: list[str]) -> None:
        begun = self.client.post("/v1/vss/jobs", {"kind": kind, "components": components, "owner": self.owner})
        self.job = str(begun["id"])
        lease = float(begun["lease_seconds"])
        self._stop.clear()
        self._beat = threading.Thread(target=self._renew, args=(lease / 3,), name="vss job lease", daemon=True)
        self._beat.start()

    def _renew(self, every: float) -> None:
        while not self._stop.wait(every):
            with contextlib.suppress(ShadowStoreError):
                self._call("heartbeat")

    def on_prepare_snapshot(self) -> None:
        self._call("prepare-snapshot")

    def on_freeze(self) -> None:
        answer = self._call("freeze")
        for name, group in answer["groups"].items():
            headers = {s: unpack_db_header(base64.b64decode(h)) for s, h in group["headers"].items()}
            self.frozen[name] = RemoteFrozen(
                int(group["started_us"]), int(group["last_generation"]), int(group["low_generation"]), headers
            )
            self.last_commit_us[name] = group["last_commit_us"]
        self._files = [str(path) for path in answer["files"]]

    def snapshot_files(self) -> list[str]:
        return list(self._files)

    def on_thaw(self) -> None:
        self._call("thaw")

    def on_post_snapshot(self, files: dict[str, str]) -> None:
        self._call("post-snapshot", {"files": files})

    def on_backup_complete(self, succeeded: dict[str, bool]) -> None:
        done = self._call("backup-complete", {"succeeded": succeeded})
        self.completed = {
            sg: CompletionReport(truncated=r["truncated"], missing=r["missing"], stamped=r["stamped"])
            for sg, r in done.items()
        }

    def on_backup_shutdown(self) -> None:
        self._stop.set()
        if self.job is not None:
            with contextlib.suppress(ShadowStoreError):
                self.client.delete(f"/v1/vss/jobs/{self.job}")
        self.job = None

    def on_abort(self) -> None:
        if self.job is not None:
            with contextlib.suppress(ShadowStoreError):
                self._call("abort")
