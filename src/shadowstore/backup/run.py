"""The backup program: one streaming backup of a storage group into a target, as a sequence of phases.

``back_up`` begins an engine backup session, copies each store (full, copy) and each log generation into a new
backup set folder, writes the manifest last and atomically, and only then completes the session, which
truncates logs (full, incremental) and stamps the store headers. Any failure before the manifest is durable
ends the session (the context manager), truncates nothing, stamps nothing, and leaves at most an incomplete
set (no manifest) that is never used. Crash points (``backup.copy.database``, ``backup.copy.log``,
``backup.before_manifest``, ``backup.after_manifest``) let tests stop a real process at those instants.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from shadowstore.backup.catalog import SetInfo, previous_in_chain
from shadowstore.backup.manifest import MANIFEST_NAME, DatabaseEntry, FileEntry, Manifest, set_folder
from shadowstore.backup.report import BackupReport
from shadowstore.backup.sessions import running_elsewhere
from shadowstore.backup.setfiles import store_file
from shadowstore.backup.target import Target
from shadowstore.engine.backup import BackupSession, CompletionReport
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.errors import MissingFullBackupError, ShadowStoreError, StorageGroupBusyError
from shadowstore.format.logfile import archived_log_name
from shadowstore.home import ServerHome
from shadowstore.io.blockread import Block
from shadowstore.io.fs import read_file

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
        }


def new_backup_id(kind: str) -> str:
    """``YYYYMMDDTHHMMSS.ffffffZ-<kind>-<6 hex>``: ids sort in time order (to the microsecond)."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S.%fZ}-{kind}-{secrets.token_hex(3)}"


