"""Mailboxes, folders and messages kept in one store of a storage group (layout: :mod:`shadowstore.mail.schema`).

    store = home.storage_group().store("Mailbox Store")     # the storage group mounted
    mail = MailStore(store)
    mail.create_mailbox("alice")
    uids = mail.add_messages("alice", "INBOX", [(raw, {})])  # one durable transaction
    for record in mail.messages("alice"):                    # one snapshot
        ...

Writes are engine transactions: ``add_messages`` stores every item of one call in ONE durable commit, so a
crash keeps all of them or none, and a service can batch many clients' messages into one log flush. Reads go
through snapshots, so a listing or an export sees one consistent state while imports go on. The tables are
created by the first write; reading a store that has none finds no mailboxes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

from shadowstore.engine.store import Store
from shadowstore.engine.transaction import MAX_VALUE_SIZE, Transaction
from shadowstore.errors import DatabaseCorruptedError, InvalidParameterError, NotFoundError
from shadowstore.mail import schema
from shadowstore.mail.schema import (
    MAX_ID,
    TABLE_FOLDERS,
    TABLE_MAILBOXES,
    TABLE_MESSAGES,
    TABLE_PROPS,
    MessageRecord,
    StoredMessage,
    decode_record,
    encode_record,
    validate_name,
)

Item = tuple[bytes, Mapping[str, Any]]  # raw message, extra properties
Prepared = tuple[bytes, bytes]  # raw message, encoded property record


class MailStore:
    """The mailbox layer over one mounted store, in this process."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- mailboxes ------------------------------------------------------------------------------------------------

    def create_mailbox(self, name: str) -> dict[str, Any]:
        """Create mailbox ``name`` and return its record. Idempotent: creating a mailbox that exists returns its
        record unchanged (an import into a new or an existing mailbox is the same command). Raises
        InvalidParameterError for a bad name."""
        validate_name(name, "mailbox")
        with self.store.transaction() as tx:
            _ensure_tables(tx)
            found = _read(tx, TABLE_MAILBOXES, schema.mailbox_key(name))
            if found is not None:
                return found
            ids = [decode_record(v, TABLE_MAILBOXES, k)["id"] for k, v in tx.range(TABLE_MAILBOXES)]
            mailbox_id = max(ids, default=0) + 1  # why max+1 and never reused: mailboxes are never deleted
            if mailbox_id > MAX_ID:
                raise InvalidParameterError(f"store {self.store.name} holds the most mailboxes it can")
            record = {
                "id": mailbox_id,
                "name": name,
                "created": time.time(),
                "sg": self.store.sg.name,
                "store": self.store.name,
            }
            tx.put(TABLE_MAILBOXES, schema.mailbox_key(name), encode_record(record, "mailbox record"))
            return record

    def mailboxes(self) -> list[dict[str, Any]]:
        """Every mailbox, by name: its record plus ``messages`` and ``bytes`` (totals over its folders) and
        ``folders`` (folder names)."""
        with self.store.snapshot() as snap:
            if not snap.has_table(TABLE_MAILBOXES):
                return []
            found = []
            for key, value in snap.range(TABLE_MAILBOXES):
                record = decode_record(value, TABLE_MAILBOXES, key)
                folders = _folders(snap, record["id"])
                record["messages"] = sum(f["messages"] for f in folders)
                record["bytes"] = sum(f["bytes"] for f in folders)
                record["folders"] = [f["name"] for f in folders]
                found.append(record)
            return found

    def mailbox(self, name: str) -> dict[str, Any]:
        """The record of mailbox ``name``. Raises NotFoundError naming the mailboxes there are."""
        with self.store.snapshot() as snap:
            return _mailbox(snap, name)

    def folders(self, mailbox: str) -> list[dict[str, Any]]:
        """The folders of ``mailbox`` by name: id, name, messages, bytes, next_uid, created."""
        with self.store.snapshot() as snap:
            return _folders(snap, _mailbox(snap, mailbox)["id"])

    def count(self, mailbox: str, folder: str | None = None) -> int:
        """How many messages ``mailbox`` (or one folder of it) holds."""
        return self.totals(mailbox, folder)[0]

    def totals(self, mailbox: str, folder: str | None = None) -> tuple[int, int]:
        """(messages, bytes of them) in ``mailbox`` (or one folder of it)."""
        with self.store.snapshot() as snap:
            record = _mailbox(snap, mailbox)
            folders = [_folder(snap, record, folder)] if folder is not None else _folders(snap, record["id"])
            return sum(int(f["messages"]) for f in folders), sum(int(f["bytes"]) for f in folders)

    # --- messages -------------------------------------------------------------------------------------------------

    def add_messages(self, mailbox: str, folder: str, items: Sequence[Item]) -> list[int]:
        """Store ``items`` (raw bytes, extra properties) in ``folder`` of ``mailbox`` (the folder is created if
        needed) and return their uids, consecutive, in order.

        All items of one call are committed in one durable transaction: when this returns they are all on
        stable storage; when it raises, none was stored. Raises NotFoundError for an unknown mailbox,
        InvalidParameterError naming the first bad item (not bytes, over 256 MiB, properties that are not JSON
        data) or a bad folder name, and the engine's errors (log disk full, not mounted, ...)."""
        prepared = prepare_items(items, time.time())  # why before the transaction: parsing holds no latch
        with self.store.transaction() as tx:
            return self.add_in(tx, mailbox, folder, prepared)

    def add_in(self, tx: Transaction, mailbox: str, folder: str, prepared: Sequence[Prepared]) -> list[int]:
        """Stage ``prepared`` items (from :func:`prepare_items`) in the write transaction ``tx`` of this store,
        which the caller commits, perhaps with other callers' items (the service batches clients this way);
        returns their uids. Raises what ``add_messages`` raises; ``tx`` must then be aborted."""
        validate_name(folder, "folder")
        _ensure_tables(tx)
        record = _mailbox(tx, mailbox)
        box = _folder_for_write(tx, record, folder)
        first = int(box["next_uid"])
        if first + len(prepared) - 1 > MAX_ID:
            raise InvalidParameterError(f"folder {folder!r} of mailbox {mailbox!r} has used all its uids")
        uids = list(range(first, first + len(prepared)))
        for uid, (raw, props) in zip(uids, prepared, strict=True):
            key = schema.message_key(record["id"], box["id"], uid)
            tx.put(TABLE_MESSAGES, key, raw)
            tx.put(TABLE_PROPS, key, props)
        box["next_uid"] = first + len(prepared)
        box["messages"] += len(prepared)
        box["bytes"] += sum(len(raw) for raw, _ in prepared)
        tx.put(TABLE_FOLDERS, schema.folder_key(record["id"], folder), encode_record(box, "folder record"))
        return uids

    def messages(self, mailbox: str, folder: str | None = None, *, raw: bool = True) -> Generator[MessageRecord]:
        """The messages of ``mailbox`` (or of one folder), folder by folder in name order, in uid order. An
        unknown mailbox or folder raises NotFoundError here, at the call; the iteration reads one snapshot
        taken at its first step and held until it ends (close the iterator to end it early). With
        ``raw=False`` the records carry properties only (``raw`` is empty), which is what a listing needs."""
        return self._iterate(self._find(mailbox, folder), folder, raw)

    def stored_messages(
        self,
        mailbox: str,
        folder: str | None = None,
        *,
        raw: bool = True,
        space: Callable[[int], memoryview | None] | None = None,
    ) -> Generator[StoredMessage]:
        """As ``messages``, each message as the store holds it: its property record encoded (checked to be a
        JSON object, not decoded) and its bytes as the pieces the store reads, uncopied. For a program that
        sends messages on (the service's mail socket), which then neither decodes and encodes the properties
        again nor copies the bytes. With ``space``, a message whose bytes are on disk is read into the memory
        ``space(n)`` gives for its n bytes of pages, when it gives some (``StoredMessage.runs``)."""
        return self._iterate_stored(self._find(mailbox, folder), folder, raw, space)

    def get(self, mailbox: str, folder: str, uid: int) -> MessageRecord:
        """One message. Raises NotFoundError for an unknown mailbox, folder or uid."""
        with self.store.snapshot() as snap:
            record = _mailbox(snap, mailbox)
            box = _folder(snap, record, folder)
            key = schema.message_key(record["id"], box["id"], uid)
            props = _read(snap, TABLE_PROPS, key)
            if props is None:
                raise NotFoundError(
                    f"folder {folder!r} of mailbox {mailbox!r} has no message with uid {uid}",
                    hint=f"'shadowstore mail list --mailbox {mailbox}' lists its messages",
                )
            return MessageRecord(folder, uid, _raw(snap, key), props)

    def _find(self, mailbox: str, folder: str | None) -> dict[str, Any]:
        """The record of ``mailbox``; raises NotFoundError for it or for ``folder`` (when given)."""
        with self.store.snapshot() as snap:
            record = _mailbox(snap, mailbox)
            if folder is not None:
                _folder(snap, record, folder)
        return record

    def _iterate(self, record: dict[str, Any], folder: str | None, raw: bool) -> Generator[MessageRecord]:
        with contextlib.closing(self._walk(record, folder)) as walk:
            for snap, name, key, value in walk:
                uid = schema.unpack_message_key(key).uid
                props = decode_record(value, TABLE_PROPS, key)
                yield MessageRecord(name, uid, _raw(snap, key) if raw else b"", props)

    def _iterate_stored(
        self, record: dict[str, Any], folder: str | None, raw: bool, space: Callable[[int], memoryview | None] | None
    ) -> Generator[StoredMessage]:
        with contextlib.closing(self._walk(record, folder)) as walk:
            for snap, name, key, value in walk:
                if value[:1] != b"{" or value[-1:] != b"}":  # what decode_record would refuse, cheaply
                    raise DatabaseCorruptedError(f"table {TABLE_PROPS}: the record of key {key.hex()} is not JSON")
                pieces, runs = _placed(snap, key, space or _no_space) if raw else ([], None)
                yield StoredMessage(name, schema.unpack_message_key(key).uid, value, pieces, runs)

    def _walk(self, record: dict[str, Any], folder: str | None) -> Generator[tuple[Transaction, str, bytes, bytes]]:
        """(snapshot, folder name, key, encoded properties) of each message of ``record``'s mailbox (or one
        folder) from one snapshot, which ends when the walk does."""
        snap = self.store.snapshot()
        try:
            folders = _folders(snap, record["id"])
            for box in folders if folder is None else [f for f in folders if f["name"] == folder]:
                prefix = schema.message_prefix(record["id"], box["id"])
                for key, value in snap.range(TABLE_PROPS, prefix=prefix):
                    yield snap, box["name"], key, value
        finally:
            snap.abort()  # a read ends the same way whether it was read to the end or not


