"""The backup program: one streaming backup of a storage group into a target, as a sequence of phases.

``back_up`` begins an engine backup session, takes the set's lease in the target (backup/lease.py), copies
each store (full, copy) and each log generation into a new backup set folder of this home, checks that every
file it wrote (and the set it builds on) is still in the target, writes the manifest last and atomically, and
only then completes the session, which truncates logs (full, incremental) and stamps the store headers. Any
failure before the manifest is durable ends the session (the context manager), truncates nothing, stamps
nothing, and leaves at most an incomplete set (no manifest) that is never used. Crash points
(``backup.copy.database``, ``backup.copy.log``, ``backup.before_manifest``, ``backup.after_manifest``) let
tests stop a real process at those instants.
"""

from __future__ import annotations

import datetime as dt
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from shadowstore.backup.catalog import SetInfo, other_history, previous_in_chain
from shadowstore.backup.layout import set_folder
from shadowstore.backup.lease import DEFAULT_LEASE_SECONDS, LEASE_NAME, LeaseHolder
from shadowstore.backup.manifest import MANIFEST_NAME, DatabaseEntry, FileEntry, Manifest
from shadowstore.backup.pace import Pace
from shadowstore.backup.report import BackupReport
from shadowstore.backup.sessions import default_owner, running_elsewhere
from shadowstore.backup.setfiles import store_file
from shadowstore.backup.source import BackupSource, EngineSource
from shadowstore.backup.target import Target
from shadowstore.config import parse_seconds
from shadowstore.engine.backup import CompletionReport
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.errors import (
    BackupError,
    BackupSetError,
    MissingFullBackupError,
    ShadowStoreError,
    StorageGroupBusyError,
    unexpected,
)
from shadowstore.format.logfile import archived_log_name
from shadowstore.home import ServerHome
from shadowstore.io.blockread import Block
from shadowstore.oserrors import os_refusal

# progress(file being copied, bytes of it so far, its size if known, bytes of the whole run so far)
Progress = Callable[[str, int, int | None, int], None]


@dataclass
class BackupOutcome:
    sg: str
    backup_id: str
    kind: str
    files: list[FileEntry] = field(default_factory=list)
    completion: CompletionReport | None = None
    seconds: float = 0.0
    left_out: list[str] = field(default_factory=list)  # stores of the group a full or copy set lacks: not mounted

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def stored_bytes(self) -> int:
        return sum(f.stored_size for f in self.files)

    def to_dict(self) -> dict[str, object]:
        done = self.completion
        gens = [f.generation for f in self.files if f.generation is not None]
        return {
            "sg": self.sg,
            "id": self.backup_id,
            "kind": self.kind,
            "files": len(self.files),
            "bytes": self.bytes,
            "stored_bytes": self.stored_bytes,
            "first_gen": min(gens, default=0),
            "last_gen": max(gens, default=0),
            "seconds": round(self.seconds, 3),
            "truncated": done.truncated if done else [],
            "missing_when_truncating": done.missing if done else [],
            "stores_left_out": list(self.left_out),
        }


