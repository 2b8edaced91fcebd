"""Engine-side streaming backup: the session state machine (DESIGN §5, ESE's external backup API).

    with sg.begin_backup("full", owner="backup run (pid 42)") as session:
        for store in session.databases():                    # full and copy only
            with session.open_database(store) as copy:       # pins the store's durable header
                for chunk in copy.chunks(): ...               # verified (-1018); release each Block
        logs = session.prepare_logs()                        # forces a new generation; -569 if one is missing
        for gen in logs.copy: data = session.read_log(gen)   # verified (-612)
        ... write the backup set and its manifest durably ...
        report = session.complete()                          # truncate, stamp the headers, end

The session is in memory only: nothing about it is persisted in a form a restart would trust. At most one runs
per storage group (a second begin gets -505 naming the owner, its start and its lease). In-process it is a
context manager that always ends (an exception aborts it); an out-of-process owner holds a lease renewed by
``heartbeat`` and the maintenance thread aborts a session whose lease lapsed (event 215). Calls out of order get
-521 and leave the session usable. Logs are truncated only in ``complete``, which the backup program calls after
its manifest is durable; a log already gone is counted and reported (event 227), never fatal, and truncation
never passes the checkpoint.

A set is correct by construction: a full or copy set holds the logs from the lowest replay start of the
headers its copies were pinned at (checkpoints running during the copy move the live headers on, not the
pinned ones), and a full backup truncates only below that generation. ``prove_coverage`` checks the logs
actually copied against the pinned headers and the chain before the manifest is written and again before
truncating; a set whose copied logs miss a generation its copies or its chain need is refused and nothing is
truncated or stamped.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shadowstore.engine.dbcopy import DatabaseCopy
from shadowstore.engine.logreader import scan_generation
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.errors import (
    BackupAbortedError,
    InvalidBackupError,
    InvalidBackupSequenceError,
    InvalidParameterError,
    LogReadVerifyFailureError,
    MissingFileToBackupError,
    MissingFullBackupError,
    ShadowStoreError,
)
from shadowstore.format.common import BACKUP_STREAMING, BackupInfo, LgPos, now_us
from shadowstore.format.dbheader import DbHeader
from shadowstore.format.logfile import archived_log_name
from shadowstore.io.fs import read_file

if TYPE_CHECKING:
    from shadowstore.engine.storagegroup import StorageGroup
    from shadowstore.engine.store import Store

KINDS = ("full", "copy", "incremental", "differential")
SLOT_OF_KIND = {"full": "full_prev", "copy": "copy_prev", "incremental": "inc_prev", "differential": "diff_prev"}


@dataclass
class LogRange:
    """The generations a backup copies (``copy``, inclusive) and would truncate (``delete``, half-open)."""

    copy: range
    delete: range
    mark: LgPos
    end_us: int  # creation time of generation copy.stop: every commit before it is in the copied logs


@dataclass
class CompletionReport:
    truncated: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)  # already gone when truncation reached them
    stamped: list[str] = field(default_factory=list)


def describe_session(session: Mapping[str, object]) -> str:
    """A session as -505 names it, from its ``to_dict`` form (which another process reads from its status
    file): owner, kind, start and lease."""
    lease = session.get("lease_expires")
    lease_text = f"lease expires {lease}" if lease else "no lease: it ends with its owner's process"
    return (
        f"owner {session.get('owner')!r}, {session.get('kind')} backup, started {session.get('started')}, {lease_text}"
    )


class BackupSession:
    """One running backup of one storage group, owned by exactly one client. Obtain it from
    ``StorageGroup.begin_backup``."""

    def __init__(self, sg: StorageGroup, kind: str, owner: str, lease_seconds: float | None) -> None:
        self.sg = sg
        self.kind = kind
        self.owner = owner
        self.started_us = now_us()
        self.lease_seconds = lease_seconds
        self.lease_expires_us: int | None = None
        self.heartbeat()
        self.bytes_done = 0
        self.state = "databases" if kind in ("full", "copy") else "logs"
        self.ended = False
        self.error: ShadowStoreError | None = None  # what failed the backup, when an error ended it (214/203)
        self.mark = sg.log.tail
        self.logs: LogRange | None = None
        self._open: DatabaseCopy | None = None
        self._copied: dict[str, DbHeader] = {}  # store name -> the durable header its copy was pinned at
        self._logs_read: set[int] = set()
        self._mutex = threading.RLock()

    # --- context manager: always ends ----------------------------------------------------------------------

    def __enter__(self) -> BackupSession:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.ended:
            detail = f"the backup program stopped: {exc}" if exc is not None else "it ended without completing"
            # why: a failure with a cause (the target, a damaged page) is an error of the backup (214/203),
            # not the client halting it (215), which Exchange's text for 215 says
            self.abort(detail, error=exc if isinstance(exc, ShadowStoreError) else None)

    # --- status ------------------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Renew the lease of an out-of-process owner (no effect without one)."""
        if self.lease_seconds is not None:
            self.lease_expires_us = now_us() + int(self.lease_seconds * 1e6)

    def lease_lapsed(self) -> bool:
        return self.lease_expires_us is not None and now_us() > self.lease_expires_us

    def add_progress(self, count: int) -> None:
        self.bytes_done += count

    def describe(self) -> str:
        return describe_session(self.to_dict())

    def to_dict(self) -> dict[str, object]:
        return {
            "sg": self.sg.name,
            "owner": self.owner,
            "kind": self.kind,
            "state": self.state,
            "started": _utc(self.started_us),
            "lease_expires": _utc(self.lease_expires_us) if self.lease_expires_us else None,
            "bytes": self.bytes_done,
            "pid": os.getpid(),
        }

    def current_info(self, header: DbHeader) -> BackupInfo:
        """The 'Current Full Backup' block written into a backup copy of a store."""
        return BackupInfo(self.mark, self.started_us, header.replay_start.gen, 0, BACKUP_STREAMING)

    # --- databases (full and copy) --------------------------------------------------------------------------

    def databases(self) -> list[Store]:
        """The stores to copy. Raises -521 for incremental and differential backups (they copy logs only)."""
        self._expect("databases", "list the databases")
        return [s for s in self.sg.stores.values() if s.mounted]

    def open_database(self, store: Store) -> DatabaseCopy:
        """Start copying ``store``; one at a time. Raises -521 out of sequence."""
        with self._mutex:
            self._expect("databases", f"open database {store.name!r}")
            if self._open is not None:
                raise InvalidBackupSequenceError(
                    f"database {self._open.store.name!r} is still open; close it before opening {store.name!r}"
                )
            if not store.mounted:
                raise InvalidBackupSequenceError(f"store {store.name!r} is not mounted")
            self._open = DatabaseCopy(self, store)
            self.sg.events.emit(220, sg=self.sg.name, file=store.path, size=self._open.size)
            return self._open

    def database_done(self, copy: DatabaseCopy) -> None:
        self._copied[copy.store.name] = copy.header
        self.sg.events.emit(221, sg=self.sg.name, file=copy.store.path)

    def database_closed(self, copy: DatabaseCopy) -> None:
        with self._mutex:
            if self._open is copy:
                self._open = None

    def fail_database(self, store: Store, pgno: int, problem: str, stored: int | None, computed: int | None) -> None:
        """A page failed verification: event 474 (from the file layer) and 217, abort, raise -1018."""
        assert store.file is not None
        error = store.file.verify_failure(pgno, pgno * store.page_size, problem, stored, computed)
        self.sg.events.emit(217, sg=self.sg.name, error=f"{error.code} ({error.code_name})", file=store.path)
        self.abort(f"a page of {store.path} failed verification", error=error)
        raise error

    # --- logs ------------------------------------------------------------------------------------------------

    def prepare_logs(self) -> LogRange:
        """Force a new log generation and compute the copy and truncation ranges.

        Raises -521 while a database is open or before every database was copied, -569 (event 459, session
        aborted) when a generation the backup must contain is missing.
        """
        with self._mutex:
            if self.logs is not None:
                return self.logs
            if self._open is not None:
                raise InvalidBackupSequenceError(f"database {self._open.store.name!r} is still open")
            if self.state == "databases":
                missing = [s.name for s in self.databases() if s.name not in self._copied]
                if missing:
                    raise InvalidBackupSequenceError(
                        f"a {self.kind} backup copies every database before the logs; not yet copied: "
                        + ", ".join(missing)
                    )
            log = self.sg.log
            # why from the roll's own position: commits from other threads may fill and roll more
            # generations before the next line runs; the set ends where this backup's mark is.
            self.mark = log.roll()
            log.flush(self.mark)
            top = self.mark.gen - 1
            low = self._copy_low(top)
            logs = LogSet.scan(self.sg.fs, self.sg.config.log_dir, self.sg.base)
            missing_gens = [g for g in range(low, top + 1) if g not in logs.archived]
            if missing_gens:
                self._refuse_missing(missing_gens)
            on_disk = min(logs.archived) if logs.archived else top + 1
            # Crash recovery needs the logs from the checkpoint on; a full set's copies need them from ``low``.
            delete_high = min(self.sg.checkpoint_position.gen, top + 1)
            if self.kind == "full":
                delete_high = min(delete_high, low)
            self.logs = LogRange(
                range(low, top + 1), range(min(on_disk, delete_high), delete_high), self.mark, self._created_us(top + 1)
            )
            self.state = "logs"
            self.sg.events.emit(223, sg=self.sg.name, low=_name(self.sg, low), high=_name(self.sg, top))
            return self.logs

    def _created_us(self, generation: int) -> int:
        """The creation time of ``generation``, the current log or (after more rolls) an archived one."""
        with self.sg.log.stable_current() as (_handle, header, current):
            if header is not None and current == generation:
                return header.created_us
            return read_header(self.sg.fs, os.path.join(self.sg.config.log_dir, _name(self.sg, generation))).created_us

    def _copy_low(self, top: int) -> int:
        """The first generation the set must hold: where replay of its oldest copy starts (full, copy), or the
        generation after the previous backup in the chain (incremental, differential)."""
        if self.kind in ("full", "copy"):
            # why the pinned headers and not the live ones: a checkpoint that ran while a store was copied
            # moved the live replay start past logs the copy needs.
            return min((h.replay_start.gen for h in self._copied.values()), default=top + 1)
        stores = [s for s in self.sg.stores.values() if s.mounted and s.header is not None]
        previous = [
            max(s.header.full_prev.gen_high, s.header.inc_prev.gen_high if self.kind == "incremental" else 0)
            for s in stores
            if s.header is not None
        ]
        return min(previous, default=top) + 1

    def _refuse_missing(self, missing: list[int]) -> None:
        for gen in missing[:10]:
            self.sg.events.emit(459, sg=self.sg.name, file=_name(self.sg, gen))
        shown = ", ".join(f"{_name(self.sg, g)} (generation {g})" for g in missing[:10])
        why = ""
        if self.kind == "differential" and any(
            s.header is not None and not s.header.inc_prev.is_empty and s.header.inc_prev.gen_high >= missing[0]
            for s in self.sg.stores.values()
        ):
            # why say so: a differential holds every log since the full, and an incremental truncates them
            why = " (an incremental backup since the last full backup truncated them)"
        error = MissingFileToBackupError(
            f"the {self.kind} backup of {self.sg.name!r} must contain log generations {missing[0]}-"
            f"{max(missing)} onwards, but these are missing from {self.sg.config.log_dir}: {shown}"
            + (" ..." if len(missing) > 10 else "")
            + f"{why}; take a full backup",
        )
        self.abort("a log file to back up is missing", error=error)
        raise error

    def read_log(self, generation: int) -> bytes:
        """The bytes of a closed generation in the copy range, verified. Raises -521 out of sequence, -612
        (event 218, session aborted) for a damaged log, -569 for a log that vanished."""
        with self._mutex:
            if self.logs is None or generation not in self.logs.copy:
                raise InvalidBackupSequenceError(
                    f"log generation {generation} is not in this backup's range"
                    + (f" ({self.logs.copy.start}-{self.logs.copy.stop - 1})" if self.logs else "; call prepare_logs")
                )
            path = os.path.join(self.sg.config.log_dir, _name(self.sg, generation))
            try:
                data = read_file(self.sg.fs, path)
            except FileNotFoundError:
                self._refuse_missing([generation])
                raise  # unreachable: _refuse_missing raises
            problem = self._log_problem(path, data, generation)
            if problem is not None:
                error = LogReadVerifyFailureError(
                    f"log file {path} failed verification: {problem}", hint=self._damaged_log_hint()
                )
                self.sg.events.emit(218, sg=self.sg.name, error="-612 (JET_errLogReadVerifyFailure)", file=path)
                self.abort(f"log file {path} failed verification", error=error)
                raise error
            self._logs_read.add(generation)
            self.add_progress(len(data))
            return data

    def _log_problem(self, path: str, data: bytes, generation: int) -> str | None:
        """What is wrong with a closed generation read for a backup, or None."""
        try:
            header = read_header(self.sg.fs, path)
            scan_generation(path, data, header, tolerate_torn_tail=False)
        except ShadowStoreError as exc:  # why strip: the reader's messages start with the path we already name
            return exc.message.removeprefix(f"{path} (generation {generation}): ").removeprefix(f"{path}: ")
        if header.generation != generation:
            return f"its header says generation {header.generation}"
        if header.signature != self.sg.signature:
            return "it belongs to another log stream"
        return None

    def _damaged_log_hint(self) -> str:
        if self.kind in ("incremental", "differential"):
            return "check the disk, then take a full backup: it does not need this log"
        # why not "take a full backup": this is one; its logs are those written since its checkpoint
        return (
            f"check the disk, then dismount and mount {self.sg.name!r} (a clean dismount leaves no log needed) "
            "and take the full backup again"
        )

    # --- the end ---------------------------------------------------------------------------------------------

    def complete(self) -> CompletionReport:
        """The backup set is durably stored: truncate (full, incremental), stamp the headers, end.

        Raises -521 (session still usable) when logs were not prepared or a generation was not read.
        """
        with self._mutex:
            if self.logs is None:
                raise InvalidBackupSequenceError("complete called before prepare_logs")
            unread = [g for g in self.logs.copy if g not in self._logs_read]
            if unread:
                raise InvalidBackupSequenceError(
                    f"log generations {unread[0]}-{unread[-1]} were not copied ({len(unread)} file(s))"
                )
            self.prove_coverage()
            report = CompletionReport()
            if self.kind in ("full", "incremental"):
                self._truncate(report)
            info = BackupInfo(self.logs.mark, now_us(), self.logs.copy.start, self.logs.copy.stop - 1, BACKUP_STREAMING)
            for store in self.sg.stores.values():
                if store.mounted:
                    store.stamp_backup(self.kind, info)
                    report.stamped.append(store.name)
            self.sg.note_backup(self.kind, info)
            # why both: ESE logs the instance's end and the engine's
            self.sg.events.emit(213, sg=self.sg.name)
            self.sg.events.emit(202, sg=self.sg.name, sync=True)
            self._end()
            return report

    def prove_coverage(self) -> None:
        """Refuse (-521, session aborted: nothing truncated, nothing stamped) a set that cannot restore: one whose
        logs *read* do not include every generation from the replay start of each pinned copy (full, copy), or
        from the end of the previous backup in each store's header (incremental, differential), through the
        last closed generation. Checked against what was copied, independently of how the range was computed.
        The backup program calls it before it writes the manifest; ``complete`` calls it again before
        truncating. (That an incremental or differential continues the chain *in its target* is the backup
        program's check, backup/run.py.)"""
        if self.logs is None:
            raise InvalidBackupSequenceError("the coverage of a backup set is known only after prepare_logs")
        top = self.logs.mark.gen - 1
        problems = []
        for name, first in self._needed_from():
            lacking = [g for g in range(first, top + 1) if g not in self._logs_read]
            if lacking:
                problems.append(
                    f"{name} needs log generations {first}-{top}, of which {_span(lacking)} were not copied"
                )
        if not problems:
            return
        error = InvalidBackupSequenceError(
            f"the {self.kind} backup of {self.sg.name!r} would not restore ({'; '.join(problems)}); nothing was "
            "truncated or stamped",
            hint="run the backup again; if it fails the same way, report it with the event log",
        )
        self.abort("the backup set would not cover the logs its copies need", error=error)
        raise error

    def _needed_from(self) -> list[tuple[str, int]]:
        """(what, first generation it needs) for each copy (full, copy) or each store's chain (the others)."""
        if self.kind in ("full", "copy"):
            return [(f"the copy of {n!r}", h.replay_start.gen) for n, h in sorted(self._copied.items())]
        needed = []
        for store in self.sg.stores.values():
            if store.mounted and store.header is not None:
                prev = store.header.full_prev.gen_high
                if self.kind == "incremental":
                    prev = max(prev, store.header.inc_prev.gen_high)
                needed.append((f"{store.name!r}, last backed up to generation {prev},", prev + 1))
        return needed

    def _truncate(self, report: CompletionReport) -> None:
        assert self.logs is not None
        delete = self.logs.delete
        if not delete:
            self.sg.events.emit(225, sg=self.sg.name)
            return
        low, high = _name(self.sg, delete.start), _name(self.sg, delete[-1])
        self.sg.events.emit(224, sg=self.sg.name, low=low, high=high, sync=True)  # why synced: before any delete
        self.sg.watch.forget_below(delete.stop)  # before deleting: the health check must not see them go
        deleted, missing = self.sg.delete_logs(delete, crash_point="backup.truncate.after_delete")
        report.truncated.extend(deleted)
        report.missing.extend(missing)
        if report.missing:
            self.sg.events.emit(
                227,
                sg=self.sg.name,
                count=len(report.missing),
                missing=", ".join(_name(self.sg, g) for g in report.missing[:20]),
            )

    def abort(self, detail: str, *, error: ShadowStoreError | None = None, by_server: bool = False) -> None:
        """End the session without stamping or truncating anything (events 214, 215 or 226)."""
        with self._mutex:
            if self.ended:
                return
            if error is not None:
                self.error = error
                detail = f"{error.code} ({error.code_name}): {error.message}" if error.code else error.message
                self.sg.events.emit(214, sg=self.sg.name, error=detail)
                self.sg.events.emit(203, sg=self.sg.name, error=detail)
            elif by_server:
                self.sg.events.emit(226, sg=self.sg.name)
            else:
                self.sg.events.emit(215, sg=self.sg.name, detail=detail)
            if self._open is not None:
                self._open.close()
            self._end()

    def _end(self) -> None:
        self.ended = True
        self.state = "ended"
        self.sg.backup_ended(self)

    def _expect(self, state: str, doing: str) -> None:
        if self.ended:
            raise BackupAbortedError(f"the backup session of {self.sg.name!r} has ended; cannot {doing}")
        if self.state != state:
            raise InvalidBackupSequenceError(
                f"cannot {doing}: the {self.kind} backup is in its {self.state!r} phase"
                + (" (incremental and differential backups copy logs only)" if state == "databases" else "")
            )


