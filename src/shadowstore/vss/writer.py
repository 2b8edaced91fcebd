"""The writer protocol of the shadow-copy framework (DESIGN §6, research/vss.md §1.2-1.8).

A writer owns data it must quiesce for a snapshot. The requestor (vss/requestor.py) calls, in order:
``identify`` → ``prepare_for_backup`` → ``prepare_for_snapshot`` → ``freeze`` → (the provider's commit) →
``thaw`` → ``post_snapshot`` → (the requestor copies from the snapshot) → ``backup_complete`` →
``backup_shutdown`` (always, even after a failure); ``abort`` may come at any time after
``prepare_for_backup``. A writer vetoes a step by raising ``WriterVeto`` (or any ShadowStoreError): its state
becomes the step's FAILED_AT state with a failure code, and stays so for ``vss writers`` to show until the next
job's ``identify``, which starts it from Stable again: a failed job never blocks the next one.

``Writer`` keeps the states; subclasses implement the ``on_*`` handlers.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shadowstore.engine.backup import CompletionReport
from shadowstore.errors import BackupError, ShadowStoreError
from shadowstore.vss.states import FAILED_AT, WriterFailure, WriterState

USAGE_USER_DATA = 3  # VSS_USAGE_TYPE
SOURCE_TRANSACTED_DB = 1  # VSS_SOURCE_TYPE
SOURCE_OTHER = 3
RESTORE_IF_CAN_REPLACE = 2  # VSS_RME_*
RESTORE_CUSTOM = 7


class WriterVeto(BackupError):
    """A writer refuses a step of a shadow-copy job; ``failure`` says whether a retry may succeed. The job fails
    with it: a backup refused (exit code 20)."""

    def __init__(self, message: str, *, failure: WriterFailure, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failure = failure


@dataclass
class FileGroup:
    path: str  # a folder
    spec: str  # a file name or a wildcard
    role: str  # "database", "logs", "checkpoint", "files"


@dataclass
class Component:
    logical_path: str
    name: str
    kind: str  # "database" (database files and their logs) or "filegroup"
    files: list[FileGroup] = field(default_factory=list)
    selectable: bool = True

    @property
    def key(self) -> str:
        return f"{self.logical_path}/{self.name}" if self.logical_path else self.name


@dataclass
class WriterMetadata:
    name: str
    writer_id: str
    instance_id: str
    usage_type: int
    source_type: int
    restore_method: int
    components: list[Component] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Writer:
    """State keeping shared by every writer. ``name`` and ``writer_id`` identify the writer class (the same for
    every instance, as VSS's), ``instance_id`` this instance."""

    name = "Writer"
    writer_id = "00000000-0000-0000-0000-000000000000"

    def __init__(self) -> None:
        self.instance_id = str(uuid.uuid4())
        self.state = WriterState.STABLE
        self.failure = WriterFailure.NONE
        self.failure_detail: str | None = None
        self.kind: str | None = None
        self.selected: list[str] = []
        self._lock = threading.RLock()

    # --- what vss writers shows -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "writer_id": self.writer_id,
            "instance_id": self.instance_id,
            "state": int(self.state),
            "state_name": self.state.words,
            "last_error": self.failure.words,
            "failure": f"0x{int(self.failure):08X}" if self.failure else None,
            "detail": self.failure_detail,
        }

    # --- the steps ------------------------------------------------------------------------------------------

    def identify(self) -> WriterMetadata:
        with self._lock:
            self.state, self.failure, self.failure_detail = WriterState.STABLE, WriterFailure.NONE, None
            self.kind, self.selected = None, []
            return self._step("identify", self.on_identify, WriterState.STABLE)

    def prepare_for_backup(self, kind: str, components: list[str]) -> None:
        with self._lock:
            self.kind, self.selected = kind, list(components)
            self._step("prepare_backup", lambda: self.on_prepare_backup(kind, components), WriterState.STABLE)

    def prepare_for_snapshot(self) -> None:
        self._step("prepare_snapshot", self.on_prepare_snapshot, WriterState.WAITING_FOR_FREEZE)

    def freeze(self) -> None:
        self._step("freeze", self.on_freeze, WriterState.WAITING_FOR_THAW)

    def thaw(self) -> None:
        self._step("thaw", self.on_thaw, WriterState.WAITING_FOR_POST_SNAPSHOT)

    def post_snapshot(self, files: dict[str, str]) -> None:
        self._step("post_snapshot", lambda: self.on_post_snapshot(files), WriterState.WAITING_FOR_BACKUP_COMPLETE)

    def backup_complete(self, succeeded: dict[str, bool]) -> None:
        self._step("backup_complete", lambda: self.on_backup_complete(succeeded), WriterState.STABLE)

    def pre_restore(self, components: list[str]) -> None:
        """Before files of ``components`` are restored: let them be replaced (the store writer dismounts)."""
        with self._lock:
            self.state, self.failure, self.failure_detail = WriterState.STABLE, WriterFailure.NONE, None
            self._step("pre_restore", lambda: self.on_pre_restore(components), WriterState.STABLE)

    def post_restore(self, components: list[str], succeeded: dict[str, bool]) -> None:
        """After the restore: bring back what was restored (the store writer mounts, which recovers)."""
        self._step("post_restore", lambda: self.on_post_restore(components, succeeded), WriterState.STABLE)

    def backup_shutdown(self) -> None:
        """The end of the job, also after failures: release everything. A failed state stays to be shown."""
        failed = self.state.failed
        try:
            self.on_backup_shutdown()
        except ShadowStoreError as exc:
            self._fail("backup_shutdown", exc)
            return
        if not failed:
            self.state = WriterState.STABLE

    def abort(self) -> None:
        """The job is abandoned: release what is held (thaw first). Never raises; the state shows the failure
        that made the requestor abort, if it was this writer's."""
        try:
            self.on_abort()
        except ShadowStoreError as exc:
            self.failure_detail = f"abort: {exc}"

    def _step(self, step: str, handler: Any, then: WriterState) -> Any:
        if self.state.failed:
            raise WriterVeto(
                f"{self.name} failed earlier in this job ({self.failure_detail}); the job cannot go on",
                failure=self.failure,
            )
        try:
            result = handler()
        except ShadowStoreError as exc:
            self._fail(step, exc)
            raise
        self.state = then
        return result

    def _fail(self, step: str, exc: ShadowStoreError) -> None:
        self.state = FAILED_AT[step]
        self.failure = exc.failure if isinstance(exc, WriterVeto) else _failure_of(exc)
        self.failure_detail = str(exc)

    # --- handlers (subclasses) -----------------------------------------------------------------------------

    def snapshot_files(self) -> list[str]:
        """The files the provider must hold in the shadow copy for this writer (after Freeze)."""
        return []

    def on_identify(self) -> WriterMetadata:
        raise NotImplementedError

    def on_prepare_backup(self, kind: str, components: list[str]) -> None:
        """Check the job can be done; nothing is held yet."""

    def on_prepare_snapshot(self) -> None:
        """The slow preparation (flushing) before the freeze."""

    def on_freeze(self) -> None:
        raise NotImplementedError

    def on_thaw(self) -> None:
        raise NotImplementedError

    def on_post_snapshot(self, files: dict[str, str]) -> None:
        """The snapshot exists: ``files`` maps each original path to its frozen copy."""

    def on_backup_complete(self, succeeded: dict[str, bool]) -> None:
        """The requestor stored the components marked True."""

    def on_backup_shutdown(self) -> None:
        """Release the job's state."""

    def on_pre_restore(self, components: list[str]) -> None:
        """Make the components' files replaceable."""

    def on_post_restore(self, components: list[str], succeeded: dict[str, bool]) -> None:
        """Bring the restored components back."""

    def on_abort(self) -> None:
        """Release whatever is held (thaw first)."""


def _failure_of(exc: ShadowStoreError) -> WriterFailure:
    """How a failure that is not a veto reads to a requestor: a timeout, or an error a retry may not fix."""
    from shadowstore.errors import OSSnapshotNotAllowedError, OSSnapshotTimeOutError

    if isinstance(exc, OSSnapshotTimeOutError):
        return WriterFailure.TIMEOUT
    if isinstance(exc, OSSnapshotNotAllowedError):
        return WriterFailure.RETRYABLE
    return WriterFailure.NON_RETRYABLE


class SnapshotStoreWriter(Writer):
    """What the snapshot backup program reads from a store writer, here (vss/storewriter.py) or in the service
    (service/remotewriter.py): per storage group, what its freeze left and the last commit before it, and after
    BackupComplete, what was truncated and stamped."""

    frozen: Mapping[str, Any]
    last_commit_us: dict[str, int | None]
    completed: dict[str, CompletionReport]