def new_backup_id(kind: str) -> str:
    """``YYYYMMDDTHHMMSS.ffffffZ-<kind>-<6 hex>``: ids sort in time order (to the microsecond)."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S.%fZ}-{kind}-{secrets.token_hex(3)}"


class _Run:
    """The state of one storage group's backup while it runs (phases below, in order)."""

    def __init__(
        self,
        home_id: str,
        sg_name: str,
        kind: str,
        target: Target,
        level: int | None,
        report: BackupReport,
        progress: Progress,
        pace: Pace | None = None,
    ) -> None:
        self.home_id = home_id
        self.sg_name = sg_name
        self.kind = kind
        self.target = target
        self.level = level
        self.report = report
        self.progress = progress
        self.pace = pace
        self.outcome = BackupOutcome(sg_name, new_backup_id(kind), kind)
        self.folder = set_folder(self.home_id, sg_name, self.outcome.backup_id)
        self.databases: list[DatabaseEntry] = []
        self.previous: SetInfo | None = None  # the set an incremental or differential builds on
        self.logs_end_us: int | None = None
        self.total = 0
        self.call = "begin_backup"

    def copy_databases(self, source: BackupSource) -> None:
        self.call = "open_database"
        for store in source.databases():
            with source.open_database(store) as copy:
                self.call = "read_database"
                name = copy.file_name
                chunks = self._watch(source, name, copy.size, copy.chunks(), "backup.copy.database")
                self._keep(store_file(self.target, self.folder, name, "db", chunks, level=self.level, size=copy.size))
                self.databases.append(copy.entry())
            self.call = "open_database"

    def note_left_out(self, configured: list[str]) -> None:
        """Name the stores of the group that a full or copy set does not hold (dismounted on their own, they
        were not offered), so that no one takes the set for a backup of every store."""
        copied = {d.store for d in self.databases}
        self.outcome.left_out = [name for name in configured if name not in copied]
        if self.outcome.left_out:
            self.report.note(
                f"Not in this set (not mounted): {', '.join(self.outcome.left_out)}. Mount them and take a full "
                "backup to cover them."
            )

    def copy_logs(self, source: BackupSource) -> range:
        self.call = "prepare_logs"
        copied, self.logs_end_us = source.prepare_logs()
        self._check_chain(source, copied)
        for gen in copied:
            self.call = "read_log"
            name = archived_log_name(source.log_base, gen)
            data = source.read_log(gen)
            chunks = self._watch(source, name, len(data), [data], "backup.copy.log")
            self._keep(store_file(self.target, self.folder, name, "log", chunks, level=self.level, generation=gen))
        self.call = "read_checkpoint"
        chk_name, chk = source.read_checkpoint()
        self._keep(store_file(self.target, self.folder, chk_name, "chk", [chk], level=self.level))
        return copied

    def _check_chain(self, source: BackupSource, copied: range) -> None:
        """An incremental or differential set must continue the chain *in this target*: the engine's copy
        range comes from the store headers, which remember the last backup to any target."""
        if self.kind not in ("incremental", "differential"):
            return
        if self.previous is not None and self.previous.manifest is not None:
            base = self.previous.manifest
            if self.kind == "differential":
                full = base
                expected = full.last_gen + 1
            else:
                expected = base.last_gen + 1
            if copied.start == expected:
                return
            found = f"its newest {base.kind} backup {base.backup_id} ends at log generation {base.last_gen}"
            if copied.start < expected:  # the storage group remembers an older backup than the target holds
                found += (
                    ", but the storage group never recorded that backup: either its program ended after writing the "
                    "set and before the storage group stamped and truncated (killed, or its connection lost; the set "
                    "itself is whole), or its stores were restored in place from an older backup since, or another "
                    f"copy of this home (home id {self.home_id}, its folder copied whole) backs up into this target"
                )
            else:
                found += " (was the last backup taken to another target, or a set deleted from this one?)"
        else:
            found = (
                f"it holds no whole full backup of this storage group's log stream from home {self.home_id} (was "
                "the last backup taken to another target, or a set deleted from this one?)"
            )
        error = MissingFullBackupError(
            f"the {self.kind} backup of {self.sg_name!r} would start at log generation {copied.start}, but "
            f"{self.target.url} cannot continue that chain: {found}",
            hint=f"take a full backup into {self.target.url} first",
        )
        source.abort("its target does not hold the chain it builds on", error=error)
        raise error

    def check_history(self, source: BackupSource) -> None:
        """Refuse (before the manifest: no log is truncated) when the target holds a generation this set copied
        with other bytes: another history of this home and stream backs up there (catalog.other_history)."""
        self.call = "check_history"
        logs = [f for f in self.outcome.files if f.role == "log"]
        found = other_history(self.target, self.home_id, self.sg_name, source.signature, logs)
        if found is None:
            return
        other, generation = found
        error = BackupError(
            f"{self.target.url} holds log generation {generation} of {self.sg_name!r} (home {self.home_id}, the same "
            f"log stream) with other bytes, in {other.kind} backup {other.backup_id} from server "
            f"{other.manifest.server if other.manifest else '?'}: two copies of this home back up into one target, "
            "or this machine was rolled back to an earlier image. Mixed in one chain, a restore of one could bring "
            "back the other's data; this set is left incomplete and no log is truncated",
            hint="give this home an id of its own ('shadowstore config new-home-id --yes'; its sets so far stay "
            f"restorable with --from-home {self.home_id}) and take a full backup",
        )
        source.abort("another history of this home's log stream is in the target", error=error)
        raise error

    def find_previous(self, source: BackupSource) -> None:
        """The set an incremental or differential builds on: whole, of this home and this log stream."""
        if self.kind in ("incremental", "differential"):
            self.previous = previous_in_chain(self.target, self.home_id, self.sg_name, self.kind, source.signature)

    def check_set(self, lease: LeaseHolder) -> None:
        """Before the manifest: every file written is in the target with the size written, no upload of the set
        is unfinished, the lease is still ours and the set built on is still whole. Another process may have
        deleted the set (a prune that judged it dead) while it was written; the set must not then be stamped
        complete and the logs must not be truncated."""
        self.call = "check_set"
        listed = self.target.sizes(f"{self.folder}/")
        lost = []
        for entry in self.outcome.files:
            size = listed.get(f"{self.folder}/{entry.name}")
            if size != entry.stored_size:
                lost.append(f"{entry.name} is missing" if size is None else f"{entry.name} is {size:,} bytes")
        unfinished = self.target.partial(f"{self.folder}/")
        lost += [f"an upload of {name.rpartition('/')[2]} is unfinished" for name in unfinished]
        if not lease.held():
            why = f" (renewing it failed: {lease.renew_error.message})" if lease.renew_error else ""
            lost.append(f"its {LEASE_NAME} is gone or another's{why}")
        if self.previous is not None:
            base = self.previous.folder
            sizes = self.target.sizes(f"{base}/")
            if f"{base}/{MANIFEST_NAME}" not in sizes or any(
                sizes.get(f"{base}/{f.name}") != f.stored_size
                for f in self.previous.manifest.files  # type: ignore[union-attr]
            ):
                lost.append(f"the set it builds on, {self.previous.backup_id}, is no longer whole")
        if lost:
            raise BackupSetError(
                f"backup set {self.folder} in {self.target.url} changed while it was written: {'; '.join(lost)}. "
                "It is left incomplete; no log was truncated",
                hint="another process deleted files of the set (a 'backup prune' whose clock disagrees with this "
                "server's by more than the lease, backup.lease_seconds?); run the backup again",
            )
        left, seconds = lease.remaining(), lease.lease.seconds
        if left < seconds / 2:
            # why: from here a 'backup prune' elsewhere could judge the set dead and delete it while its manifest
            # is written and the logs truncated; the check above would no longer hold.
            failed = f"; renewing it failed: {lease.renew_error.message}" if lease.renew_error else ""
            raise BackupSetError(
                f"backup set {self.folder} in {self.target.url} has only {max(left, 0):.1f} s of its {seconds:g} s "
                "lease left for its manifest, and half is needed (a prune may delete a set whose lease ran out): "
                f"its last renewal was {seconds - left:.1f} s ago{failed}. It is left incomplete; no log was truncated",
                hint="the target answers slowly or refuses the renewals; raise backup.lease_seconds and run the "
                "backup again",
            )

    def write_manifest(self, source: BackupSource, copied: range, started: str) -> None:
        self.call = "write_manifest"
        previous = self.previous
        manifest = Manifest(
            home_id=self.home_id,
            backup_id=self.outcome.backup_id,
            kind=self.kind,
            sg=self.sg_name,
            log_base=source.log_base,
            server=socket.gethostname(),
            started=started,
            ended=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            log_signature=source.signature,
            first_gen=copied.start if copied else 0,
            last_gen=copied.stop - 1 if copied else 0,
            based_on=previous.backup_id if previous else None,
            logs_end_us=self.logs_end_us,
            databases=self.databases,
            files=self.outcome.files,
        )
        source.crash_point("backup.before_manifest")
        self.target.write_file(f"{self.folder}/{MANIFEST_NAME}", [manifest.to_json()])
        source.crash_point("backup.after_manifest")

    def _keep(self, entry: FileEntry) -> None:
        self.outcome.files.append(entry)
        self.report.file(entry.source, entry.size, entry.name, entry.stored_size)

    def _watch(
        self, source: BackupSource, name: str, size: int | None, chunks: Iterable[bytes | Block], point: str
    ) -> Iterator[bytes | Block]:
        done = 0
        for index, chunk in enumerate(chunks):
            if self.pace is not None:
                self.pace.take(len(chunk))  # why before the yield: the write waits too, then the next read
            done += len(chunk)
            self.total += len(chunk)
            self.progress(name, done, size, self.total)
            yield chunk
            if index == 0:
                source.crash_point(point)


