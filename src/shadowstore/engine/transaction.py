"""Transactions on one store: the user-facing read/write API.

A write transaction (``Store.transaction()``) holds the store's writer latch from begin to commit, changes
private copies of the B+tree paths it touches and records its operations; ``commit`` appends one TXN record to
the log and, unless the commit is lazy, returns only when that record is durable. A read transaction
(``Store.snapshot()``) sees the state published when it began and never blocks the writer. Both are context
managers: leaving the block normally commits, an exception aborts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from shadowstore.engine import btree
from shadowstore.engine.btree import Blob, Ref, StoredValue
from shadowstore.errors import (
    InvalidParameterError,
    KeyTooLargeError,
    ReadOnlyTransactionError,
    ShadowStoreError,
    TableExistsError,
    TableNotFoundError,
    TransactionClosedError,
)
from shadowstore.format.common import LgPos
from shadowstore.format.dbheader import BlobRef
from shadowstore.format.logrecord import DELETE, DROP, OP_CREATE, OP_DELETE, OP_DROP, OP_PUT, PUT, TXN_HEADER

if TYPE_CHECKING:
    from shadowstore.engine.store import Store

MAX_VALUE_SIZE = 256 * 1024 * 1024
MAX_TABLE_NAME = 255
_pack_put = PUT.pack
_pack_delete = DELETE.pack


class TxnStamp:
    """Owner token of the nodes a write transaction creates; carries its log position once committed."""

    __slots__ = ("lgpos",)

    def __init__(self) -> None:
        self.lgpos = 0  # LGPOS as u64, set at commit


class TableMeta:
    """A table in a state: its id, name and B+tree root. Replaced, never changed, except that a checkpoint
    may swap a written root node for its page number (same content)."""

    __slots__ = ("id", "name", "root")

    def __init__(self, table_id: int, name: str, root: Ref) -> None:
        self.id = table_id
        self.name = name
        self.root = root


class DbState:
    """An immutable committed state of a store."""

    __slots__ = ("dbtime", "end", "next_table_id", "tables")

    def __init__(self, dbtime: int, tables: dict[str, TableMeta], next_table_id: int, end: LgPos) -> None:
        self.dbtime = dbtime
        self.tables = tables
        self.next_table_id = next_table_id
        self.end = end  # log position after the last record reflected in this state


def _as_bytes(value: object, what: str) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise InvalidParameterError(f"{what} must be bytes, not {type(value).__name__}")


class Transaction:
    """One transaction. Obtain it from ``Store.transaction()`` or ``Store.snapshot()``."""

    ticket: list[object]  # a write transaction's writer latch ticket (engine/writerlatch.py), set by the store

    def __init__(self, store: Store, state: DbState, *, writable: bool, lazy: bool = False) -> None:
        self.store = store
        self.state = state
        self.writable = writable
        self.lazy = lazy
        self._open = True
        self._killed: ShadowStoreError | None = None  # why the engine ended it (see Store.abort_writer)
        self._tables = state.tables
        self._changes = 0
        if writable:
            self.stamp = TxnStamp()
            self.ctx = btree.WriteContext(store, store.limits, self.stamp)
            self._tables_copied = False
            self._owned: dict[str, TableMeta] = {}
            self.next_table_id = state.next_table_id
            self.ops = bytearray(TXN_HEADER.size)  # the record's header, filled at commit (not inserted: a copy)
            self.op_count = 0
        self.commit_time_us: int | None = None  # set by a commit that wrote a record
        self.durable_end: LgPos | None = None  # set by commit(wait=False): what Store.wait_durable waits for

    # --- context manager ----------------------------------------------------------------------------------

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._open:
            if exc_type is None and self._killed is not None:
                # why: the block ended normally but the engine ended the transaction under it (its latch taken
                # away, the storage group gone offline): nothing was committed, and leaving quietly would tell
                # the caller it was
                self.raise_killed()
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # --- reading ------------------------------------------------------------------------------------------

    def tables(self) -> list[str]:
        self._check_open()
        return sorted(self._tables)

    def has_table(self, name: str) -> bool:
        self._check_open()
        return name in self._tables

    def get(self, table: str, key: bytes) -> bytes | None:
        """The value of ``key`` in ``table``, or None."""
        self._check_open()
        value = btree.lookup(self.store, self._meta(table).root, _as_bytes(key, "key"))
        return None if value is None else self._materialize(value)

    def get_placed(
        self, table: str, key: bytes, space: Callable[[int], memoryview | None]
    ) -> tuple[list[bytes | memoryview], list[tuple[int, int]] | None] | None:
        """The value of ``key`` in ``table``, uncopied, or None when there is no such key: ``(pieces, None)``, the
        pieces whose concatenation is the value (a long value's verified page payloads, views of one read: see
        ``DatabaseFile.read_blob_pieces``); or, for a long value on disk when ``space(n)`` gives memory for its n
        bytes of pages (memory a service shares with its client), ``([], runs)``: its pages read there, each run
        the (offset in that memory, length) of a page payload, in order."""
        self._check_open()
        value = btree.lookup(self.store, self._meta(table).root, _as_bytes(key, "key"))
        if value is None:
            return None
        if type(value) is bytes:
            return [value], None
        if type(value) is Blob:
            data = value.data  # why read once: a checkpoint may swap the data for its ref meanwhile
            if data is not None:
                return [data], None
            assert value.ref is not None
            value = value.ref
        ref: BlobRef = value  # type: ignore[assignment]
        file = self.store.file
        buffer = None if file is None else space(file.blob_span(ref))
        if file is None or buffer is None:
            return list(self.store.read_blob_pieces(ref)), None  # (not mounted: raises what it raises there)
        return [], file.read_blob_into(ref, buffer)

    def range(
        self, table: str, start: bytes | None = None, end: bytes | None = None, *, prefix: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs with ``start <= key < end`` (or starting with ``prefix``), in key order.

        In a write transaction, changing the transaction while iterating raises RuntimeError.
        """
        self._check_open()
        if prefix is not None:
            start, end = prefix, _prefix_end(prefix)
        root = self._meta(table).root
        changes = self._changes
        for key, value in btree.iterate(self.store, root, start, end):
            if self._changes != changes:
                raise RuntimeError("the transaction changed while a range scan was running")
            yield key, self._materialize(value)

    def count(self, table: str) -> int:
        return sum(1 for _ in btree.iterate(self.store, self._meta(table).root, None, None))

    def _materialize(self, value: StoredValue) -> bytes:
        if type(value) is bytes:
            return value
        if type(value) is Blob:
            data = value.data
            if data is not None:
                return data
            assert value.ref is not None
            return self.store.read_blob(value.ref)
        return self.store.read_blob(value)  # type: ignore[arg-type]

    def _meta(self, table: str) -> TableMeta:
        meta = self._tables.get(table)
        if meta is None:
            raise TableNotFoundError(f"store {self.store.name} has no table {table!r}")
        return meta

    # --- writing ------------------------------------------------------------------------------------------

    def create_table(self, name: str) -> None:
        self._check_writable()
        if not isinstance(name, str) or not name or len(name.encode()) > MAX_TABLE_NAME:
            raise InvalidParameterError(f"a table name must be 1-{MAX_TABLE_NAME} bytes of text, got {name!r}")
        if name in self._tables:
            raise TableExistsError(f"store {self.store.name} already has a table {name!r}")
        table_id = self.next_table_id
        self.next_table_id += 1
        self._apply_create(table_id, name)
        encoded = name.encode()
        self.ops += _pack_delete(OP_CREATE, table_id, len(encoded)) + encoded
        self.op_count += 1

    def drop_table(self, name: str) -> None:
        self._check_writable()
        meta = self._meta(name)
        self._apply_drop(meta)
        self.ops += DROP.pack(OP_DROP, meta.id)
        self.op_count += 1

    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value`` in ``table``. Raises KeyTooLargeError, InvalidParameterError,
        TableNotFoundError, ReadOnlyTransactionError."""
        # Hot path: the checks are inlined and the common case (bytes in, table already written) is straight.
        if not (self._open and self.writable):
            self._check_writable()
        if type(key) is not bytes:
            key = _as_bytes(key, "key")
        if type(value) is not bytes:
            value = _as_bytes(value, "value")
        limits = self.store.limits
        klen, vlen = len(key), len(value)
        if klen > limits.max_key:
            raise KeyTooLargeError(f"key of {klen} bytes is longer than {limits.max_key}")
        if vlen > MAX_VALUE_SIZE:
            raise InvalidParameterError(f"value of {vlen} bytes is larger than {MAX_VALUE_SIZE}")
        meta = self._owned.get(table) or self._writable_meta(table)
        meta.root = btree.insert(self.ctx, meta.root, key, value if vlen <= limits.inline_max else Blob(value))
        self._changes += 1
        ops = self.ops
        ops += _pack_put(OP_PUT, meta.id, klen, vlen)
        ops += key
        ops += value
        self.op_count += 1

    def delete(self, table: str, key: bytes) -> bool:
        """Remove ``key``; returns whether it was there (an absent key writes nothing to the log)."""
        self._check_writable()
        key = _as_bytes(key, "key")
        meta = self._meta(table)
        if btree.lookup(self.store, meta.root, key) is None:
            return False
        meta = self._writable_meta(table)
        self._apply_delete(meta, key)
        self.ops += _pack_delete(OP_DELETE, meta.id, len(key)) + key
        self.op_count += 1
        return True

    # --- applying operations (shared with log replay) -------------------------------------------------------

    def _apply_create(self, table_id: int, name: str) -> None:
        self._copy_tables()
        meta = TableMeta(table_id, name, btree.empty_leaf(self.stamp))
        self._tables[name] = meta
        self._owned[name] = meta
        self.next_table_id = max(self.next_table_id, table_id + 1)
        self._changes += 1

    def _apply_drop(self, meta: TableMeta) -> None:
        self._copy_tables()
        del self._tables[meta.name]
        self._owned.pop(meta.name, None)
        for ref in btree.walk_refs(self.store, meta.root):
            if type(ref) is int or type(ref) is BlobRef or type(ref) is Blob or ref.owner is not self.stamp:  # type: ignore[union-attr]
                self.ctx.retired.append(ref)
        self._changes += 1

    def _apply_put(self, meta: TableMeta, key: bytes, value: bytes) -> None:
        stored: StoredValue = value if len(value) <= self.store.limits.inline_max else Blob(value)
        meta.root = btree.insert(self.ctx, meta.root, key, stored)
        self._changes += 1

    def _apply_delete(self, meta: TableMeta, key: bytes) -> bool:
        meta.root, found = btree.remove(self.ctx, meta.root, key)
        self._changes += 1
        return found

    def _copy_tables(self) -> None:
        if not self._tables_copied:
            self._tables = dict(self._tables)
            self._tables_copied = True

    def _writable_meta(self, table: str) -> TableMeta:
        meta = self._owned.get(table)
        if meta is not None:
            return meta
        old = self._meta(table)
        self._copy_tables()
        meta = TableMeta(old.id, old.name, old.root)
        self._tables[table] = meta
        self._owned[table] = meta
        return meta

    @property
    def current_tables(self) -> dict[str, TableMeta]:
        return self._tables

    def table_by_id(self, table_id: int) -> TableMeta | None:
        for meta in self._tables.values():
            if meta.id == table_id:
                return meta
        return None

    # --- ending -------------------------------------------------------------------------------------------

    def commit(self, *, wait: bool = True) -> LgPos | None:
        """Commit; returns the log position of the commit record (None for a read or empty transaction), and
        sets ``commit_time_us``, the commit time the log gave it (restores to a point in time use it).

        Durable when it returns unless the transaction is lazy, or ``wait`` is False: then the record is
        appended (the writer latch is free for the next transaction) and ``Store.wait_durable(txn)`` waits for
        the disk; a commit batcher hands its lead on in between. Raises LogDiskFullError,
        StorageGroupOfflineError or NotMountedError; the transaction is then rolled back.
        """
        self._check_open()
        self._open = False
        if not self.writable:
            self.store._end_read(self)
            return None
        return self.store._commit_write(self, wait)

    def abort(self) -> None:
        if not self._open:
            return
        self._open = False
        if self.writable:
            self.store._end_write(self)
        else:
            self.store._end_read(self)

    def new_state(self, end: LgPos) -> DbState:
        return DbState(self.state.dbtime + 1, self._tables, self.next_table_id, end)

    def kill(self, error: ShadowStoreError) -> None:
        """The engine ended this transaction (its writer latch was taken away): every later call raises
        ``error``. Called by the store, from another thread."""
        self._killed = error
        self._open = False

    def raise_killed(self) -> None:
        assert self._killed is not None
        raise type(self._killed)(self._killed.message, hint=self._killed.hint)

    def _check_open(self) -> None:
        if not self._open:
            if self._killed is not None:
                self.raise_killed()
            raise TransactionClosedError("the transaction has already ended")

    def _check_writable(self) -> None:
        self._check_open()
        if not self.writable:
            raise ReadOnlyTransactionError("this is a read-only snapshot; use store.transaction() to write")


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix`` (None when there is none)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
