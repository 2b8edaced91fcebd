"""Streaming backup sessions the service runs for backup programs in other processes.

A session is the engine's (engine/backup.py) begun with a lease: the program renews it with a heartbeat, and
every call it makes renews it too. A program that dies (kill -9) or whose connection drops stops renewing, and
the storage group's maintenance thread ends the session once the lease lapses (event 215); the next backup
begins at once. A backup that begins before then, while the owner the session names is a process of this host
that no longer exists, ends it first (event 215 too) instead of being refused. Nothing of a session is written
that a restart would trust.

Each session has an id the program names in every call; a call naming a session that ended says how it ended.
The program reads one store at a time: ``open`` pins it, ``read`` streams its bytes, ``close`` gives the facts
its manifest records. A read cut short (the program went away) leaves the store open until the session ends.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shadowstore.backup.sessions import owner_gone
from shadowstore.backup.source import database_entry
from shadowstore.config import NUMBER_SETTINGS
from shadowstore.engine.backup import KINDS, BackupSession
from shadowstore.engine.dbcopy import DatabaseCopy
from shadowstore.engine.store import Store
from shadowstore.errors import (
    BackupAbortedError,
    InvalidBackupSequenceError,
    InvalidParameterError,
    NoBackupError,
    ShadowStoreError,
)
from shadowstore.io.blockread import owned
from shadowstore.io.fs import read_file

if TYPE_CHECKING:
    from shadowstore.service.host import InformationStore

_LEASE = NUMBER_SETTINGS["service.session_lease_seconds"]
MIN_LEASE, MAX_LEASE = _LEASE.least, _LEASE.most  # what a program may ask for, as the setting may say
_ENDED_KEPT = 64  # ended sessions remembered, so a late call learns how its session ended


@dataclass
class HostedSession:
    id: str
    session: BackupSession
    started: float = field(default_factory=time.monotonic)
    copy: tuple[Store, DatabaseCopy] | None = None
    failure: ShadowStoreError | None = None
    completed: bool = False
    served: int = 0  # bytes the program was sent (stores, logs, checkpoint)

    def renew(self) -> None:
        self.session.heartbeat()

    def describe(self) -> dict[str, object]:
        return {"id": self.id, **self.session.to_dict(), "lease_seconds": self.session.lease_seconds}


class SessionTable:
    """The sessions of every storage group the service owns, by id."""

    def __init__(self, host: InformationStore) -> None:
        self.host = host
        self._mutex = threading.Lock()
        self._running: dict[str, HostedSession] = {}
        self._ended: dict[str, str] = {}  # id -> how it ended

    # --- begin, find, end ------------------------------------------------------------------------------------

    def begin(self, sg_name: str, kind: str, owner: str, lease_seconds: float | None) -> HostedSession:
        """Begin a session. Raises -1003 for an unknown kind or a lease out of bounds, and the engine's refusals
        (-505 naming the running session, -526, -560, not mounted)."""
        if kind not in KINDS:
            raise InvalidParameterError(f"backup kind {kind!r} is not one of {', '.join(KINDS)}")
        lease = self.host.session_lease() if lease_seconds is None else lease_seconds
        if not MIN_LEASE <= lease <= MAX_LEASE:
            raise InvalidParameterError(f"a lease of {lease:g} s is out of bounds ({MIN_LEASE:g}-{MAX_LEASE:g} s)")
        sg = self.host.storage_group(sg_name)
        self.reap()
        self._end_orphans(sg_name)
        session = sg.begin_backup(kind, owner=owner, lease_seconds=lease)
        hosted = HostedSession(secrets.token_hex(8), session)
        with self._mutex:
            self._running[hosted.id] = hosted
        return hosted

    def get(self, session_id: str) -> HostedSession:
        """The running session ``session_id``, renewed. Raises NoBackupError (-520) saying how it ended."""
        self.reap()
        with self._mutex:
            hosted = self._running.get(session_id)
            ended = self._ended.get(session_id)
        if hosted is None:
            why = f": {ended}" if ended else " (the service does not know it: restarted since?)"
            raise NoBackupError(
                f"backup session {session_id} is not running{why}", hint="begin a new backup; nothing of it was kept"
            )
        hosted.renew()
        return hosted

    def end(self, session_id: str, detail: str) -> dict[str, object]:
        """Abort a session on its program's request (event 215). Ending one that already ended is not an error."""
        with self._mutex:
            hosted = self._running.get(session_id)
        if hosted is None:
            return {"id": session_id, "ended": self._ended.get(session_id, "not running")}
        self._close_copy(hosted)
        if not hosted.session.ended:
            hosted.session.abort(detail)
        self.reap()
        return {"id": session_id, "ended": detail}

    def abort_sg(self, sg_name: str) -> dict[str, object]:
        """``backup abort``: an administrator ends the storage group's session (event 215). Raises -520 when
        none is running."""
        self.host.storage_group(sg_name)  # NotFoundError for a name that is not configured
        self.reap()
        with self._mutex:
            found = [h for h in self._running.values() if h.session.sg.name == sg_name]
        if not found:
            raise NoBackupError(f"no backup session is running for {sg_name!r}")
        for hosted in found:
            self.end(hosted.id, "an administrator ended it (shadowstore backup abort)")
        return {"sg": sg_name, "ended": True, "message": f"The backup session of {sg_name!r} was ended."}

    def end_for(self, sg_name: str, detail: str) -> None:
        with self._mutex:
            found = [h for h in self._running.values() if h.session.sg.name == sg_name]
        for hosted in found:
            self._close_copy(hosted)
            if not hosted.session.ended:
                hosted.session.abort(detail, by_server=True)
        self.reap()

    def _end_orphans(self, sg_name: str) -> None:
        """End the storage group's session whose program is known to be gone (a process of this host that no
        longer exists, killed for instance), at once rather than when its lease lapses: the backup beginning
        now would otherwise be refused until then."""
        with self._mutex:
            found = [h for h in self._running.values() if h.session.sg.name == sg_name]
        for hosted in found:
            if owner_gone(hosted.session.owner):
                self.end(hosted.id, f"its program is gone ({hosted.session.owner}); a new backup began")

    def end_all(self, detail: str) -> None:
        with self._mutex:
            names = {h.session.sg.name for h in self._running.values()}
        for name in names:
            self.end_for(name, detail)

    def reap(self) -> None:
        """Forget sessions the engine ended (completed, aborted, or ended by its maintenance at lease lapse)."""
        with self._mutex:
            for session_id, hosted in list(self._running.items()):
                if hosted.session.ended:
                    del self._running[session_id]
                    self._ended[session_id] = self._how_ended(hosted)
                    failed = hosted.failure or hosted.session.error
                    result = "completed" if hosted.completed else "failed" if failed else "aborted"
                    self.host.metrics.backup_ended(hosted.session.sg.name, hosted.session.kind, result)
                    if hosted.copy is not None:
                        hosted.copy[1].close()
                        hosted.copy = None
            while len(self._ended) > _ENDED_KEPT:
                self._ended.pop(next(iter(self._ended)))

    @staticmethod
    def _how_ended(hosted: HostedSession) -> str:
        if hosted.completed:
            return "it completed"
        if hosted.failure is not None:
            return f"it failed: {hosted.failure}"
        if hosted.session.lease_lapsed():
            return "its lease lapsed (the program stopped renewing it), so the service ended it"
        return "it was aborted"

    def describe(self) -> list[dict[str, object]]:
        self.reap()
        with self._mutex:
            return [h.describe() for h in self._running.values()]

    # --- the program's calls -----------------------------------------------------------------------------------

    def open_store(self, hosted: HostedSession, store_name: str) -> dict[str, object]:
        if hosted.copy is not None:
            raise InvalidBackupSequenceError(
                f"store {hosted.copy[0].name!r} is still open; close it before opening {store_name!r}"
            )
        store = hosted.session.sg.store(store_name)
        copy = hosted.session.open_database(store)
        hosted.copy = (store, copy)
        return {"store": store.name, "file": store.path.rpartition("/")[2], "size": copy.size}

    def read_store(self, hosted: HostedSession, store_name: str) -> Iterator[bytes]:
        """The open store's bytes. A failure (a damaged page, -1018) ends the stream early; the session is then
        aborted and ``close`` reports why."""
        store, copy = self.open_copy_of(hosted, store_name)
        try:
            for data in owned(copy.chunks()):  # why owned: a lent block goes out over the socket after its turn
                hosted.renew()  # why: a program reading is alive, even between heartbeats
                yield data
        except ShadowStoreError as exc:
            hosted.failure = exc
            if not hosted.session.ended:
                hosted.session.abort(f"reading {store.name!r} failed", error=exc)

    def close_store(self, hosted: HostedSession, store_name: str) -> dict[str, object]:
        store, copy = self.open_copy_of(hosted, store_name)
        complete = copy.read == copy.size
        entry = database_entry(store, copy)
        self._close_copy(hosted)
        if hosted.failure is not None:
            raise hosted.failure
        if not complete:
            raise InvalidBackupSequenceError(
                f"store {store_name!r} was closed after {copy.read:,} of its {copy.size:,} bytes were read"
            )
        return dataclasses.asdict(entry)

    def open_copy_of(self, hosted: HostedSession, store_name: str) -> tuple[Store, DatabaseCopy]:
        if hosted.copy is None or hosted.copy[0].name != store_name:
            if hosted.session.ended:
                raise BackupAbortedError(f"the backup session was ended: {self._how_ended(hosted)}")
            raise InvalidBackupSequenceError(f"store {store_name!r} is not open in this backup session")
        return hosted.copy

    def _close_copy(self, hosted: HostedSession) -> None:
        if hosted.copy is not None:
            hosted.copy[1].close()
            hosted.copy = None

    @staticmethod
    def checkpoint(hosted: HostedSession) -> bytes:
        sg = hosted.session.sg
        return read_file(sg.fs, sg.checkpoint_path)