# --- helpers over one transaction or snapshot ---------------------------------------------------------------------


def prepare_items(
    items: Sequence[Item], now: float, headers: Sequence[Mapping[str, Any]] | None = None
) -> list[Prepared]:
    """(raw, encoded property record) of each item, ``now`` being the received time of items whose properties
    give none. Pure CPU work (hashing, header parsing), done before a transaction takes the writer latch.
    ``headers``, when given, holds each item's headers as ``schema.parse_headers`` gives them, parsed by the
    sender. Raises InvalidParameterError naming the first bad item."""
    if isinstance(items, bytes | str) or not isinstance(items, Sequence):
        raise InvalidParameterError("add_messages takes a list of (raw bytes, properties) pairs")
    if headers is not None and len(headers) != len(items):
        raise InvalidParameterError(f"{len(items)} messages came with {len(headers)} sets of parsed headers")
    prepared = []
    for index, item in enumerate(items):
        what = f"message {index + 1} of {len(items)}"
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise InvalidParameterError(f"{what} is not a (raw bytes, properties) pair")
        raw, extra = item
        prepared.append(prepare_item(raw, extra, now, None if headers is None else headers[index], what))
    return prepared


def prepare_item(raw: object, extra: object, now: float, headers: Mapping[str, Any] | None, what: str) -> Prepared:
    """One item of ``prepare_items`` (``what`` names it in errors): for a sender that prepares each message as it
    arrives, while the next one is on its way."""
    if isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise InvalidParameterError(f"{what} is {type(raw).__name__}, not bytes")
    if len(raw) > MAX_VALUE_SIZE:
        raise InvalidParameterError(
            f"{what} is {len(raw):,} bytes; a message is at most {MAX_VALUE_SIZE:,} bytes (256 MiB)",
            hint="store the message outside the mail store; nothing of this batch was stored",
        )
    if not isinstance(extra, Mapping):
        raise InvalidParameterError(f"the properties of {what} are {type(extra).__name__}, not a mapping")
    props = schema.message_props(raw, extra, now, headers)
    return raw, encode_record(props, f"the properties of {what}")