def back_up(
    home: ServerHome,
    sg_name: str,
    kind: str,
    target: Target,
    *,
    level: int | None = None,
    owner: str | None = None,
    report: BackupReport | None = None,
    progress: Progress = lambda name, done, size, total: None,
    pace: Pace | None = None,
) -> BackupOutcome:
    """Back up storage group ``sg_name`` into ``target`` (mounting it for the run if it is not mounted), the copy
    at most at ``pace``'s rate.

    Raises the error that stopped the backup (-505, -560, -526, -569, -1018, -612, BackupTargetError, ...),
    after writing it to the report; logs are then untouched and no header is stamped.
    """
    sg = home.storage_group(sg_name)
    report = report or BackupReport(home.fs, home.path)
    mounted_here = not sg.mounted
    if mounted_here:
        try:
            sg.mount()
        except StorageGroupBusyError:
            elsewhere = running_elsewhere(home, sg_name)
            if elsewhere is None:
                raise
            raise elsewhere from None  # why: the process holding the storage group is backing it up: say so
    try:
        owner = owner or default_owner()
        return run_backup(
            lambda: _engine_session(sg, kind, owner), home, sg.name, kind, target, owner, level, report, progress, pace
        )
    finally:
        if mounted_here:
            sg.dismount()


@contextmanager
def _engine_session(sg: StorageGroup, kind: str, owner: str) -> Iterator[BackupSource]:
    with sg.begin_backup(kind, owner=owner) as session:
        yield EngineSource(sg, session)


