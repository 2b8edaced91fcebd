"""Soft recovery: replay the log stream into stores left in Dirty Shutdown.

Every store file is transactionally consistent at its header's replay start (pages are copy-on-write), so
recovery never undoes anything: it loads each dirty store's durable state, replays every TXN record of that
store logged at or after its replay start, in log order, through the end of the stream, then writes the
result and marks the store Clean Shutdown (events 300, 301, 302). A record cut short by the crash at the very
end of the stream was never acknowledged and is ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shadowstore.engine.btree import Blob, insert
from shadowstore.engine.logreader import Generation, RecordAssembler
from shadowstore.engine.logstream import LogChain, LogSet
from shadowstore.engine.transaction import TableMeta, Transaction
from shadowstore.errors import DatabaseCorruptedError, DatabaseLogSetMismatchError, LogFileCorruptError
from shadowstore.format.common import LgPos
from shadowstore.format.dbheader import STATE_DIRTY_SHUTDOWN
from shadowstore.format.logfile import LOG_HEADER_SIZE, LogHeader
from shadowstore.format.logrecord import (
    KIND_ATTACH,
    KIND_DETACH,
    KIND_TXN,
    OP_CREATE,
    OP_DELETE,
    OP_DROP,
    OP_PUT,
    TXN_HEADER,
    RecordError,
    parse_ops,
)

if TYPE_CHECKING:
    from shadowstore.engine.storagegroup import StorageGroup
    from shadowstore.engine.store import Store


_TXN_SIZE = TXN_HEADER.size
_unpack_txn = TXN_HEADER.unpack_from


@dataclass
class StoreReplay:
    """One store being brought forward by replay (soft recovery here, hard recovery in hardrecovery.py)."""

    store: Store
    txn: Transaction
    start: LgPos
    dbtime: int
    end: LgPos
    records: int = 0
    tables: dict[int, TableMeta] = field(default_factory=dict)  # writable tables by id

    def __post_init__(self) -> None:
        # Looked up once here rather than once per record.
        self.ctx = self.txn.ctx
        self.stamp = self.txn.stamp
        self.inline_max = self.store.limits.inline_max


@dataclass
class RecoveryReport:
    stores: list[str] = field(default_factory=list)
    generations: tuple[int, int] | None = None
    records: int = 0
    bytes_replayed: int = 0  # bytes of the records applied
    log_bytes: int = 0  # bytes of log read: every block of every generation scanned
    replay_seconds: float = 0.0  # reading and applying the log
    write_seconds: float = 0.0  # writing the recovered stores and marking them Clean Shutdown


def recover(
    sg: StorageGroup,
    logs: LogSet,
    current: LogHeader,
    current_scan: Generation,
    *,
    stop_at: LgPos | None = None,
) -> RecoveryReport:
    """Replay the logs into every store in Dirty Shutdown and mark each Clean Shutdown.

    Raises the log errors of LogChain (missing, foreign, out of sequence, corrupt logs: nothing is changed
    then), DatabaseLogSetMismatchError (event 425) for a store of another log stream.
    """
    report = RecoveryReport()
    dirty = [s for s in sg.stores.values() if s.header is not None and s.header.state == STATE_DIRTY_SHUTDOWN]
    if not dirty:
        return report
    for store in dirty:
        assert store.header is not None
        if store.header.log_signature != sg.signature:
            sg.events.emit(425, sg=sg.name, db=store.path)
            raise DatabaseLogSetMismatchError(
                f"{store.path} is in Dirty Shutdown and needs the logs of the stream with signature "
                f"[{store.header.log_signature}], but the log folder {logs.log_dir} holds the stream "
                f"[{sg.signature}]"
            )
    low = min(s.replay_start.gen for s in dirty)
    high = max(s.header.log_required_max for s in dirty if s.header is not None)
    names = ", ".join(s.path for s in dirty)
    chain = LogChain(sg.fs, logs, sg.signature, current, sg.events, sg.name, names)
    chain.check_present(low, high)
    sg.events.emit(300, sg=sg.name)
    replays = {}
    for store in dirty:
        store.load_state()
        txn = store.replay_transaction()
        assert store.head is not None
        replays[store.dbid] = StoreReplay(store, txn, store.replay_start, store.head.dbtime, store.replay_start)
    started = time.perf_counter()
    try:
        _replay_stream(sg, chain, low, current_scan, replays, report, stop_at)
    except BaseException:
        for replay in replays.values():
            replay.txn.abort()
        raise
    replayed = time.perf_counter()
    tail = LgPos(current.generation, current_scan.end_offset)
    for replay in replays.values():  # why first, for every store: a write that fails must leave no latch held
        replay.store.install_replayed(replay.txn, replay.dbtime, replay.end)
    for replay in replays.values():
        replay.store.checkpoint(clean_at=tail)
        report.stores.append(replay.store.name)
        report.records += replay.records
    report.generations = (low, current.generation)
    report.replay_seconds = replayed - started
    report.write_seconds = time.perf_counter() - replayed
    sg.events.emit(302, sg=sg.name, sync=True)
    return report


def _replay_stream(
    sg: StorageGroup,
    chain: LogChain,
    low: int,
    current_scan: Generation,
    replays: dict[int, StoreReplay],
    report: RecoveryReport,
    stop_at: LgPos | None,
) -> None:
    assembler = RecordAssembler()
    for gen in chain.generations(low):
        if gen.header.generation == current_scan.header.generation:
            gen = current_scan  # already scanned when the storage group opened the current log
        report.log_bytes += gen.end_offset - LOG_HEADER_SIZE
        path = gen.path
        replayed = 0
        for start, end, data in assembler.feed(gen):
            if stop_at is not None and start >= stop_at:
                report.bytes_replayed += replayed
                return
            kind = data[0]
            replay = replays.get(data[1])
            if replay is None or start < replay.start:
                continue
            replayed += len(data)
            if kind == KIND_TXN:
                apply_txn(replay, start, end, data, path)
            elif kind not in (KIND_ATTACH, KIND_DETACH):
                raise LogFileCorruptError(f"{path}: unknown record kind {kind} at {start}")
        report.bytes_replayed += replayed
        sg.events.emit(301, sg=sg.name, file=path)


def apply_txn(replay: StoreReplay, start: LgPos, end: LgPos, data: bytes | memoryview, path: str) -> None:
    """Apply one TXN record to a store being recovered. Requires: it is the store's next transaction."""
    if len(data) < _TXN_SIZE:
        raise LogFileCorruptError(f"{path}: the TXN record at {start} is shorter than its header")
    _kind, _dbid, _flags, dbtime, _time, count = _unpack_txn(data, 0)
    if dbtime != replay.dbtime + 1:
        raise DatabaseCorruptedError(
            f"{replay.store.path} is at transaction {replay.dbtime} but the log record at {start} in {path} "
            f"is transaction {dbtime}: the store and the log do not match"
        )
    try:
        operations = parse_ops(data, count)
    except RecordError as exc:
        raise LogFileCorruptError(f"{path}: the record at {start} does not parse: {exc}") from None
    gen, offset = start
    replay.stamp.lgpos = (gen << 32) | ((offset >> 9) << 16) | (offset & 511)  # LgPos.pack_u64, inlined
    tables = replay.tables
    ctx = replay.ctx
    inline_max = replay.inline_max
    for op, table_id, key, value in operations:
        if op == OP_PUT:
            # Transaction._apply_put, inlined: this is the hot loop of recovery.
            meta = tables.get(table_id) or _writable(replay, table_id, start, path)
            meta.root = insert(ctx, meta.root, key, value if len(value) <= inline_max else Blob(value))
        elif op == OP_DELETE:
            replay.txn._apply_delete(tables.get(table_id) or _writable(replay, table_id, start, path), key)
        elif op == OP_CREATE:
            replay.txn._apply_create(table_id, key.decode())
            tables.clear()
        elif op == OP_DROP:
            replay.txn._apply_drop(_writable(replay, table_id, start, path))
            tables.clear()
    replay.dbtime = dbtime
    replay.end = end
    replay.records += 1


def _writable(replay: StoreReplay, table_id: int, at: LgPos, path: str) -> TableMeta:
    """The replay transaction's own copy of table ``table_id`` (cached by id until a create or drop)."""
    meta = replay.txn.table_by_id(table_id)
    if meta is None:
        raise DatabaseCorruptedError(f"the log record at {at} in {path} names table {table_id}, which does not exist")
    owned = replay.txn._writable_meta(meta.name)
    replay.tables[table_id] = owned
    return owned
