"""The mail socket: deliveries of mail to the service, and reads of mailboxes, on a Unix socket of their own.

Why a second socket: a delivery is megabytes of message bytes, and through the HTTP stack each one pays for
the request's parse, the event loop's buffering and copies of the body, and two hops between the loop and a
worker thread: about 3 ms of the service's interpreter per delivery of 1.6 MB on the reference machine, more
than the mailbox layer's own work. Here each connection has a thread of its own that reads a delivery straight
into the bytes the store keeps (one copy, the kernel's, with the interpreter lock released) and hands it to the
same commit batcher the HTTP route uses; a read streams a mailbox back from one snapshot the same way.
Everything else (creating mailboxes, listing them, errors' meaning) stays on the API.

The socket sits beside the API socket, is created with mode 0600 like it, and is named in ``service.json`` and
``GET /v1/health`` as ``mail_socket``. A client over TCP has no mail socket and delivers and reads over HTTP.

Protocol (frames as in service/wire.py: a 4-byte big-endian length, then the bytes). A connection carries any
number of requests, one after the other. A delivery is

    client:  frame(JSON {"mailbox": str, "folder": str, "sg": str|null, "store": str|null, "messages": n,
                         "parsed": bool})
             then n times: frame(properties, a JSON object), frame(raw message bytes)
    service: frame(JSON {"uids": [...]})                      stored, durable, in one commit
          or frame(JSON {"error": {...}, "status": 4xx|5xx})  nothing of the delivery was stored

and a read of a mailbox (or one of its folders; with ``"raw": false`` the properties alone) is

    client:  frame(JSON {"op": "read", "mailbox": str, "folder": str|null, "sg": ..., "store": ..., "raw": bool,
                         "shared": bool})
    service: frame(JSON {"error": {...}, "status": 4xx}), or
             frame(JSON {"reading": true}), then per message frame(properties with "folder" and "uid"),
             frame(raw bytes), then an empty frame (properties are never empty), then
             frame(JSON {"messages": count}) or frame(JSON {"error": {...}, "status": ...}) if the read broke off

With ``"shared": true`` (asked by a client that ``GET /v1/health`` told ``mail_shared_read``) a read of at least
``SHARED_FROM`` bytes answers ``{"reading": true, "shared": size}`` with a memory file's descriptor, and the
messages' bytes come through it; service/sharedread.py has that part of the protocol and why. A smaller read
answers as without it (a fresh memory file costs more than it saves on a few megabytes).

With ``"parsed": true`` each message's properties carry its headers as ``mail.schema.parse_headers`` gives them
(subject, from, to, date, message_id, date_ts), parsed by the client: it has the message anyway, and parsing
is the largest part of the service's own work per message that holds the interpreter lock. Size and sha256
are computed by the service from the bytes it stores, never taken from the client. A client that sends a
parsed subject unlike the message's could as well have sent a message with that subject: they are shown in
listings, nothing checks integrity with them.

The error document is the one the API and ``--json`` give. After an error in the framing itself (a length
over the limits, a header that is not the object above) the service closes the connection, since it cannot
tell where the next delivery starts; after any other error the connection stays usable. A connection cut
inside a delivery stores nothing of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from typing import Any, BinaryIO, NamedTuple, cast

from shadowstore.errors import InvalidParameterError, ServiceError, ShadowStoreError, unexpected
from shadowstore.mail.mailstore import Prepared, prepare_item
from shadowstore.mail.schema import split_parsed
from shadowstore.service.host import InformationStore
from shadowstore.service.sharedread import REGION, SHARED_FROM, SharedRegions, shared_reads_work
from shadowstore.service.unixsocket import IOV_MAX, bind_unix, remove_socket, send_pieces
from shadowstore.service.wire import (
    MAX_DELIVERY_BYTES,
    MAX_FRAME,
    error_body,
    frame,
    frame_length,
    props_frame,
    status_of,
)

log = logging.getLogger("shadowstore.service")

MAX_CONNECTIONS = 64  # each is a thread; the next connection is refused (503, naming the bound)
MAX_MESSAGES = 100_000  # per delivery
MAX_HEADER = 64 << 10  # bytes of a request's header
# why as large as a message: a message's properties carry what its source gave (an mbox From_ line, which an
# unescaped "From " line of a body makes as long as that line), and over HTTP they may be as large
MAX_PROPERTIES = MAX_FRAME
IDLE_SECONDS = 600.0  # a connection that sends nothing for this long is closed (the client reconnects)
READ_BUFFER = 1 << 20
STREAM_PIECE = 1 << 20  # bytes of a read sent in one call
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def mail_socket_path(api_socket: str) -> str | None:
    """The mail socket's path beside ``api_socket`` (``service.sock`` -> ``service-mail.sock``), or None when
    that would be too long for a Unix socket (clients then deliver over HTTP)."""
    stem = api_socket[: -len(".sock")] if api_socket.endswith(".sock") else api_socket
    path = stem + "-mail.sock"
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


class _Request(NamedTuple):
    op: str  # "deliver" or "read"
    mailbox: str
    folder: str | None  # None: every folder (reads only)
    sg: str | None
    store: str | None
    messages: int  # in a delivery
    parsed: bool  # a delivery's headers parsed by the client
    raw: bool  # a read sends the messages' bytes
    shared: bool  # a read sends the bytes through shared memory (service/sharedread.py)


_FIELDS = {
    "deliver": {"op", "mailbox", "folder", "sg", "store", "messages", "parsed"},
    "read": {"op", "mailbox", "folder", "sg", "store", "raw", "shared"},
}


class _Cut(Exception):
    """The client closed the connection (or went silent) inside a delivery: nothing to answer."""


class MailSocket:
    """The listener and its connections' threads. ``start`` binds (mode 0600) and accepts; ``stop`` stops
    accepting, lets each delivery being stored finish and answer, then closes every connection."""

    def __init__(self, host: InformationStore, path: str) -> None:
        self.host = host
        self.path = path
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._accepting: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        self._listener = bind_unix(self.path)
        self._accepting = threading.Thread(target=self._accept, name="mail socket", daemon=True)
        self._accepting.start()

    def stop(self, wait: float = 30.0) -> None:
        """Stop accepting and end every connection: one waiting for its next request ends at once, one whose
        delivery is being stored ends after answering it; a read still streaming after ``wait`` seconds is
        cut."""
        with self._lock:
            self._stopping = True
            connections = dict(self._connections)
        if self._listener is not None:
            _shutdown(self._listener)  # why shutdown before close: it wakes the thread blocked in accept()
            self._listener.close()
        if self._accepting is not None:
            self._accepting.join(wait)
        for conn in connections:
            _shutdown(conn, socket.SHUT_RD)  # why only reading: a delivery being stored still gets its answer
        deadline = time.monotonic() + wait
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        for conn, thread in connections.items():
            if thread.is_alive():  # a long read still streaming: cut it, so its snapshot ends before the dismount
                _shutdown(conn)
                thread.join(5.0)
        remove_socket(self.path)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed: the service is stopping
            with self._lock:
                refused = self._stopping or len(self._connections) >= MAX_CONNECTIONS
                if not refused:
                    thread = threading.Thread(target=self._serve, args=(conn,), name="mail delivery", daemon=True)
                    self._connections[conn] = thread
            if refused:
                _refuse(conn, self._stopping)
            else:
                thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(IDLE_SECONDS)
            with conn.makefile("rb", buffering=READ_BUFFER) as stream:
                while self._one(conn, cast(BinaryIO, stream)):
                    pass
        except (_Cut, OSError):
            pass  # the client went away; nothing of an unfinished delivery was stored
        finally:
            with self._lock:
                self._connections.pop(conn, None)
            conn.close()

    def _one(self, conn: socket.socket, stream: BinaryIO) -> bool:
        """Read and answer one request. False when the connection is to end (the client closed it between
        requests, or its framing cannot be trusted any more)."""
        try:
            header = _read_frame(stream, MAX_HEADER, "the request's header", at_end_ok=True)
            if header is None:
                return False
            request = _parse_header(header)
        except InvalidParameterError as exc:
            _answer(conn, {**error_body(exc), "status": status_of(exc)})
            return False
        if request.op == "read":
            return self._read(conn, request)
        return self._deliver(conn, stream, request)

    def _deliver(self, conn: socket.socket, stream: BinaryIO, request: _Request) -> bool:
        """Read a delivery, preparing (hashing) each message as it arrives while the client sends the next, and
        store it in one commit. A message that cannot be stored (properties that are not JSON data, say) is
        answered once the whole delivery was read, so the connection stays in step."""
        mailbox, folder, sg, store = request.mailbox, request.folder, request.sg, request.store
        assert folder is not None
        now = time.time()
        prepared: list[Prepared] = []
        refused: ShadowStoreError | None = None
        try:
            size = 0
            for n in range(1, request.messages + 1):
                props_bytes = _read_frame(stream, MAX_PROPERTIES, f"message {n}'s properties")
                assert props_bytes is not None
                size += len(props_bytes)  # why: held until the commit, as the messages are
                _check_size(size)
                raw = _read_frame(stream, MAX_FRAME, f"message {n}'s bytes")
                assert raw is not None
                props = _json_object(props_bytes, f"message {n}'s properties")
                found = None
                if request.parsed:
                    props, found = split_parsed(props, f"message {n}'s properties")
                size += len(raw)
                _check_size(size)
                if refused is None:
                    try:
                        prepared.append(prepare_item(raw, props, now, found, f"message {n} of {request.messages}"))
                    except ShadowStoreError as exc:
                        refused = exc
        except InvalidParameterError as exc:
            _answer(conn, {**error_body(exc), "status": status_of(exc)})
            return False
        if refused is not None:
            _answer(conn, {**error_body(refused), "status": status_of(refused)})
            return True
        try:
            uids = self.host.mail.add_prepared(mailbox, folder, prepared, sg, store)
        except ShadowStoreError as exc:
            _answer(conn, {**error_body(exc), "status": status_of(exc)})
            return True
        except Exception as exc:
            log.exception("unexpected failure storing a delivery from the mail socket")
            failure = unexpected(exc, "storing a delivery from the mail socket")
            _answer(conn, {**error_body(failure), "status": 500})
            return True
        self.host.mail.delivered_by_socket()
        _answer(conn, {"uids": uids})
        return True

    def _share(self, request: _Request) -> bool:
        """Whether a read goes through shared memory: when the client asked and the read is large enough that
        the memory's making (fresh pages, zeroed by the kernel) is small beside the bytes it carries."""
        if not (request.shared and request.raw):
            return False
        _messages, size = self.host.mail.totals(request.mailbox, request.folder, request.sg, request.store)
        return size >= SHARED_FROM

    def _read(self, conn: socket.socket, request: _Request) -> bool:
        """Stream the messages ``request`` names from one snapshot. A client that stops reading ends it (the
        send fails and the snapshot is released). Each message goes as the store holds it: its property record
        spliced, its bytes the page payloads the store read, handed to the kernel uncopied (about half the
        service's work per message, measured, was re-encoding and copying). False when the connection is to
        end: after a read through shared memory, acknowledgements it did not wait for may still come."""
        shared: SharedRegions | None = None
        pending: list[bytes | memoryview] = []

        def space(size: int) -> memoryview | None:
            # why: pages read straight into the shared regions are not copied there again (sharedread.py)
            return None if shared is None else shared.reserve(size, pending)

        try:
            sharing = self._share(request)
            messages = self.host.mail.stored_messages(
                request.mailbox, request.folder, request.sg, request.store, raw=request.raw,
                space=space if sharing else None,
            )  # fmt: skip
        except ShadowStoreError as exc:
            _answer(conn, {**error_body(exc), "status": status_of(exc)})
            return True
        count = 0
        trailer: dict[str, Any]
        try:
            shared = SharedRegions(conn) if sharing else None
        except (ShadowStoreError, OSError) as exc:  # the store went away, or no memory for the regions
            messages.close()
            failure = (
                exc
                if isinstance(exc, ShadowStoreError)
                else ServiceError(f"the service cannot share memory for a read: {exc.strerror}", hint="try again")
            )
            _answer(conn, {**error_body(failure), "status": status_of(failure) if failure is exc else 503})
            return True
        try:
            if shared is None:
                _answer(conn, {"reading": True})
            else:
                self.host.mail.read_shared()
                shared.offer(frame(json.dumps({"reading": True, "shared": 2 * REGION}).encode()))
            size = 0
            for message in messages:
                props = props_frame(message)
                body = sum(map(len, message.pieces))
                place: bytes | None
                if message.runs is not None:  # read into the shared regions already (``space``)
                    assert shared is not None
                    place = shared.runs_frame(message.runs)
                else:
                    place = None if shared is None else shared.place(message.pieces, body, pending)
                if place is None:
                    pending += (props, frame_length(body), *message.pieces)
                    size += len(props) + body
                else:
                    pending += (props, place)
                    size += len(props) + len(place)
                count += 1
                if size >= STREAM_PIECE or len(pending) >= IOV_MAX:
                    send_pieces(conn, pending)
                    pending, size = [], 0
            send_pieces(conn, pending)
            trailer = {"messages": count}
        except ShadowStoreError as exc:
            trailer = {**error_body(exc), "status": status_of(exc)}
        except OSError:
            raise  # the client went away
        except Exception as exc:
            log.exception("unexpected failure reading a mailbox for the mail socket")
            trailer = {**error_body(unexpected(exc, "reading a mailbox for the mail socket")), "status": 500}
        finally:
            messages.close()
            if shared is not None:
                shared.close()
        conn.sendall(frame(b"") + frame(json.dumps(trailer, separators=(",", ":")).encode()))
        return shared is None


