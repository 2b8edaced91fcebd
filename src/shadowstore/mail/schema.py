"""The mailbox layer's tables in a store: their names, key layouts and records (docs/formats.md, "Mailbox layer").

Four tables of one store hold every mailbox of that store::

    mail.mailboxes  name (UTF-8)                                   -> mailbox record (JSON)
    mail.folders    mailbox id (u32 BE) + folder name (UTF-8)       -> folder record (JSON)
    mail.messages   mailbox id (u32 BE) + folder id (u32 BE) + uid  -> the raw message, exactly as received
    mail.props      the same 12-byte key                            -> message properties (JSON)

Why big-endian numbers: the engine orders keys as bytes, so a prefix scan of (mailbox, folder) yields the
folder's messages in uid order, and every folder of a mailbox sits under one 4-byte prefix. Why raw bytes and
properties apart: listing a folder reads the small property records only, never the messages.

The properties are parsed from the raw bytes here, tolerantly: nothing a message holds (no header, broken
encoded words, 8-bit junk, binary) makes :func:`message_props` raise, and the raw bytes are never changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.parser import HeaderParser
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

from shadowstore.errors import DatabaseCorruptedError, InvalidParameterError

TABLE_MAILBOXES = "mail.mailboxes"
TABLE_FOLDERS = "mail.folders"
TABLE_MESSAGES = "mail.messages"
TABLE_PROPS = "mail.props"
TABLES = (TABLE_MAILBOXES, TABLE_FOLDERS, TABLE_MESSAGES, TABLE_PROPS)

MAILBOX_ID = struct.Struct(">I")  # 0 mailbox id
MESSAGE_KEY = struct.Struct(">III")  # 0 mailbox id, 4 folder id, 8 uid
assert MAILBOX_ID.size == 4 and MESSAGE_KEY.size == 12

MAX_ID = 0xFFFF_FFFF  # mailbox ids, folder ids and uids are u32; uid 0 is never given
MAX_NAME_BYTES = 200  # mailbox and folder names, UTF-8 (keys stay far below the engine's 1024-byte limit)
DEFAULT_FOLDER = "INBOX"
HEADER_SCAN_LIMIT = 256 * 1024  # why a limit: properties come from the header block; a body is never parsed
TEXT_LIMIT = 998  # the longest header line RFC 5322 allows; longer parsed values are cut


class MessageKey(NamedTuple):
    mailbox_id: int
    folder_id: int
    uid: int


@dataclass(frozen=True)
class MessageRecord:
    """One stored message: its folder, uid, raw bytes (empty when read without them) and properties."""

    folder: str
    uid: int
    raw: bytes
    props: dict[str, Any] = field(default_factory=dict)


class StoredMessage(NamedTuple):
    """One stored message as the store holds it: folder, uid, the property record's encoding (compact JSON,
    as ``encode_record`` made it) and the raw bytes as pieces (empty when read without them), or, when they were
    read into memory the reader gave (``MailStore.stored_messages`` ``space``), where they are there: ``runs``,
    (offset, length) in that memory, in order."""

    folder: str
    uid: int
    props: bytes
    pieces: list[bytes | memoryview]
    runs: list[tuple[int, int]] | None = None


# --- keys ---------------------------------------------------------------------------------------------------------


def mailbox_key(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")  # why surrogatepass: a lookup of any text finds, or not; never fails


def folder_key(mailbox_id: int, name: str) -> bytes:
    return MAILBOX_ID.pack(mailbox_id) + name.encode("utf-8", "surrogatepass")


def folder_prefix(mailbox_id: int) -> bytes:
    return MAILBOX_ID.pack(mailbox_id)


def message_key(mailbox_id: int, folder_id: int, uid: int) -> bytes:
    """The key of a message. Raises InvalidParameterError for a uid that is not 1 to 2**32-1."""
    if isinstance(uid, bool) or not isinstance(uid, int) or not 0 < uid <= MAX_ID:
        raise InvalidParameterError(f"a uid is a number from 1 to {MAX_ID}, not {uid!r}")
    return MESSAGE_KEY.pack(mailbox_id, folder_id, uid)


def message_prefix(mailbox_id: int, folder_id: int) -> bytes:
    return MESSAGE_KEY.pack(mailbox_id, folder_id, 0)[:8]


def unpack_message_key(key: bytes) -> MessageKey:
    """The parts of a message key. Raises DatabaseCorruptedError when it is not 12 bytes."""
    if len(key) != MESSAGE_KEY.size:
        raise DatabaseCorruptedError(f"table {TABLE_PROPS}: a key of {len(key)} bytes is not a message key")
    return MessageKey(*MESSAGE_KEY.unpack(key))


# --- names --------------------------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_name(name: object, what: str) -> str:
    """``name`` if it can name a mailbox or folder: 1-200 bytes of UTF-8 text, no control characters, no '/'
    (names become Maildir folder names on export), no edge spaces, not starting with '.' (a Maildir++
    subfolder's mark). Raises InvalidParameterError saying which rule it breaks."""
    if not isinstance(name, str) or not name:
        raise InvalidParameterError(f"a {what} name must be non-empty text, got {name!r}")
    problem = None
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        size, problem = 0, "is not valid Unicode text"
    if problem is None and size > MAX_NAME_BYTES:
        problem = f"is {size} bytes long (at most {MAX_NAME_BYTES})"
    elif problem is None and (_CONTROL.search(name) or "/" in name):
        problem = "holds a control character or '/'"
    elif problem is None and (name != name.strip() or name.startswith(".")):
        problem = "starts or ends with a space, or starts with '.'"
    if problem is not None:
        raise InvalidParameterError(f"{what} name {name!r} {problem}", hint=f"choose another {what} name")
    return name


# --- records ------------------------------------------------------------------------------------------------------


def encode_record(record: Mapping[str, Any], what: str) -> bytes:
    """A record as compact JSON. ``ensure_ascii`` so that any text, even lone surrogates from undecodable file
    names, encodes. Raises InvalidParameterError when a value is not JSON data."""
    try:
        return json.dumps(record, ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{what} cannot be stored: {exc}", hint="properties must be JSON data") from None


def decode_record(value: bytes, table: str, key: bytes) -> dict[str, Any]:
    """A record read back. Raises DatabaseCorruptedError naming the table and key when it is not a JSON object."""
    try:
        record = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        raise DatabaseCorruptedError(f"table {table}: the record of key {key.hex()} is not a JSON object")
    return record


# --- properties parsed from a raw message -------------------------------------------------------------------------

_PARSED = {"subject": "Subject", "from": "From", "to": "To", "date": "Date", "message_id": "Message-ID"}
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n[ \t]*")


HEADER_PROPS = (*_PARSED, "date_ts")  # the properties parse_headers gives


def message_props(
    raw: bytes, extra: Mapping[str, Any], received: float, headers: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The property record of ``raw``: the caller's ``extra`` properties (the mbox From_ line, Maildir name and
    flags, ...), then what is computed here, which wins: size, sha256, the parsed headers (None when absent or
    unreadable), ``date_ts`` (the Date header as seconds since 1970, or None) and ``received`` (``extra``'s if
    it is a number, else the one given). ``headers``, when given, is ``parse_headers(raw)`` already made (by a
    client of the service, which has the message anyway); size and sha256 are always computed here. Never
    raises for any bytes."""
    props = dict(extra)
    props["size"] = len(raw)
    props["sha256"] = hashlib.sha256(raw).hexdigest()
    given = extra.get("received")
    has_received = isinstance(given, int | float) and not isinstance(given, bool)
    props["received"] = float(given) if has_received else received  # type: ignore[arg-type]
    props.update(parse_headers(raw) if headers is None else headers)
    return props


def split_parsed(props: Mapping[str, Any], what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(extra properties, parsed headers) of a property record whose ``HEADER_PROPS`` were parsed by the
    sender. Raises InvalidParameterError naming ``what`` when one is missing or of the wrong type (text or
    null; ``date_ts`` a number or null)."""
    extra = {k: v for k, v in props.items() if k not in HEADER_PROPS}
    parsed = {}
    for name in HEADER_PROPS:
        if name not in props:
            raise InvalidParameterError(f"{what} lack the parsed header {name!r}")
        value = props[name]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value is not None and not (number if name == "date_ts" else isinstance(value, str)):
            kind = "a number" if name == "date_ts" else "text"
            raise InvalidParameterError(f"the parsed header {name!r} of {what} is not {kind} or null")
        if isinstance(value, str) and len(value) > TEXT_LIMIT:
            raise InvalidParameterError(f"the parsed header {name!r} of {what} is over {TEXT_LIMIT} characters")
        parsed[name] = value
    return extra, parsed


def parse_headers(raw: bytes) -> dict[str, Any]:
    """Subject, From, To, Date, Message-ID of ``raw`` as display text (encoded words decoded, folding removed),
    and ``date_ts``. Every value is None when the header is absent or the message has no header block."""
    parsed: dict[str, Any] = dict.fromkeys(_PARSED)
    parsed["date_ts"] = None
    try:
        headers = _header_parser(raw)
        for prop, name in _PARSED.items():
            value = headers.get(name)
            parsed[prop] = None if value is None else _display(str(value))
        parsed["date_ts"] = _timestamp(parsed["date"])
    except Exception:  # why so wide: a property is a convenience; no message may fail to be stored for it
        return parsed
    return parsed


def _header_parser(raw: bytes) -> Any:
    head = raw[:HEADER_SCAN_LIMIT]
    end = _HEADER_END.search(head)
    block = head[: end.start()] if end else head
    try:
        text = block.decode()
    except UnicodeDecodeError:
        text = block.decode("latin-1")  # why latin-1: every byte decodes, so 8-bit junk still shows
    return HeaderParser(policy=policy.compat32).parsestr(text, headersonly=True)


def _display(value: str) -> str:
    text = value
    if "=?" in value:
        try:
            text = str(make_header(decode_header(value)))
        except Exception:  # a broken encoded word: show it as it is
            text = value
    text = _FOLD.sub(" ", text)
    text = _CONTROL.sub(" ", text).strip()
    text = text.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates in a property
    return text[:TEXT_LIMIT]


def _timestamp(date: str | None) -> float | None:
    if not date:
        return None
    try:
        when = parsedate_to_datetime(date)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.timestamp()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
