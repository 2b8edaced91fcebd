"""The requestor: drives one shadow-copy job through its writers and a provider (research/vss.md §1.2).

``Requestor.run`` calls every writer's Identify, PrepareForBackup, PrepareForSnapshot and Freeze, has the
provider commit the snapshot within ``commit_seconds`` (10 s, as VSS bounds a provider), thaws (the writers in
the reverse of their freeze order, as the service does: a writer listed first, such as a command hook, pauses
before and resumes after the ones behind it, so the store holds commits only while the provider commits), calls
PostSnapshot, hands the snapshot to the backup program's ``copy`` (which stores and verifies the sets and says
which components succeeded), calls BackupComplete, and — always, whatever failed — Abort where needed,
BackupShutdown on every writer and the removal of the snapshot.

The provider's commit runs in a thread the requestor waits for with a bound: a provider that hangs cannot hold
the job (the writers' own freeze deadline thaws them meanwhile, engine/snapshot.py); its thread is left to
finish, and a snapshot it makes after the job gave up is found and removed by the next job (``sweep``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shadowstore.errors import OSSnapshotTimeOutError, ShadowStoreError, SnapshotProviderError
from shadowstore.vss.providers import Provider, Snapshot
from shadowstore.vss.writer import Writer

DEFAULT_COMMIT_SECONDS = 10.0

Copy = Callable[[dict[str, str]], dict[str, bool]]


@dataclass
class JobReport:
    snapshot_id: str
    provider: str
    commit_seconds: float = 0.0
    freeze_seconds: float = 0.0  # the last writer's freeze to its thaw: how long the store held commits
    succeeded: dict[str, bool] = field(default_factory=dict)


class Requestor:
    def __init__(self, writers: list[Writer], provider: Provider, *, commit_seconds: float = DEFAULT_COMMIT_SECONDS):
        self.writers = writers
        self.provider = provider
        self.commit_seconds = commit_seconds

    def run(self, kind: str, selection: dict[Writer, list[str]], copy: Copy) -> JobReport:
        """One job. Raises the first failure (a writer's veto such as -2403, -2402 when a freeze outlived its
        deadline, the provider's failure or timeout, the copy's error) after every writer was shut down."""
        report = JobReport(
            f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}", self.provider.name
        )
        snap: Snapshot | None = None
        try:
            for writer in self.writers:
                writer.identify()
            for writer in self.writers:
                writer.prepare_for_backup(kind, selection.get(writer, []))
            for writer in self.writers:
                writer.prepare_for_snapshot()
            frozen_at = time.monotonic()
            for writer in self.writers:
                frozen_at = time.monotonic()  # why per writer: the last one (the store) is the one holding commits
                writer.freeze()
            paths = [path for writer in self.writers for path in writer.snapshot_files()]
            try:
                snap = self._commit(paths, report.snapshot_id)
            except SnapshotProviderError as exc:
                self._deadline_first(exc)
                raise
            report.commit_seconds = snap.commit_seconds
            for index, writer in enumerate(reversed(self.writers)):
                writer.thaw()
                if index == 0:
                    report.freeze_seconds = time.monotonic() - frozen_at
            for writer in self.writers:
                writer.post_snapshot(snap.files)
            report.succeeded = copy(snap.files)
            for writer in self.writers:
                writer.backup_complete(report.succeeded)
        except BaseException:
            for writer in reversed(self.writers):
                writer.abort()
            raise
        finally:
            for writer in self.writers:
                writer.backup_shutdown()
            if snap is not None:
                snap.remove()
        return report

    def _deadline_first(self, failure: SnapshotProviderError) -> None:
        """The provider failed or hung: thaw now. A writer whose freeze deadline passed meanwhile (it thawed by
        itself) answers -2402, which is then what the job failed with: the writers' bound came first."""
        for writer in reversed(self.writers):
            try:
                writer.thaw()
            except OSSnapshotTimeOutError as timeout:
                raise timeout from failure
            except ShadowStoreError:
                continue  # the abort that follows releases it; the provider's failure is the job's

    def _commit(self, paths: list[str], snapshot_id: str) -> Snapshot:
        """The provider's commit, waited for at most ``commit_seconds``."""
        done: list[Snapshot] = []
        failed: list[BaseException] = []

        def commit() -> None:
            try:
                done.append(self.provider.snapshot(paths, snapshot_id))
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=commit, name=f"snapshot {snapshot_id}", daemon=True)
        thread.start()
        thread.join(self.commit_seconds)
        if thread.is_alive():
            raise SnapshotProviderError(
                f"the {self.provider.name} provider did not make the shadow copy within {self.commit_seconds:g} s; "
                "the writers were thawed and the job abandoned",
                hint="the next job removes the shadow copy if it is made after all; check the volume",
            )
        if failed:
            error = failed[0]
            if isinstance(error, ShadowStoreError):
                raise error
            raise SnapshotProviderError(f"the {self.provider.name} provider failed: {error}") from error
        return done[0]