def _ensure_tables(tx: Transaction) -> None:
    for table in schema.TABLES:
        if not tx.has_table(table):
            tx.create_table(table)


def _read(tx: Transaction, table: str, key: bytes) -> dict[str, Any] | None:
    if not tx.has_table(table):
        return None
    value = tx.get(table, key)
    return None if value is None else decode_record(value, table, key)


def _raw(tx: Transaction, key: bytes) -> bytes:
    return b"".join(_placed(tx, key, _no_space)[0])  # why join: one copy, of the page payloads the store read


def _placed(
    tx: Transaction, key: bytes, space: Callable[[int], memoryview | None]
) -> tuple[list[bytes | memoryview], list[tuple[int, int]] | None]:
    placed = tx.get_placed(TABLE_MESSAGES, key, space)
    if placed is None:  # why corruption: props and raw bytes are only ever written together
        raise DatabaseCorruptedError(f"table {TABLE_MESSAGES} has no message for key {key.hex()}, which has properties")
    return placed


def _no_space(_size: int) -> None:
    """No memory of the reader's: a message's bytes are read into the store's own buffers."""
    return None


def _mailbox(tx: Transaction, name: str) -> dict[str, Any]:
    record = _read(tx, TABLE_MAILBOXES, schema.mailbox_key(name)) if isinstance(name, str) else None
    if record is None:
        names = (
            [k.decode(errors="replace") for k, _ in tx.range(TABLE_MAILBOXES)] if tx.has_table(TABLE_MAILBOXES) else []
        )
        known = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise NotFoundError(
            f"store {tx.store.name} has no mailbox {name!r}" + (f" (it has: {known})" if names else " (it has none)"),
            hint="'shadowstore mail list' lists the mailboxes; 'shadowstore mail import --mailbox NAME' creates one",
        )
    return record


