"""Hard recovery: bring restored store files forward by replaying logs, and stop exactly at a target.

The stores come from a backup: each file is consistent at its header's replay start (a full or copy backup
copies the pinned durable header and the pages it uses). Hard recovery replays, in log order, every TXN record
of each store from its replay start through

* the end of generation N (``Stop(until_gen=N)``),
* the last record committed at or before time T (``Stop(until_us=T)``): it stops at the first TXN record, of
  any store, committed after T — commit times rise in log order, so the storage group ends consistent at one
  instant — or
* the end of the logs it was given (``Stop()``),

then writes each store and marks it Clean Shutdown, consistent at the stop position. The logs are the restored
generations (a restore folder) possibly followed by the live log folder's newer ones (roll forward), the last
of which may be the live current log. Before anything is written every log header is checked: the expected
generation (-513, event 440), one log signature, the stores' (-530, event 433), each generation created right
after the one before it (-515, event 434), none missing (-557, event 435).

The storage group object given is not mounted and has no log writer: it only names the store files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shadowstore.engine.logreader import RecordAssembler, scan_generation
from shadowstore.engine.logstream import read_header
from shadowstore.engine.recovery import StoreReplay, apply_txn
from shadowstore.errors import (
    BadLogSignatureError,
    DatabaseLogSetMismatchError,
    InvalidLogSequenceError,
    LogFileCorruptError,
    LogGenerationMismatchError,
    MissingRestoreLogFilesError,
    RestoreError,
)
from shadowstore.format.common import LGPOS_ZERO, LgPos, format_time, iso_time
from shadowstore.format.logfile import LOG_HEADER_SIZE, LogHeader, LogHeaderError, unpack_log_header
from shadowstore.format.logrecord import KIND_ATTACH, KIND_DETACH, KIND_TXN, TXN_HEADER
from shadowstore.io.fs import FileSystem, read_file

if TYPE_CHECKING:
    from shadowstore.engine.storagegroup import StorageGroup

_unpack_txn = TXN_HEADER.unpack_from


@dataclass(frozen=True)
class ReplayLog:
    """One generation to replay: its file, and whether it is the live current log (a torn tail is its end).
    ``data`` is the content of a current log as the caller read it, if it did (see :func:`read_current_log`)."""

    generation: int
    path: str
    current: bool = False
    data: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Stop:
    """Where replay stops: the end of generation ``until_gen``, before the first transaction committed after
    ``until_us``, or (neither) at the end of the logs."""

    until_gen: int | None = None
    until_us: int | None = None


@dataclass
class HardRecoveryReport:
    stores: list[str] = field(default_factory=list)
    generations: tuple[int, int] = (0, 0)  # replayed (first, last)
    stop: LgPos = LGPOS_ZERO  # the stores are consistent here
    stopped: str = ""  # how, in words
    reached_end: bool = False  # every record of every log given was replayed
    rolled_to_current: bool = False  # ... and the last was the live current log
    records: int = 0  # transactions applied
    last_commit_us: int | None = None  # of the newest transaction applied (of any store)
    log_bytes: int = 0
    replay_seconds: float = 0.0
    write_seconds: float = 0.0


def hard_recover(
    sg: StorageGroup, logs: Sequence[ReplayLog], stop: Stop, *, on_log: Callable[[int], None] = lambda gen: None
) -> HardRecoveryReport:
    """Replay ``logs`` into the stores of ``sg`` (files opened here) and mark them Clean Shutdown; ``on_log``
    is called with each generation replayed.

    Raises MissingRestoreLogFilesError, BadLogSignatureError, InvalidLogSequenceError, LogGenerationMismatchError,
    LogFileCorruptError, DatabaseLogSetMismatchError, DatabaseCorruptedError (a store and the logs do not
    match), RestoreError (a store copy is newer than the time target); with each, no store was written.
    """
    stores = list(sg.stores.values())
    for store in stores:
        store.open()
    signatures = {store.header.log_signature for store in stores if store.header is not None}
    if len(signatures) != 1:
        for store in stores:
            sg.events.emit(425, sg=sg.name, db=store.path)
        raise DatabaseLogSetMismatchError(
            "the restored stores come from different log streams: "
            + ", ".join(f"{s.path} [{s.header.log_signature if s.header else '?'}]" for s in stores)
        )
    sg.signature = signatures.pop()
    low = min(store.replay_start.gen for store in stores)
    chosen = _check_chain(sg, [log for log in logs if stop.until_gen is None or log.generation <= stop.until_gen], low)
    report = HardRecoveryReport(generations=(low, chosen[-1].log.generation))
    sg.events.emit(300, sg=sg.name)
    replays = {}
    for store in stores:
        store.load_state()
        assert store.head is not None
        txn = store.replay_transaction()
        replays[store.dbid] = StoreReplay(store, txn, store.replay_start, store.head.dbtime, store.replay_start)
    started = time.perf_counter()
    try:
        _replay(sg, chosen, stop, replays, report, on_log)
        _check_not_ahead(sg, replays, report)
    except BaseException:
        for replay in replays.values():
            replay.txn.abort()
        raise
    replayed = time.perf_counter()
    for replay in replays.values():
        replay.store.install_replayed(replay.txn, replay.dbtime, replay.end)
        replay.store.checkpoint(clean_at=report.stop)
        sg.fs.crash_point("restore.recover.store")
        report.stores.append(replay.store.name)
        report.records += replay.records
    report.replay_seconds = replayed - started
    report.write_seconds = time.perf_counter() - replayed
    sg.events.emit(302, sg=sg.name, sync=True)
    return report


def _check_chain(sg: StorageGroup, logs: Sequence[ReplayLog], low: int) -> list[_Checked]:
    """The generations from ``low`` on, each with its verified header, after every continuity check."""
    logs = [log for log in logs if log.generation >= low]
    expected = list(range(low, low + len(logs)))
    found = [log.generation for log in logs]
    if not logs or found != expected:
        missing = sorted(set(range(low, max(found, default=low) + 1)) - set(found)) or [low]
        for gen in missing[:10]:
            sg.events.emit(435, sg=sg.name, file=f"generation {gen}")
        raise MissingRestoreLogFilesError(
            f"the restored stores of {sg.name!r} need log generations from {low} on; missing: "
            + ", ".join(str(g) for g in missing[:20])
            + (" ..." if len(missing) > 20 else "")
        )
    chain = []
    previous: LogHeader | None = None
    for log in logs:
        header, data = _read_header(sg, log)
        if header.generation != log.generation:
            sg.events.emit(440, sg=sg.name, file=log.path, error="-513", detail="its header names another generation")
            raise LogGenerationMismatchError(
                f"{log.path} should hold generation {log.generation} but its header says {header.generation}"
            )
        if header.signature != sg.signature:
            sg.events.emit(433, sg=sg.name, file=log.path)
            raise BadLogSignatureError(
                f"{log.path} (generation {log.generation}) belongs to another log stream: its signature is "
                f"[{header.signature}], the restored stores' is [{sg.signature}]"
            )
        if previous is not None and header.prev_created_us != previous.created_us:
            sg.events.emit(434, sg=sg.name, file=log.path)
            raise InvalidLogSequenceError(
                f"{log.path} (generation {log.generation}) does not follow generation {previous.generation}: it "
                f"records the previous generation as created at {format_time(header.prev_created_us)}, but "
                f"generation {previous.generation} was created at {format_time(previous.created_us)}"
            )
        chain.append(_Checked(log, header, data))
        previous = header
    return chain


@dataclass(frozen=True)
class _Checked:
    log: ReplayLog
    header: LogHeader
    data: bytes | None  # the live current log is read once, here: it may grow or roll away meanwhile


def _read_header(sg: StorageGroup, log: ReplayLog) -> tuple[LogHeader, bytes | None]:
    if not log.current:
        with _gone_is_missing(log):
            return read_header(sg.fs, log.path), None
    if log.data is not None:
        return _current_header(log.path, log.data), log.data
    with _gone_is_missing(log):
        return read_current_log(sg.fs, log.path)


def read_current_log(fs: FileSystem, path: str) -> tuple[LogHeader, bytes]:
    """The header and the whole content of a current log, read once: a storage group that is still mounted may
    go on writing it, or roll it away, meanwhile. Raises FileNotFoundError, LogFileCorruptError."""
    data = read_file(fs, path)
    return _current_header(path, data), data


def _current_header(path: str, data: bytes) -> LogHeader:
    try:
        return unpack_log_header(data[:LOG_HEADER_SIZE])
    except LogHeaderError as exc:
        raise LogFileCorruptError(
            f"{path}: log header is damaged at offset {exc.offset}: {exc}", file=path, offset=exc.offset
        ) from None


def _replay(
    sg: StorageGroup,
    chain: list[_Checked],
    stop: Stop,
    replays: dict[int, StoreReplay],
    report: HardRecoveryReport,
    on_log: Callable[[int], None],
) -> None:
    assembler = RecordAssembler()
    until_us = stop.until_us
    for checked in chain:
        log, header = checked.log, checked.header
        with _gone_is_missing(log):
            content = checked.data if checked.data is not None else read_file(sg.fs, log.path)
        gen = scan_generation(log.path, content, header, tolerate_torn_tail=log.current)
        report.log_bytes += gen.end_offset - LOG_HEADER_SIZE
        for start, end, data in assembler.feed(gen):
            kind = data[0]
            if kind == KIND_TXN:
                if len(data) < TXN_HEADER.size:
                    raise LogFileCorruptError(f"{log.path}: the TXN record at {start} is shorter than its header")
                committed = _unpack_txn(data, 0)[4]
                if until_us is not None and committed > until_us:
                    report.stop = start
                    report.stopped = f"before the first transaction committed after {iso_time(until_us)}"
                    return
                replay = replays.get(data[1])
                if replay is not None and start >= replay.start:
                    apply_txn(replay, start, end, data, log.path)
                report.last_commit_us = committed
            elif kind not in (KIND_ATTACH, KIND_DETACH):
                raise LogFileCorruptError(f"{log.path}: unknown record kind {kind} at {start}")
        sg.events.emit(301, sg=sg.name, file=log.path)
        report.stop = LgPos(header.generation, gen.end_offset)
        on_log(header.generation)
        sg.fs.crash_point("restore.replay.log")
    report.reached_end = True
    report.rolled_to_current = chain[-1].log.current
    last = chain[-1].log.generation
    if stop.until_gen is not None and last == stop.until_gen:
        report.stopped = f"at the end of generation {last}"
    else:
        report.stopped = (
            f"at the end of the logs (generation {last}{', the live current log' if chain[-1].log.current else ''})"
        )
    if until_us is not None:
        report.stopped += f", before any transaction committed after {iso_time(until_us)} was found"


@contextmanager
def _gone_is_missing(log: ReplayLog) -> Iterator[None]:
    """A log that vanished under the restore (the live folder: a backup truncated it, someone moved it) is a
    missing log, named, not an accident."""
    try:
        yield
    except FileNotFoundError:
        raise MissingRestoreLogFilesError(
            f"{log.path} (generation {log.generation}) disappeared while the restore was reading it"
        ) from None


def _check_not_ahead(sg: StorageGroup, replays: dict[int, StoreReplay], report: HardRecoveryReport) -> None:
    """Stopping must not leave a store ahead of the stop: a copy consistent only from a later position holds
    transactions after the target."""
    for replay in replays.values():
        if replay.start > report.stop:
            raise RestoreError(
                f"{os.path.basename(replay.store.path)} of {sg.name!r} is consistent only from log position "
                f"{replay.start}, after the restore target, which stops {report.stopped} at {report.stop}",
                hint="restore from an older full backup, or choose a later target",
            )