def _read_frame(stream: BinaryIO, limit: int, what: str, *, at_end_ok: bool = False) -> bytes | None:
    head = b""
    try:
        head = stream.read(4)
        if not head and at_end_ok:
            return None
        if len(head) < 4:
            raise _Cut()
        length = int.from_bytes(head, "big")
        if length > limit:
            raise InvalidParameterError(f"{what} claims {length:,} bytes; at most {limit:,} may come in one frame")
        data = stream.read(length)  # why read(): it reads into the bytes it returns, a copy fewer than recv_into
    except TimeoutError:
        if at_end_ok and not head:
            return None  # idle for IDLE_SECONDS between deliveries: close, the client reconnects
        raise _Cut() from None
    if len(data) < length:
        raise _Cut()
    return data


def _check_size(size: int) -> None:
    if size > MAX_DELIVERY_BYTES:
        raise InvalidParameterError(
            f"the delivery holds more than {MAX_DELIVERY_BYTES:,} bytes of messages",
            hint="split it into smaller deliveries; nothing of this one was stored",
        )


def _parse_header(data: bytes) -> _Request:
    fields = _json_object(data, "the request's header")
    op = fields.get("op", "deliver")
    if op not in _FIELDS:
        raise InvalidParameterError(f"the request's 'op' must be 'deliver' or 'read', not {op!r}")
    unknown = sorted(set(fields) - _FIELDS[op])
    if unknown:
        raise InvalidParameterError(f"the {op} request's header has unknown fields: {', '.join(unknown)}")
    names = ("mailbox", "folder") if op == "deliver" else ("mailbox",)
    for name in names:
        if not isinstance(fields.get(name), str) or not fields[name]:
            raise InvalidParameterError(f"the {op} request's header needs {name!r}, a non-empty string")
    if op == "read":
        folder = fields.get("folder")
        if folder is not None and (not isinstance(folder, str) or not folder):
            raise InvalidParameterError("the read request's 'folder' must be null or a non-empty string")
        raw, shared = fields.get("raw", True), fields.get("shared", False)
        for name, value in (("raw", raw), ("shared", shared)):
            if not isinstance(value, bool):
                raise InvalidParameterError(f"the read request's {name!r} must be true or false")
    for name in ("sg", "store"):
        value = fields.get(name)
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 256):
            raise InvalidParameterError(f"the {op} request's {name!r} must be null or a string of 1-256 characters")
    if op == "read":
        sg, store = fields.get("sg"), fields.get("store")
        return _Request(op, fields["mailbox"], folder, sg, store, 0, False, raw, shared and shared_reads_work())
    count = fields.get("messages")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_MESSAGES:
        raise InvalidParameterError(f"the delivery's 'messages' must be a whole number from 0 to {MAX_MESSAGES:,}")
    parsed = fields.get("parsed", False)
    if not isinstance(parsed, bool):
        raise InvalidParameterError("the delivery's 'parsed' must be true or false")
    sg, store = fields.get("sg"), fields.get("store")
    return _Request(op, fields["mailbox"], fields["folder"], sg, store, count, parsed, True, False)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # why RecursionError: deep nesting is bad input, not a bug
        value = None
    if not isinstance(value, dict):
        raise InvalidParameterError(f"{what} is not a JSON object", hint="see service/mailsocket.py's protocol")
    return value


def _answer(conn: socket.socket, document: dict[str, Any]) -> None:
    conn.sendall(frame(json.dumps(document, separators=(",", ":")).encode()))


def _refuse(conn: socket.socket, stopping: bool) -> None:
    reason = "is stopping" if stopping else f"already serves {MAX_CONNECTIONS} connections on its mail socket"
    error = ServiceError(
        f"the Information Store service {reason}", hint="deliver over the API instead, or try again later"
    )
    try:
        conn.settimeout(1.0)
        _answer(conn, {**error_body(error), "status": 503})
    except OSError:
        pass
    finally:
        conn.close()


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    with contextlib.suppress(OSError):  # not connected (any more): nothing to wake
        sock.shutdown(how)
