"""The backup program's side of a session the service runs: a ``BackupSource`` over the API, with a heartbeat.

``remote_session`` begins a session and renews its lease from a thread every third of the lease while the
program runs; a program killed with SIGKILL stops renewing and the service ends the session when the lease
lapses (event 215). Leaving the ``with`` block without completing ends the session at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from shadowstore.backup.manifest import DatabaseEntry
from shadowstore.backup.pace import Pace
from shadowstore.backup.report import BackupReport
from shadowstore.backup.run import BackupOutcome, Progress, default_owner, run_backup
from shadowstore.backup.target import Target
from shadowstore.engine.backup import CompletionReport
from shadowstore.errors import BackupAbortedError, ShadowStoreError
from shadowstore.home import ServerHome
from shadowstore.service.client import ServiceClient


class _RemoteCopy:
    def __init__(self, source: RemoteSource, store: str, opened: dict[str, Any]) -> None:
        self._source = source
        self._store = store
        self.file_name = str(opened["file"])
        self.size = int(opened["size"])
        self._entry: DatabaseEntry | None = None
        self._read = 0

    def __enter__(self) -> _RemoteCopy:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._entry is None and exc_type is not None:
            return  # the session ends as the program unwinds; closing first would only add a second error

    def chunks(self) -> Iterator[bytes]:
        for chunk in self._source.client.stream("GET", self._source.path(f"/stores/{quote(self._store)}/data")):
            self._read += len(chunk)
            yield chunk
        # a stream the service cut (a damaged page failed the session) ends short: close says why
        self._entry = DatabaseEntry(
            **self._source.client.post(self._source.path(f"/stores/{quote(self._store)}/close"))
        )

    def entry(self) -> DatabaseEntry:
        assert self._entry is not None, "entry() before every chunk was read"
        return self._entry


class RemoteSource:
    """A begun session in the service (see backup/source.py for the calls)."""

    def __init__(self, client: ServiceClient, begun: dict[str, Any]) -> None:
        self.client = client
        self.id = str(begun["id"])
        self.sg_name = str(begun["sg"])
        self.log_base = str(begun["log_base"])
        self.signature: dict[str, object] = begun["signature"]
        self.home_id = str(begun["home_id"])
        self.target_lease_seconds = float(begun["target_lease_seconds"])
        self.lease_seconds = float(begun["lease_seconds"])
        self.ended = False

    def path(self, tail: str = "") -> str:
        return f"/v1/backup-sessions/{self.id}{tail}"

    def databases(self) -> list[str]:
        return list(self.client.get(self.path("/stores")))

    def open_database(self, store: str) -> _RemoteCopy:
        return _RemoteCopy(self, store, self.client.post(self.path(f"/stores/{quote(store)}/open")))

    def prepare_logs(self) -> tuple[range, int | None]:
        logs = self.client.post(self.path("/logs/prepare"))
        return range(int(logs["first"]), int(logs["stop"])), logs["end_us"]

    def read_log(self, generation: int) -> bytes:
        return self.client.request("GET", self.path(f"/logs/{generation}")).content

    def read_checkpoint(self) -> tuple[str, bytes]:
        response = self.client.request("GET", self.path("/checkpoint"))
        return response.headers["X-File-Name"], response.content

    def prove_coverage(self) -> None:
        self.client.post(self.path("/prove"))

    def complete(self) -> CompletionReport:
        done = self.client.post(self.path("/complete"))
        self.ended = True
        return CompletionReport(truncated=done["truncated"], missing=done["missing"], stamped=done["stamped"])

    def abort(self, detail: str, error: ShadowStoreError | None = None) -> None:
        if not self.ended:
            self.ended = True
            with contextlib.suppress(ShadowStoreError):  # why: the service may have ended it already
                self.client.delete(self.path(), reason=detail if error is None else f"{detail}: {error}")

    def crash_point(self, name: str) -> None:
        """Crash points are the engine's test hooks; the service's process has its own."""

    def heartbeat(self) -> None:
        self.client.post(self.path("/heartbeat"))

    def check_running(self) -> None:
        self.heartbeat()  # why a heartbeat: the service refuses it for a session that has ended


def begin_remote(client: ServiceClient, sg: str, kind: str, owner: str) -> RemoteSource:
    return RemoteSource(client, client.post("/v1/backup-sessions", {"sg": sg, "kind": kind, "owner": owner}))


@contextlib.contextmanager
def remote_session(source: RemoteSource) -> Iterator[RemoteSource]:
    """Keep ``source``'s lease while the block runs; end the session when the block leaves without completing."""
    stop = threading.Event()
    failure: list[ShadowStoreError] = []

    def renew() -> None:
        while not stop.wait(source.lease_seconds / 3):
            try:
                source.heartbeat()
            except ShadowStoreError as exc:
                failure.append(exc)  # the session ended (an administrator, a dismount): the next call says so
                return

    beat = threading.Thread(target=renew, name=f"heartbeat {source.id}", daemon=True)
    beat.start()
    try:
        yield source
    except BaseException as exc:
        source.abort("the backup program stopped" + (f": {exc}" if str(exc) else ""))
        if failure and not isinstance(exc, ShadowStoreError):
            raise BackupAbortedError(f"the backup session ended: {failure[0].message}") from exc
        raise
    else:
        if not source.ended:
            source.abort("it ended without completing")
    finally:
        stop.set()
        beat.join()


def back_up_remote(
    client: ServiceClient,
    home: ServerHome,
    sg_name: str,
    kind: str,
    target: Target,
    *,
    level: int | None = None,
    owner: str | None = None,
    report: BackupReport,
    progress: Progress = lambda name, done, size, total: None,
    pace: Pace | None = None,
) -> BackupOutcome:
    """``back_up`` of a storage group the service owns: the same program, reading through the API."""
    owner = owner or default_owner()

    def begin() -> contextlib.AbstractContextManager[RemoteSource]:
        return remote_session(begin_remote(client, sg_name, kind, owner))

    return run_backup(begin, home, sg_name, kind, target, owner, level, report, progress, pace)
