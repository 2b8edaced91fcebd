"""A store (database) of a storage group: its file, its committed states, transactions and checkpoints.

States and visibility: ``_head`` is the newest committed state (what the next writer builds on); ``_visible``
is the newest state whose log records are durable (what readers see). A durable commit publishes its state
after its flush; a lazy commit publishes at once. Readers never block the writer and the writer never blocks
readers: committed nodes are immutable and pages stay untouched while a reader, a pin or the durable header
can reach them (``release_horizon``).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import TYPE_CHECKING

from shadowstore.config import CONFIG_NAME, PREVIOUS_NAME
from shadowstore.engine import storeheader
from shadowstore.engine.btree import Limits, Node
from shadowstore.engine.dbfile import DatabaseFile, read_header_copies
from shadowstore.engine.nodecache import NodeCache, read_node
from shadowstore.engine.pageflush import flush_state
from shadowstore.engine.retired import pages_of, resolve_retired
from shadowstore.engine.space import SpaceMap, page_flags
from shadowstore.engine.transaction import DbState, TableMeta, Transaction
from shadowstore.engine.writerlatch import LatchWatch, WriterLatch
from shadowstore.errors import DatabaseCorruptedError, NotMountedError, PageSizeMismatchError, ShadowStoreError
from shadowstore.format.catalog import CatalogError, unpack_catalog
from shadowstore.format.common import LGPOS_ZERO, BackupInfo, LgPos
from shadowstore.format.dbheader import (
    BlobRef,
    DbHeader,
)
from shadowstore.format.logrecord import KIND_TXN, TXN_HEADER, TXN_TIME_OFFSET

if TYPE_CHECKING:
    from shadowstore.engine.storagegroup import StorageGroup


class Store:
    """One store file of a storage group. Use through ``StorageGroup.store(name)``."""

    def __init__(self, sg: StorageGroup, name: str, dbid: int, path: str, page_size: int) -> None:
        self.sg = sg
        self.name = name
        self.dbid = dbid
        self.path = path
        self.page_size = page_size
        self.limits = Limits(page_size)
        self.file: DatabaseFile | None = None
        self.header: DbHeader | None = None
        self.space: SpaceMap | None = None
        self.mounted = False
        self._head: DbState | None = None
        self._visible: DbState | None = None
        self._pending: deque[DbState] = deque()
        self.latch = WriterLatch()  # one write transaction at a time (engine/writerlatch.py)
        self._state_lock = threading.Lock()
        self._flush_lock = threading.RLock()
        self._readers: Counter[int] = Counter()
        self._pins: Counter[int] = Counter()
        self._retired: deque[tuple[int, list[object]]] = deque()
        self._flush_running = False  # a checkpoint has captured a state and may still give its nodes pages
        self._awaiting: list[tuple[int, list[int]]] = []
        self.cache = NodeCache()
        self.catalog_bytes = b""  # the catalog the durable header names (a checkpoint that changes nothing keeps it)

    def __repr__(self) -> str:
        return f"<Store {self.name!r} ({self.path}) of {self.sg.name!r}>"

    # --- opening and loading ------------------------------------------------------------------------------

    def read_header(self) -> DbHeader:
        """The file's newest valid header (events 456/472 when a copy is damaged)."""
        choice = read_header_copies(self.sg.fs, self.path)
        for index, _problem in choice.damaged:
            self.sg.events.emit(456 if index == 0 else 472, sg=self.sg.name, file=self.path, size=self.page_size)
        if choice.header.page_size != self.page_size:
            # why the configuration is named, not the store: the copy read verified and its checksum covers the
            # page-size field, so the file has the pages it was created with; page_size in the config changed
            found = choice.header.page_size
            raise PageSizeMismatchError(
                f"{self.path}: the configuration says {self.page_size}-byte pages, the file has {found}-byte pages "
                f"(page_size of storage group {self.sg.name!r})",
                hint=f"put 'page_size = {found}' back for {self.sg.name!r} in {CONFIG_NAME} ({PREVIOUS_NAME} keeps "
                "the configuration before its last rewrite); the store file is not damaged, and the page size of "
                "an existing storage group cannot be changed",
                file=self.path,
            )
        return choice.header

    def open(self) -> DbHeader:
        """Open the file and read its header (no state is loaded yet)."""
        header = self.read_header()
        self.file = DatabaseFile(
            self.sg.fs, self.path, self.page_size, self.sg.events, self.sg.name, self.sg.lost_writes
        )
        self.header = header
        return header

    def load_state(self) -> DbState:
        """Read the catalog and the space map the header names; the durable state becomes head and visible."""
        assert self.file is not None and self.header is not None
        header = self.header
        if header.space_map.is_empty:
            self.space = SpaceMap.empty(header.page_count)
        else:
            self.space = SpaceMap.from_bitmap(header.page_count, self.file.read_blob(header.space_map))
        self.catalog_bytes = self.file.read_blob(header.catalog)
        try:
            next_id, entries = unpack_catalog(self.catalog_bytes)
        except CatalogError as exc:
            raise DatabaseCorruptedError(
                f"{self.path}: the catalog at page {header.catalog.first_page} is damaged: {exc}"
            ) from None
        tables: dict[str, TableMeta] = {}
        for entry in entries:
            tables[entry.name] = TableMeta(entry.table_id, entry.name, entry.root_page)
        state = DbState(header.dbtime, tables, next_id, header.replay_start)
        self._head = self._visible = state
        self._pending.clear()
        self._retired.clear()
        self._awaiting.clear()
        return state

    def close(self) -> None:
        """Forget the open file and states. A write transaction still open is aborted: a later mount must
        not wait for a client of this one."""
        self.mounted = False
        self.abort_writer(
            NotMountedError(
                f"store {self.name} of {self.sg.name} was closed while a write "
                "transaction was open; nothing of that transaction was written"
            )
        )
        if self.file is not None:
            self.file.close()
            self.file = None
        self.cache = NodeCache()
        self._head = self._visible = None

    # --- TreeIO ------------------------------------------------------------------------------------------

    def load(self, pgno: int) -> Node:
        node = self.cache.young.get(pgno)  # why not a method: this is every step of every tree walk
        if node is None:
            node = self.cache.promote(pgno)
            if node is None:
                if self.file is None:
                    raise NotMountedError(f"store {self.name} is not mounted")
                node = read_node(self.file, pgno)
                self.cache.put(node)
        return node

    def read_blob(self, ref: BlobRef) -> bytes:
        if self.file is None:
            raise NotMountedError(f"store {self.name} is not mounted")
        return self.file.read_blob(ref)

    def read_blob_pieces(self, ref: BlobRef) -> list[memoryview]:
        if self.file is None:
            raise NotMountedError(f"store {self.name} is not mounted")
        return self.file.read_blob_pieces(ref)

    # --- transactions ------------------------------------------------------------------------------------

    def transaction(self, *, lazy: bool = False) -> Transaction:
        """Begin a write transaction (waits for the writer latch). Use it in a ``with`` block.

        A transaction that holds the latch longer than the maintenance policy's ``transaction_timeout`` is
        aborted (see ``abort_writer``): its next call raises TransactionAbortedError."""
        self.latch.acquire()
        if not self.mounted or self._head is None:
            self.latch.release_anonymous()
            raise self._not_mounted()
        txn = Transaction(self, self._head, writable=True, lazy=lazy)
        txn.ticket = self.latch.adopt(txn)
        return txn

    def abort_writer(self, error: ShadowStoreError) -> Transaction | None:
        """Take the writer latch away from the write transaction holding it: that transaction is aborted
        (nothing of it was logged) and its next call raises ``error``. Returns it, or None when there is none
        or it is in the middle of its commit's append (which ends by itself in microseconds)."""
        txn = self.latch.take_away()
        if txn is None:
            return None
        assert isinstance(txn, Transaction)
        txn.kill(error)
        return txn

    def take_latch(self, bound: float, why: str) -> None:
        """Wait for the writer latch anonymously (dismount); a transaction that keeps it for ``bound`` seconds
        of this wait is aborted, with event 1026, so the wait ends."""
        watch = LatchWatch()
        while not self.latch.acquire(timeout=min(0.05, bound)):
            held = watch.held(self.latch)
            if held > bound and self.abort_writer(self.sg.writer_timeout_error(self, held, why)) is not None:
                self.sg.events.emit(1026, sg=self.sg.name, store=self.name, seconds=f"{held:.1f}", why=why)

    def _not_mounted(self) -> Exception:
        """The error for using a store that is not mounted: why the storage group stopped, if it did."""
        stopped = self.sg.stopped_error(f"store {self.name}")
        if stopped is not None:
            return stopped
        if self.sg.mounted:  # why say so: "mount the storage group first" would not help (engine/storemount.py)
            return NotMountedError(
                f"store {self.name} of {self.sg.name} is not mounted, while its storage group is",
                hint="mount the store again (it was dismounted on its own, or its storage group is being dismounted)",
            )
        return NotMountedError(f"store {self.name} of {self.sg.name} is not mounted")

    def snapshot(self) -> Transaction:
        """Begin a read-only transaction on the newest durable state."""
        with self._state_lock:
            state = self._visible
            if not self.mounted or state is None:
                raise self._not_mounted()
            self._readers[state.dbtime] += 1
        return Transaction(self, state, writable=False)

    def _end_read(self, txn: Transaction) -> None:
        with self._state_lock:
            self._readers[txn.state.dbtime] -= 1
            if self._readers[txn.state.dbtime] <= 0:
                del self._readers[txn.state.dbtime]

    def _end_write(self, txn: Transaction) -> None:
        self.latch.release(txn.ticket)

    def _commit_write(self, txn: Transaction, wait: bool = True) -> LgPos | None:
        if not self.latch.begin_commit(txn.ticket):
            txn.raise_killed()
        try:
            if txn.op_count == 0 and not txn.ctx.retired:
                return None
            dbtime = txn.state.dbtime + 1
            ops = txn.ops
            TXN_HEADER.pack_into(ops, 0, KIND_TXN, self.dbid, 0, dbtime, 0, txn.op_count)  # its room left at begin
            start, end = self.sg.log.append(ops, time_at=TXN_TIME_OFFSET)
            txn.commit_time_us = int.from_bytes(ops[TXN_TIME_OFFSET : TXN_TIME_OFFSET + 8], "little")
            txn.stamp.lgpos = start.pack_u64()
            state = DbState(dbtime, txn.current_tables, txn.next_table_id, end)
            with self._state_lock:
                self._head = state
                if txn.ctx.retired:
                    retired = resolve_retired(txn.ctx.retired, self._flush_running)
                    if retired:
                        self._retired.append((dbtime, retired))
                if txn.lazy:
                    self._publish(state)
                else:
                    self._pending.append(state)
        finally:
            self.latch.end_commit()
        if not txn.lazy:
            if not wait:
                txn.durable_end = end
                return start
            self.sg.log.flush(end)
            self.publish_flushed()
        self.sg.note_commit()
        return start

    def wait_durable(self, txn: Transaction) -> None:
        """After ``txn.commit(wait=False)``: return once its record is durable and its state visible. Raises
        what a failed log flush raises (the storage group then stops; the transaction's outcome is unknown to
        the client, as for any commit interrupted by an I/O error)."""
        end = txn.durable_end
        if end is None:
            return
        self.sg.log.flush(end)
        self.publish_flushed()
        self.sg.note_commit()

    def publish_flushed(self) -> None:
        """Make every state whose records are durable visible to readers."""
        flushed = self.sg.log.flushed
        with self._state_lock:
            pending = self._pending
            while pending and pending[0].end <= flushed:
                self._publish(pending.popleft())

    def _publish(self, state: DbState) -> None:
        # Requires: _state_lock is held.
        if self._visible is None or state.dbtime > self._visible.dbtime:
            self._visible = state
        while self._pending and self._pending[0].dbtime <= state.dbtime:
            self._pending.popleft()

    def replay_transaction(self) -> Transaction:
        """A write transaction for log replay (recovery); the caller applies operations and installs it."""
        assert self._head is not None
        self.latch.acquire()
        txn = Transaction(self, self._head, writable=True)
        txn.ticket = self.latch.adopt(txn)
        return txn

    def install_replayed(self, txn: Transaction, dbtime: int, end: LgPos) -> None:
        """Make a replayed transaction the head and visible state (recovery only)."""
        state = DbState(dbtime, txn.current_tables, txn.next_table_id, end)
        with self._state_lock:
            self._head = self._visible = state
            retired = resolve_retired(txn.ctx.retired, self._flush_running)
            if retired:
                self._retired.append((dbtime, retired))
        txn._open = False
        self.latch.release(txn.ticket)

    @property
    def head(self) -> DbState | None:
        return self._head

    # --- pins and release of pages ------------------------------------------------------------------------

    def pin(self) -> DbHeader:
        """Keep every page the durable header refers to from being reused until ``unpin(header.dbtime)``.

        For backup readers: the returned header's tree, catalog and space map stay intact on disk while
        writers and checkpoints go on.
        """
        with self._state_lock:
            if self.header is None:
                raise NotMountedError(f"store {self.name} is not open")
            self._pins[self.header.dbtime] += 1
            return self.header

    def space_map_of(self, header: DbHeader) -> bytearray:
        """For a pinned (or the current) durable header: ``used[pgno]`` is 1 for every page it refers to."""
        assert self.file is not None
        bitmap = b"" if header.space_map.is_empty else self.file.read_blob(header.space_map)
        return page_flags(header.page_count, bitmap)

    def stamp_backup(self, kind: str, info: BackupInfo) -> None:
        """Record a backup that ended successfully in the header's slot for its kind (durably, both copies).

        A full backup also clears the incremental, differential and current-backup blocks: a new chain starts.
        """
        with self._flush_lock:
            if self.file is None or self.header is None:
                raise NotMountedError(f"store {self.name} is not open")
            self.sg.check_writable()
            header = storeheader.stamped(self.header, kind, info)
            self.file.write_header(header)
            self.header = header

    def unpin(self, dbtime: int) -> None:
        with self._state_lock:
            self._pins[dbtime] -= 1
            if self._pins[dbtime] <= 0:
                del self._pins[dbtime]

    def release_horizon(self) -> int:
        """Pages retired by transactions up to this dbtime are unreachable by every reader and pin."""
        assert self.header is not None
        with self._state_lock:
            horizon = self.header.dbtime
            if self._readers:
                horizon = min(horizon, min(self._readers))
            if self._pins:
                horizon = min(horizon, min(self._pins))
        return horizon

    def retired_pages_upto(self, dbtime: int) -> list[int]:
        """Pages of everything retired by transactions up to ``dbtime`` (entries stay until forgotten)."""
        pages: list[int] = []
        with self._state_lock:
            entries = [refs for t, refs in self._retired if t <= dbtime]
        for refs in entries:
            for ref in refs:
                pages.extend(pages_of(ref))
        return pages

    def _forget_retired_upto(self, dbtime: int, dropped: list[int]) -> None:
        with self._state_lock:
            while self._retired and self._retired[0][0] <= dbtime:
                self._retired.popleft()
        self._awaiting.append((dbtime, dropped))
        self._release_eligible()

    def _release_eligible(self) -> None:
        assert self.space is not None
        horizon = self.release_horizon()
        keep = []
        for dbtime, pages in self._awaiting:
            if dbtime <= horizon:
                self.space.release(pages)
                self.cache.forget(pages)
            else:
                keep.append((dbtime, pages))
        self._awaiting = keep

    # --- checkpoints -------------------------------------------------------------------------------------

    def write_dirty_header(self, attach_start: LgPos, attach_end: LgPos) -> None:
        """Mount: mark the file Dirty Shutdown (durably) before any page can be written; the loaded state then
        covers the log up to the attach. Requires: load_state was called."""
        assert self.file is not None and self.header is not None and self._head is not None
        header = storeheader.attached(self.header, self.sg.signature, attach_start, attach_end)
        self.file.write_header(header)
        self.header = header
        head = self._head
        self._head = self._visible = DbState(head.dbtime, head.tables, head.next_table_id, attach_end)

    def checkpoint(self, *, clean_at: LgPos | None = None, detach: LgPos | None = None) -> DbHeader:
        """Write the newest committed state to the file and advance this store's replay start.

        With ``clean_at`` the header says Clean Shutdown, consistent at that position (dismount, end of
        recovery); ``detach`` records the detach position. Raises DiskFullError/DiskIOError.
        """
        with self._flush_lock:
            if self.file is None or self.header is None or self._head is None:
                raise NotMountedError(f"store {self.name} is not open")
            self.sg.check_writable()
            state, covered = self._state_and_coverage(clean_at)

            def make_header(catalog: BlobRef, space_map: BlobRef, page_count: int) -> DbHeader:
                assert self.header is not None
                # flush_state flushed the log up to ``covered`` before calling this
                return storeheader.checkpointed(
                    self.header,
                    dbtime=state.dbtime,
                    tree=(catalog, space_map, page_count),
                    signature=self.sg.signature,
                    covered=covered,
                    disk_generation=self.sg.log.disk_generation if self.sg.log_open else covered.gen,
                    clean_at=clean_at,
                    detach=detach,
                )

            try:
                header, dropped = flush_state(self, state, covered, make_header)
            finally:
                with self._state_lock:
                    self._flush_running = False
            self.header = header
            self._forget_retired_upto(state.dbtime, dropped)
            return header

    def _state_and_coverage(self, clean_at: LgPos | None) -> tuple[DbState, LgPos]:
        """The state to write and the log position the file will cover.

        When no write transaction is open, nothing of this store can be logged between reading the head and
        reading the log tail, so the file covers the whole log up to the tail; an idle store then does not
        hold the checkpoint back. Otherwise it covers up to the head's last record.
        """
        assert self._head is not None
        if clean_at is not None:
            return self._capture_head(), clean_at
        if self.latch.try_idle():
            try:
                state = self._capture_head()
                return state, max(state.end, self.sg.log.tail) if self.sg.log_open else state.end
            finally:
                self.latch.release_anonymous()
        state = self._capture_head()
        return state, state.end

    def _capture_head(self) -> DbState:
        """The head state, for a checkpoint to write; commits from now on keep what they retire resolvable."""
        with self._state_lock:
            assert self._head is not None
            self._flush_running = True
            return self._head

    def update_required_max(self, generation: int) -> None:
        """Record that logs up to ``generation`` may hold this store's transactions (after a log roll)."""
        with self._flush_lock:
            if self.file is None or self.header is None:
                return
            header = storeheader.rolled(self.header, generation)
            if header is None:
                return
            self.sg.check_writable()
            self.file.write_header(header)
            self.header = header

    @property
    def replay_start(self) -> LgPos:
        return self.header.replay_start if self.header is not None else LGPOS_ZERO

    def status(self) -> dict[str, object]:
        header = self.header
        return {
            "name": self.name,
            "file": self.path,
            "dbid": self.dbid,
            "mounted": self.mounted,
            "state": header.state_name if header else None,
            "dbtime": self._head.dbtime if self._head else (header.dbtime if header else None),
            "tables": sorted(self._head.tables) if self._head else None,
        }