def check_can_begin(sg: StorageGroup, kind: str) -> None:
    """The refusals of a backup begin: -1003 unknown kind or no store at all, -526 circular logging, -560 no
    previous full backup (event 206 naming each store)."""
    if kind not in KINDS:
        raise InvalidParameterError(f"backup kind {kind!r} is not one of {', '.join(KINDS)}")
    if not sg.stores:  # why refuse: no header to stamp, and no log a restore could use
        raise InvalidParameterError(
            f"storage group {sg.name!r} has no stores: there is nothing to back up",
            hint=f"create one with: shadowstore store create {shlex.quote(sg.name)} NAME",
        )
    if not any(s.mounted for s in sg.stores.values()):
        # why refuse: with every store dismounted on its own (engine/storemount.py) the set would hold no store,
        # stamp no header, and still truncate the logs
        raise InvalidParameterError(
            f"no store of storage group {sg.name!r} is mounted: there is nothing to back up",
            hint="mount one of its stores, or dismount and mount the storage group (which mounts every store)",
        )
    if kind in ("incremental", "differential"):
        if sg.config.circular_logging:
            raise InvalidBackupError(
                f"storage group {sg.name!r} uses circular logging, so it keeps no log chain for a {kind} backup"
            )
        lacking = [s for s in sg.stores.values() if s.mounted and s.header is not None and s.header.full_prev.is_empty]
        for store in lacking:
            sg.events.emit(206, sg=sg.name, db=store.path)
        if lacking:
            raise MissingFullBackupError(
                f"{'an' if kind == 'incremental' else 'a'} {kind} backup needs a previous full backup; these stores "
                "have none: " + ", ".join(s.name for s in lacking)
            )


def _span(generations: list[int]) -> str:
    return f"{generations[0]}" if len(generations) == 1 else f"{generations[0]}-{generations[-1]}"


def _name(sg: StorageGroup, generation: int) -> str:
    return archived_log_name(sg.base, generation)


def _utc(us: int | None) -> str:
    if us is None:
        return "never"
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