def _folders(tx: Transaction, mailbox_id: int) -> list[dict[str, Any]]:
    if not tx.has_table(TABLE_FOLDERS):
        return []
    prefix = schema.folder_prefix(mailbox_id)
    return [decode_record(v, TABLE_FOLDERS, k) for k, v in tx.range(TABLE_FOLDERS, prefix=prefix)]


def _folder(tx: Transaction, mailbox: dict[str, Any], name: str) -> dict[str, Any]:
    record = _read(tx, TABLE_FOLDERS, schema.folder_key(mailbox["id"], name)) if isinstance(name, str) else None
    if record is None:
        names = [f["name"] for f in _folders(tx, mailbox["id"])]
        raise NotFoundError(
            f"mailbox {mailbox['name']!r} has no folder {name!r} (it has: {', '.join(names) or 'none'})",
            hint=f"'shadowstore mail list --mailbox {mailbox['name']}' shows its folders",
        )
    return record


def _folder_for_write(tx: Transaction, mailbox: dict[str, Any], name: str) -> dict[str, Any]:
    """The folder record to update, made (with the next free folder id) when the folder is new."""
    found = _read(tx, TABLE_FOLDERS, schema.folder_key(mailbox["id"], name))
    if found is not None:
        return found
    folder_id = max((f["id"] for f in _folders(tx, mailbox["id"])), default=0) + 1
    if folder_id > MAX_ID:
        raise InvalidParameterError(f"mailbox {mailbox['name']!r} holds the most folders it can")
    return {"id": folder_id, "name": name, "next_uid": 1, "messages": 0, "bytes": 0, "created": time.time()}