class _Run:
    """The state of one storage group's backup while it runs (phases below, in order)."""

    def __init__(
        self, sg: StorageGroup, kind: str, target: Target, level: int | None, report: BackupReport, progress: Progress
    ) -> None:
        self.sg = sg
        self.kind = kind
        self.target = target
        self.level = level
        self.report = report
        self.progress = progress
        self.outcome = BackupOutcome(sg.name, new_backup_id(kind), kind)
        self.folder = set_folder(sg.name, self.outcome.backup_id)
        self.databases: list[DatabaseEntry] = []
        self.previous: SetInfo | None = None  # the set an incremental or differential builds on
        self.logs_end_us: int | None = None
        self.total = 0
        self.call = "begin_backup"

    def copy_databases(self, session: BackupSession) -> None:
        self.call = "open_database"
        for store in session.databases():
            with session.open_database(store) as copy:
                self.call = "read_database"
                name = os.path.basename(store.path)
                chunks = self._watch(name, copy.size, copy.chunks(), "backup.copy.database")
                self._keep(store_file(self.target, self.folder, name, "db", chunks, level=self.level))
                header = copy.header
                self.databases.append(
                    DatabaseEntry(
                        store=store.name,
                        file=name,
                        dbid=store.dbid,
                        db_signature=header.db_signature.to_dict(),
                        page_size=header.page_size,
                        dbtime=header.dbtime,
                        replay_start=str(header.replay_start),
                        replay_start_gen=header.replay_start.gen,
                        page_count=header.page_count,
                        state=header.state_name,
                        max_commit_us=copy.max_commit_us,
                    )
                )
            self.call = "open_database"

    def copy_logs(self, session: BackupSession) -> range:
        self.call = "prepare_logs"
        logs = session.prepare_logs()
        self.logs_end_us = logs.end_us
        self._check_chain(session, logs.copy)
        for gen in logs.copy:
            self.call = "read_log"
            name = archived_log_name(self.sg.base, gen)
            data = session.read_log(gen)
            chunks = self._watch(name, len(data), [data], "backup.copy.log")
            self._keep(store_file(self.target, self.folder, name, "log", chunks, level=self.level, generation=gen))
        chk = read_file(self.sg.fs, self.sg.checkpoint_path)
        self._keep(
            store_file(
                self.target, self.folder, os.path.basename(self.sg.checkpoint_path), "chk", [chk], level=self.level
            )
        )
        return logs.copy

    def _check_chain(self, session: BackupSession, copied: range) -> None:
        """An incremental or differential set must continue the chain *in this target*: the engine's copy
        range comes from the store headers, which remember the last backup to any target."""
        if self.kind not in ("incremental", "differential"):
            return
        self.previous = previous_in_chain(self.target, self.sg.name, self.kind)
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
        else:
            found = "it holds no full backup of this storage group"
        error = MissingFullBackupError(
            f"the {self.kind} backup of {self.sg.name!r} would start at log generation {copied.start}, but "
            f"{self.target.url} cannot continue that chain: {found} (was the last backup taken to another "
            "target, or a set deleted from this one?)",
            hint=f"take a full backup into {self.target.url} first",
        )
        session.abort("its target does not hold the chain it builds on", error=error)
        raise error

    def write_manifest(self, session: BackupSession, copied: range, started: str) -> None:
        self.call = "write_manifest"
        previous = self.previous
        manifest = Manifest(
            backup_id=self.outcome.backup_id,
            kind=self.kind,
            sg=self.sg.name,
            log_base=self.sg.base,
            server=socket.gethostname(),
            started=started,
            ended=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            log_signature=self.sg.signature.to_dict(),
            first_gen=copied.start if copied else 0,
            last_gen=copied.stop - 1 if copied else 0,
            based_on=previous.backup_id if previous else None,
            logs_end_us=self.logs_end_us,
            databases=self.databases,
            files=self.outcome.files,
        )
        self.sg.fs.crash_point("backup.before_manifest")
        self.target.write_file(f"{self.folder}/{MANIFEST_NAME}", [manifest.to_json()])
        self.sg.fs.crash_point("backup.after_manifest")

    def _keep(self, entry: FileEntry) -> None:
        self.outcome.files.append(entry)
        self.report.file(entry.source, entry.size, entry.name, entry.stored_size)

    def _watch(
        self, name: str, size: int | None, chunks: Iterable[bytes | Block], point: str
    ) -> Iterator[bytes | Block]:
        done = 0
        for index, chunk in enumerate(chunks):
            done += len(chunk)
            self.total += len(chunk)
            self.progress(name, done, size, self.total)
            yield chunk
            if index == 0:
                self.sg.fs.crash_point(point)


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
) -> BackupOutcome:
    """Back up storage group ``sg_name`` into ``target`` (mounting it for the run if it is not mounted).

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
    run = _Run(sg, kind, target, level, report, progress)
    started = time.monotonic()
    try:
        report.storage_group(sg.name, run.outcome.backup_id)
        owner = owner or f"shadowstore backup run (pid {os.getpid()} on {socket.gethostname()})"
        begun = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with sg.begin_backup(kind, owner=owner) as session:
            if kind in ("full", "copy"):
                run.copy_databases(session)
            copied = run.copy_logs(session)
            run.call = "prove_coverage"
            session.prove_coverage()  # why before the manifest: a set the catalog lists must restore
            run.write_manifest(session, copied, begun)
            run.call = "complete"
            run.outcome.completion = session.complete()
        _report_truncation(report, sg, run.outcome.completion)
    except ShadowStoreError as exc:
        report.error(run.call, exc)
        raise
    finally:
        run.outcome.seconds = time.monotonic() - started
        if mounted_here:
            sg.dismount()
    return run.outcome


def _report_truncation(report: BackupReport, sg: StorageGroup, done: CompletionReport | None) -> None:
    if done is None:
        return
    if done.truncated:
        names = [archived_log_name(sg.base, g) for g in done.truncated]
        report.note(f"Logs truncated: {len(names)} file(s), {names[0]} - {names[-1]}")
    if done.missing:
        missing = ", ".join(archived_log_name(sg.base, g) for g in done.missing)
        report.note(f"Logs already missing when truncating (not an error): {missing}")
    if not done.truncated and not done.missing:
        report.note("No log files were truncated.")
