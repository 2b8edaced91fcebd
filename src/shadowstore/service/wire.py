"""What the Information Store service and its clients agree on besides JSON: how an error crosses the API, the
HTTP status each kind of error gets, and the framing of binary bodies that carry several messages at once.

An error crosses as its ``to_dict`` (the same document ``--json`` prints) under ``{"error": {...}}``; the
client raises the same class again, so a command prints the same line and exits with the same code whether it
ran in this process or in the service.

Frames: a body of ``application/x-shadowstore-frames`` is a sequence of records, each a 4-byte big-endian length
then that many bytes. A message is two records, its properties (JSON) then its raw bytes. Why not JSON with
base64: messages are bytes that must arrive unchanged, and base64 costs a third more on the wire and a copy.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from http import HTTPStatus

from shadowstore import errors
from shadowstore.errors import ExitCode, InvalidParameterError, ShadowStoreError
from shadowstore.mail.schema import StoredMessage

FRAMES = "application/x-shadowstore-frames"
_LENGTH = struct.Struct(">I")
MAX_FRAME = 256 << 20  # a message is at most a store value (256 MiB)
MAX_DELIVERY_BYTES = 1 << 30  # message bytes in one delivery (one commit); the service holds them all at once

_STATUS = {
    ExitCode.USAGE: HTTPStatus.BAD_REQUEST,
    ExitCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ExitCode.TARGET_NOT_FOUND: HTTPStatus.NOT_FOUND,
    ExitCode.BUSY: HTTPStatus.CONFLICT,
    ExitCode.DATABASE_STATE: HTTPStatus.CONFLICT,
    ExitCode.CONFIG_MISMATCH: HTTPStatus.CONFLICT,
    ExitCode.BACKUP_FAILED: HTTPStatus.CONFLICT,
    ExitCode.RESTORE_FAILED: HTTPStatus.CONFLICT,
    ExitCode.DISK_FULL: HTTPStatus.INSUFFICIENT_STORAGE,
    ExitCode.IO_ERROR: HTTPStatus.SERVICE_UNAVAILABLE,
}


def status_of(error: ShadowStoreError) -> int:
    """The HTTP status for ``error``: 4xx for what the caller can change, 5xx only for the server's own
    trouble (I/O, full disk, a bug)."""
    if isinstance(error, errors.UnexpectedError):
        return HTTPStatus.INTERNAL_SERVER_ERROR
    if isinstance(error, errors.AccessDeniedError):
        return HTTPStatus.FORBIDDEN
    return int(_STATUS.get(error.exit_code, HTTPStatus.CONFLICT))


def error_body(error: ShadowStoreError) -> dict[str, object]:
    return {"error": error.to_dict()}


def raise_from_body(status: int, body: bytes) -> None:
    """Raise the ShadowStoreError a service response carries (the class it was, when this side knows it)."""
    try:
        data = json.loads(body).get("error")
    except (ValueError, AttributeError):
        data = None
    if not isinstance(data, dict):
        text = body[:200].decode("utf-8", "replace").strip()
        raise errors.ServiceError(f"the service answered HTTP {status}: {text or 'no details'}")
    kind = getattr(errors, str(data.get("error")), None)
    cls = kind if isinstance(kind, type) and issubclass(kind, ShadowStoreError) else errors.ServiceError
    detail = {k: v for k, v in data.items() if k not in {"error", "code", "code_name", "exit_code", "message", "hint"}}
    error = cls(str(data.get("message")), hint=data.get("hint"), **detail)
    if data.get("code"):
        error.code = int(data["code"])
    raise error


# --- frames ----------------------------------------------------------------------------------------------


def frame(record: bytes) -> bytes:
    return _LENGTH.pack(len(record)) + record


def frame_length(size: int) -> bytes:
    """The length prefix of a record of ``size`` bytes alone (to send the record after it without copying it)."""
    return _LENGTH.pack(size)


def read_frames(message: StoredMessage) -> list[bytes | memoryview]:
    """The frames a read sends for ``message`` (its properties, then its bytes), as pieces to send without
    joining them."""
    return [props_frame(message), _LENGTH.pack(sum(map(len, message.pieces))), *message.pieces]


def props_frame(message: StoredMessage) -> bytes:
    """The frame of ``message``'s properties with ``folder`` and ``uid``: the stored record with the two fields
    spliced into its encoding, not decoded and encoded again. A record that has either name already (a client
    may give any properties) is merged as a dictionary instead, so that the message's own folder and uid win
    and no name appears twice."""
    props = message.props
    if b'"folder":' in props or b'"uid":' in props:
        merged = {**json.loads(props), "folder": message.folder, "uid": message.uid}
        props = json.dumps(merged, separators=(",", ":")).encode()
    else:
        tail = b'"folder":%s,"uid":%d}' % (json.dumps(message.folder).encode(), message.uid)
        props = props[:-1] + (tail if props == b"{}" else b"," + tail)
    return _LENGTH.pack(len(props)) + props


def message_frames(items: Iterable[tuple[dict[str, object], bytes]]) -> Iterator[bytes]:
    """The frames of ``(properties, raw)`` pairs, properties first."""
    for props, raw in items:
        yield frame(json.dumps(props, separators=(",", ":")).encode())
        yield _LENGTH.pack(len(raw))
        yield raw


def parse_messages(body: bytes | list[bytes]) -> list[tuple[dict[str, object], bytes]]:
    """The ``(properties, raw)`` pairs of a frames body, whole or as the chunks it arrived in (each message is
    then copied once, out of the chunks). Raises InvalidParameterError saying where it breaks."""
    reader = FrameReader([body] if isinstance(body, bytes) else body)
    found: list[tuple[dict[str, object], bytes]] = []
    while True:
        props_bytes = _checked(reader, f"message {len(found) + 1}'s properties", at_end_ok=True)
        if props_bytes is None:
            return found
        raw = _checked(reader, f"message {len(found) + 1}'s bytes", at_end_ok=False)
        assert raw is not None
        try:
            props = json.loads(props_bytes)
        except (ValueError, RecursionError):  # why RecursionError: a deeply nested object is bad input, not a bug
            props = None
        if not isinstance(props, dict):
            raise InvalidParameterError(
                f"message {len(found) + 1}'s properties are not a JSON object",
                hint=f"send {FRAMES}: per message a length-prefixed JSON object, then the length-prefixed bytes",
            )
        found.append((props, raw))


def _checked(reader: FrameReader, what: str, *, at_end_ok: bool) -> bytes | None:
    offset = reader.consumed
    if not reader.has(4):
        if at_end_ok and reader.held == 0:
            return None
        raise InvalidParameterError(f"the body ends inside the length of {what} (at byte {offset})")
    length = reader.peek_length()
    if length > MAX_FRAME:
        raise InvalidParameterError(f"{what} claims {length:,} bytes; a message is at most {MAX_FRAME:,} bytes")
    if not reader.has(4 + length):
        raise InvalidParameterError(f"the body ends inside {what}: {length:,} bytes announced at byte {offset}")
    return reader.record()


class FrameReader:
    """Records read one at a time from a stream of byte chunks (a streamed response). Chunks are kept as they
    came and a record is joined from them once, so reading costs one copy per byte whatever the chunk sizes."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pieces: deque[memoryview] = deque()
        self._held = 0
        self.consumed = 0  # bytes taken so far (where the next record starts)

    @property
    def held(self) -> int:
        return self._held

    def has(self, size: int) -> bool:
        """Whether ``size`` more bytes are there (reading more chunks as needed)."""
        return self._fill(size)

    def peek_length(self) -> int:
        """The length prefix of the next record, not taken. Requires: ``has(4)``."""
        head = self._pieces[0]
        prefix = head[:4].tobytes() if len(head) >= 4 else self._peek(4)
        (length,) = _LENGTH.unpack(prefix)
        return int(length)

    def _peek(self, size: int) -> bytes:
        out = bytearray()
        for piece in self._pieces:
            out += piece[: size - len(out)]
            if len(out) == size:
                break
        return bytes(out)

    def _fill(self, size: int) -> bool:
        while self._held < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            if chunk:
                self._pieces.append(memoryview(chunk))
                self._held += len(chunk)
        return True

    def _take(self, size: int) -> bytes:
        self.consumed += size
        parts = []
        while size:
            piece = self._pieces[0]
            if len(piece) <= size:
                parts.append(piece)
                self._pieces.popleft()
                size -= len(piece)
                self._held -= len(piece)
            else:
                parts.append(piece[:size])
                self._pieces[0] = piece[size:]
                self._held -= size
                size = 0
        return parts[0].tobytes() if len(parts) == 1 else b"".join(parts)

    def record(self) -> bytes | None:
        """The next record, or None at a clean end. Raises ServiceError on a stream cut inside a record."""
        if not self._fill(4):
            if self._held:
                raise errors.ServiceError("the service's answer ended inside a record")
            return None
        (length,) = _LENGTH.unpack(self._take(4))
        if not self._fill(length):
            raise errors.ServiceError("the service's answer ended inside a record (the connection was cut?)")
        return self._take(length)
