"""The one backup session a storage group may have, and how other processes see and end it.

``BackupSlot`` holds the running session in memory. For other processes (``shadowstore backup status`` and
``backup abort`` from another shell) it keeps two small files in the storage group's system folder:

* ``E00.backup.json`` — what is running (owner, kind, start, lease, bytes so far), rewritten each maintenance
  cycle and removed when the session ends. It is **informational only**: the engine never reads it, so a
  restart can never trust it; a reader checks that the owner still holds the storage group's lock.
* ``E00.backup-abort`` — a request to end the session, written by ``backup abort`` in another process; the
  owner's maintenance thread ends the session within one cycle (event 215) and removes the request.

Neither file can block a backup: they describe or end a session, they never start or hold one.

A shadow copy (engine/snapshot.py) holds the slot too while its storage group is frozen and while it completes
(``claim_for_snapshot``): a streaming begin is then refused with -505, as ESE's JetBeginExternalBackup is while
a snapshot holds the backup flags, and a freeze is refused with -2403 while a session runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from typing import TYPE_CHECKING, Protocol

from shadowstore.engine.backup import BackupSession, check_can_begin
from shadowstore.errors import BackupInProgressError, NoBackupError, NotMountedError, ShadowStoreError
from shadowstore.format.common import BackupInfo, now_us
from shadowstore.io.fs import read_file
from shadowstore.io.replace import temporary_name

if TYPE_CHECKING:
    from shadowstore.engine.storagegroup import StorageGroup


def status_path(system_dir: str, base: str) -> str:
    return os.path.join(system_dir, f"{base}.backup.json")


def abort_request_path(system_dir: str, base: str) -> str:
    return os.path.join(system_dir, f"{base}.backup-abort")


class SnapshotHold(Protocol):
    """What the slot needs of a shadow copy holding it (engine/snapshot.py)."""

    def describe(self) -> str: ...

    def abort(self, detail: str) -> None: ...


class BackupSlot:
    def __init__(self, sg: StorageGroup) -> None:
        self.sg = sg
        self._lock = threading.Lock()
        self.session: BackupSession | None = None
        self.snapshot: SnapshotHold | None = None  # a shadow copy frozen or completing (engine/snapshot.py)
        self.status_path = status_path(sg.config.system_dir, sg.base)
        self.abort_path = abort_request_path(sg.config.system_dir, sg.base)

    def _not_mounted(self) -> ShadowStoreError:
        """Why a backup cannot begin on a storage group that is not mounted: the reason the engine itself
        dismounted it (a full log disk, an I/O error), or that it is not mounted."""
        what = f"storage group {self.sg.name!r}"
        return self.sg.stopped_error(what) or NotMountedError(f"{what} is not mounted")

    def begin(self, kind: str, owner: str, lease_seconds: float | None) -> BackupSession:
        """Start a backup session. Raises -505 (naming the running session's owner, start and lease), -526,
        -560 (event 206) and NotMountedError."""
        sg = self.sg
        if not sg.mounted:
            raise self._not_mounted()
        self._refuse_if_snapshot()  # why before the checkpoint: a freeze would make it wait for the thaw
        if self.session is None and kind in ("full", "copy"):
            # why: the copies are consistent at their durable headers; writing everything first makes them
            # need only the logs from now on, not every generation since the last checkpoint.
            try:
                sg.checkpoint()
            except NotMountedError:
                raise self._not_mounted() from None  # the engine dismounted it meanwhile (a full log disk)
        with self._lock:
            if self.session is not None:
                raise BackupInProgressError(
                    f"a backup session is already running for {sg.name!r}: {self.session.describe()}"
                )
            self._refuse_if_snapshot()
            check_can_begin(sg, kind)
            self._discard(self.abort_path)  # a request for an earlier session must not end this one
            session = BackupSession(sg, kind, owner, lease_seconds)
            self.session = session
            sg.waits.busy.add(session)  # commits now may wait behind the copy (engine/flushwaits.py)
        sg.events.emit(200 if kind in ("full", "copy") else 201, sg=sg.name)
        sg.events.emit(210 if kind in ("full", "copy") else 211, sg=sg.name, kind=kind)
        self.publish()
        return session

    def _refuse_if_snapshot(self) -> None:
        snapshot = self.snapshot
        if snapshot is not None:
            raise BackupInProgressError(
                f"a shadow copy backup holds {self.sg.name!r}: {snapshot.describe()}",
                hint="wait for the shadow copy to thaw and complete (its freeze deadline bounds it), then retry",
            )

    def claim_for_snapshot(self, snapshot: SnapshotHold) -> str | None:
        """Let a shadow copy hold the slot while it is frozen or completing. Returns None when it now holds
        it, or why it cannot (a streaming session runs, or another shadow copy holds it)."""
        with self._lock:
            if self.session is not None:
                return f"a streaming backup session is running: {self.session.describe()}"
            if self.snapshot is not None:
                return f"{self.snapshot.describe()}"
            self.snapshot = snapshot
            return None

    def release_snapshot(self, snapshot: SnapshotHold) -> None:
        with self._lock:
            if self.snapshot is snapshot:
                self.snapshot = None

    def ended(self, session: BackupSession) -> None:
        with self._lock:
            if self.session is session:
                self.session = None
            self.sg.waits.busy.discard(session)
            self._discard(self.status_path)

    def abort(self, detail: str) -> BackupSession:
        """End the running session (event 215). Raises NoBackupError (-520) when there is none."""
        session = self.session
        if session is None:
            raise NoBackupError(f"no backup session is running for {self.sg.name!r}")
        session.abort(detail)
        return session

    def terminate(self) -> None:
        """The storage group is going away: end any session (event 226) and thaw a freeze (event 2007)."""
        snapshot = self.snapshot
        if snapshot is not None:  # why first: dismount takes the storage group's mutex, which a freeze holds
            snapshot.abort("the storage group is being dismounted")
        session = self.session
        if session is not None:
            session.abort("the storage group is being dismounted", by_server=True)

    def tick(self) -> None:
        """Once per maintenance cycle: a lapsed lease or an abort request ends the session; else publish."""
        session = self.session
        if session is None:
            return
        if session.lease_lapsed():
            session.abort(f"Its lease (renewed by heartbeats from {session.owner!r}) lapsed.")
        elif self.sg.fs.exists(self.abort_path):
            requester = self._read(self.abort_path).get("requester", "an administrator")
            self._discard(self.abort_path)
            session.abort(f"It was ended by {requester} (shadowstore backup abort).")
        else:
            self.publish()

    def publish(self) -> None:
        """Rewrite the informational status file (not synced: it describes, it is never trusted).

        Under the slot lock, so that a session that has just ended is never described again."""
        with self._lock:
            session = self.session
            if session is None or session.ended:
                return
            data = json.dumps({**session.to_dict(), "updated": now_us()}).encode()
            tmp = temporary_name(self.status_path)  # a reader never sees a half-written file
            try:
                handle = self.sg.fs.open(tmp, exclusive=True)
                try:
                    handle.pwrite(data, 0)
                finally:
                    handle.close()
                self.sg.fs.rename(tmp, self.status_path)
            except OSError:
                with contextlib.suppress(OSError):
                    self.sg.fs.unlink(tmp)
                return  # status is best effort; the session itself does not depend on it

    def _read(self, path: str) -> dict[str, object]:
        try:
            value = json.loads(read_file(self.sg.fs, path))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def _discard(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.sg.fs.unlink(path)


def note_backup_in_checkpoint(sg: StorageGroup, kind: str, info: BackupInfo) -> None:
    """Full and incremental backups are also recorded in E00.chk (FullBackup / IncBackup)."""
    if kind == "full":
        sg.last_full_backup = (info.mark, info.time_us)
        sg.last_inc_backup = None
    elif kind == "incremental":
        sg.last_inc_backup = (info.mark, info.time_us)
    else:
        return
    sg.write_checkpoint()