def run_backup(
    begin: Callable[[], AbstractContextManager[BackupSource]],
    home: ServerHome,
    sg_name: str,
    kind: str,
    target: Target,
    owner: str,
    level: int | None,
    report: BackupReport,
    progress: Progress,
    pace: Pace | None = None,
) -> BackupOutcome:
    """The backup program's phases over a session ``begin`` opens (in this process or in the service): take the
    set's lease in the target, copy (at most at ``pace``'s rate), prove coverage, check the set, write the
    manifest, complete."""
    run = _Run(home.home_id, sg_name, kind, target, level, report, progress, pace)
    started = time.monotonic()
    holder: LeaseHolder | None = None
    completion: CompletionReport | None = None
    try:
        report.storage_group(sg_name, run.outcome.backup_id)
        begun = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with begin() as source:
            if pace is not None:
                pace.check = source.check_running
            run.call = "take_lease"
            run.find_previous(source)
            based_on = run.previous.backup_id if run.previous else None
            holder = LeaseHolder(target, run.folder, owner, lease_seconds(home), based_on)
            holder.take()  # why first: a set folder without a live lease is a dead backup to every prune
            if kind in ("full", "copy"):
                run.copy_databases(source)
                run.note_left_out([s.name for s in home.config.find(sg_name).stores])
            copied = run.copy_logs(source)
            run.check_history(source)
            run.call = "prove_coverage"
            source.prove_coverage()  # why before the manifest: a set the catalog lists must restore
            holder.finish()  # why: renewing while checking could only hide a removal from the check
            run.check_set(holder)
            run.write_manifest(source, copied, begun)
            holder.release()
            run.call = "complete"
            completion = run.outcome.completion = source.complete()
        _report_truncation(report, source.log_base, completion)
    except ShadowStoreError as exc:
        report.error(run.call, exc)
        raise
    except Exception as exc:  # why: not ours; it still reaches the report and the caller as one line
        doing = f"backing up {sg_name!r} (in {run.call})"
        # a path without permission or a full disk is the machine's refusal; anything else is a bug
        error = (os_refusal(exc, doing) if isinstance(exc, OSError) else None) or unexpected(exc, doing)
        report.error(run.call, error)
        raise error from exc
    finally:
        if holder is not None:
            holder.release()
        run.outcome.seconds = time.monotonic() - started
    return run.outcome


def lease_seconds(home: ServerHome) -> float:
    """How long a backup's lease lasts without renewal: ``backup.lease_seconds``, else 600 s."""
    value = home.config.settings.get("backup", {}).get("lease_seconds")
    return DEFAULT_LEASE_SECONDS if value is None else parse_seconds(value, "backup.lease_seconds")


def _report_truncation(report: BackupReport, base: str, done: CompletionReport | None) -> None:
    if done is None:
        return
    if done.truncated:
        names = [archived_log_name(base, g) for g in done.truncated]
        report.note(f"Logs truncated: {len(names)} file(s), {names[0]} - {names[-1]}")
    if done.missing:
        missing = ", ".join(archived_log_name(base, g) for g in done.missing)
        report.note(f"Logs already missing when truncating (not an error): {missing}")
    if not done.truncated and not done.missing:
        report.note("No log files were truncated.")
