"""The mailbox layer through the service: the ``MailBackend`` the ``mail`` commands use when the service runs.
Messages go and come as frames (service/wire.py); each ``add`` is one delivery, stored in one commit (perhaps
shared with other clients' deliveries). Deliveries and reads go over the service's mail socket when the client
reaches the service on its Unix socket (service/mailsocket.py: no HTTP in the way), over the API otherwise."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO, cast
from urllib.parse import quote

from shadowstore.errors import InvalidParameterError, ServiceError
from shadowstore.mail.schema import MessageRecord, parse_headers
from shadowstore.service.client import PROBE_SECONDS, SOCKET_BUFFER, ServiceClient
from shadowstore.service.sharedread import (
    MAX_PLACE,
    PLACE,
    RELEASE,
    SharedView,
    receive_head,
    shared_reads_work,
)
from shadowstore.service.unixsocket import send_pieces
from shadowstore.service.wire import FRAMES, FrameReader, frame, frame_length, message_frames, raise_from_body


class RemoteMail:
    """The mailbox layer of the service ``client`` reaches (``sg``/``store``: else the service's defaults);
    ``mail_socket=False`` keeps every call on the API."""

    def __init__(
        self, client: ServiceClient, sg: str | None = None, store: str | None = None, *, mail_socket: bool = True
    ) -> None:
        self.client = client
        self._where = {k: v for k, v in (("sg", sg), ("store", store)) if v}
        self._mail_socket: MailSocketClient | None = None
        self._asked = not mail_socket  # True once the service was asked for its mail socket (or none is wanted)

    def create_mailbox(self, name: str) -> dict[str, Any]:
        response = self.client.request("POST", "/v1/mailboxes", json={"name": name}, params=self._where)
        return dict(response.json())

    def mailboxes(self) -> list[dict[str, Any]]:
        return list(self.client.get("/v1/mailboxes", **self._where))

    def add(self, mailbox: str, folder: str, raws: list[bytes], props: list[dict[str, Any]]) -> list[int]:
        if len(raws) != len(props):
            raise InvalidParameterError(f"{len(raws)} messages came with {len(props)} property records")
        direct = self._mail()
        if direct is not None:
            return direct.deliver(mailbox, folder, self._where.get("sg"), self._where.get("store"), raws, props)
        body = b"".join(message_frames(zip(props, raws, strict=True)))
        route = f"/v1/mailboxes/{quote(mailbox, safe='')}/folders/{quote(folder, safe='')}/messages"
        response = self.client.request(
            "POST", route, content=body, headers={"Content-Type": FRAMES}, params=self._where
        )
        return [int(uid) for uid in response.json()["uids"]]

    def messages(self, mailbox: str, folder: str | None = None, *, raw: bool = True) -> Iterator[MessageRecord]:
        direct = self._mail()
        if direct is not None:
            return direct.read(mailbox, folder, self._where.get("sg"), self._where.get("store"), raw)
        return self._api_messages(mailbox, folder, raw)

    def _api_messages(self, mailbox: str, folder: str | None, raw: bool) -> Iterator[MessageRecord]:
        params = {**self._where, **({"folder": folder} if folder else {})}
        route = f"/v1/mailboxes/{quote(mailbox, safe='')}/messages"
        reader = FrameReader(self.client.stream("GET", route, params=params))
        while (props_bytes := reader.record()) is not None:
            body = reader.record()
            if body is None:
                raise ServiceError("the service's list of messages ended inside a message")
            props = json.loads(props_bytes)
            folder_name, uid = props.pop("folder"), props.pop("uid")
            yield MessageRecord(folder_name, int(uid), body if raw else b"", props)

    def close(self) -> None:
        """Close the mail socket's connection, if one was opened (the API client belongs to the command)."""
        if self._mail_socket is not None:
            self._mail_socket.close()

    def _mail(self) -> MailSocketClient | None:
        """The connection for deliveries: the service's mail socket when the API is reached on a Unix socket
        and the service has one (asked once), else None (deliveries go over the API)."""
        if not self._asked:
            self._asked = True
            health = self.client.health() if self.client.socket else {}
            path = health.get("mail_socket")
            if isinstance(path, str):
                shared = health.get("mail_shared_read") is True and shared_reads_work()
                self._mail_socket = MailSocketClient(path, self.client.where, shared_reads=shared)
        return self._mail_socket


class MailSocketClient:
    """One connection to the service's mail socket, opened at the first delivery and kept for the next ones
    (reopened when the service closed it while idle). Safe to share between threads: deliveries take turns."""

    def __init__(self, path: str, where: str, *, shared_reads: bool = False) -> None:
        self.path = path
        self.where = where
        self.shared_reads = shared_reads  # reads through shared memory (service/sharedread.py)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stream: BinaryIO | None = None

    def deliver(
        self,
        mailbox: str,
        folder: str,
        sg: str | None,
        store: str | None,
        raws: list[bytes],
        props: list[dict[str, Any]],
    ) -> list[int]:
        """Store ``raws`` with ``props`` in one commit and return their uids; raises the service's error. The
        headers are parsed here (the service hashes the bytes itself; service/mailsocket.py says why), each
        message's just before it is sent, so that the service reads and hashes one while the next is parsed."""
        header = {"mailbox": mailbox, "folder": folder, "sg": sg, "store": store, "messages": len(raws)}
        header["parsed"] = True
        head = frame(json.dumps(header, separators=(",", ":")).encode())
        parsed: list[bytes] = []  # each message's properties frame, kept for a second attempt
        with self._lock:
            self._send(head, raws, props, parsed)
            try:
                answer = self._answer()
            except OSError as exc:
                self._close()
                raise ServiceError(
                    f"the connection to {self.where} broke before it answered a delivery of {len(raws)} messages "
                    f"({exc}); they may or may not have been stored",
                    hint=f"'shadowstore mail list --mailbox {mailbox}' shows what the mailbox holds",
                ) from None
        return [int(uid) for uid in _document(answer)["uids"]]

    def close(self) -> None:
        with self._lock:
            self._close()

    def read(
        self, mailbox: str, folder: str | None, sg: str | None, store: str | None, raw: bool
    ) -> Iterator[MessageRecord]:
        """The messages of ``mailbox`` (or one folder) from one snapshot, on a connection of their own (so that
        deliveries may go on while they are read). An unknown mailbox or folder raises here, at the call."""
        header = {"op": "read", "mailbox": mailbox, "folder": folder, "sg": sg, "store": store, "raw": raw}
        if self.shared_reads:
            header["shared"] = True
        sock = self._open()
        fd = None
        try:
            sock.sendall(frame(json.dumps(header, separators=(",", ":")).encode()))
            head, fd = receive_head(sock) if self.shared_reads else (b"", None)
            stream = cast(BinaryIO, sock.makefile("rb", buffering=1 << 20))
            answer = _document(_frame_of(stream, head))  # {"reading": true}, or the refusal raised here
            taken, fd = fd, None  # why first: SharedView closes the descriptor whatever happens
            view = None if taken is None else SharedView(taken, int(answer["shared"]))
        except OSError as exc:
            sock.close()
            raise ServiceError(f"{self.where} broke off a read of mailbox {mailbox!r}: {exc}") from None
        except BaseException:
            sock.close()
            raise
        finally:
            if fd is not None:
                os.close(fd)
        return self._records(sock, stream, mailbox, view)

    def _records(
        self, sock: socket.socket, stream: BinaryIO, mailbox: str, view: SharedView | None
    ) -> Iterator[MessageRecord]:
        try:
            while props_bytes := _frame_of(stream):
                if view is not None and props_bytes == RELEASE:
                    view.release(sock)  # every message placed before the mark was copied out
                    continue
                length = _length_of(stream)
                body = None
                if view is not None and length & PLACE:
                    runs = length & ~PLACE
                    if not 0 < runs <= MAX_PLACE or runs % 16:
                        raise ServiceError(f"{self.where} sent a place of {runs} bytes, not whole runs of 16")
                    body = view.bytes_at(_exactly(stream, runs))
                if body is None:
                    body = _exactly(stream, length)
                props = json.loads(props_bytes)
                folder_name, uid = props.pop("folder"), props.pop("uid")
                yield MessageRecord(folder_name, int(uid), body, props)
            trailer = _frame_of(stream)
        except OSError as exc:
            raise ServiceError(f"{self.where} broke off a read of mailbox {mailbox!r}: {exc}") from None
        finally:
            stream.close()
            sock.close()
            if view is not None:
                view.close()
        _document(trailer)  # {"messages": n}, or why the read broke off

    def _send(self, head: bytes, raws: list[bytes], props: list[dict[str, Any]], parsed: list[bytes]) -> None:
        """Send one delivery, message by message; a connection the service closed since the last one is reopened
        once. Nothing of a delivery that was not sent whole is stored, so sending again is safe."""
        for attempt in (1, 2):
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            try:
                self._sock.sendall(head)
                for i, raw in enumerate(raws):
                    if i == len(parsed):
                        fields = {**props[i], **parse_headers(raw)}
                        parsed.append(frame(json.dumps(fields, separators=(",", ":")).encode()))
                    send_pieces(self._sock, [parsed[i], frame_length(len(raw)), raw])
            except OSError as exc:
                self._close()
                if attempt == 2:
                    raise ServiceError(
                        f"{self.where} did not take a delivery on its mail socket {self.path}: {exc}; "
                        "nothing of it was stored"
                    ) from None
            else:
                return

    def _connect(self) -> None:
        self._sock = self._open()
        # why buffered: nothing follows an answer until the next delivery, so the buffer never holds the next one
        self._stream = cast(BinaryIO, self._sock.makefile("rb"))

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.settimeout(PROBE_SECONDS)
            sock.connect(self.path)
            sock.settimeout(None)  # why no bound: a commit may wait for a slow disk
        except OSError as exc:
            sock.close()
            raise ServiceError(f"cannot reach the mail socket {self.path} of {self.where}: {exc}") from None
        return sock

    def _answer(self) -> bytes:
        assert self._stream is not None
        return _frame_of(self._stream)

    def _close(self) -> None:
        if self._sock is not None:
            assert self._stream is not None
            self._stream.close()
            self._sock.close()
            self._sock = self._stream = None


def _frame_of(stream: BinaryIO, head: bytes = b"") -> bytes:
    """The next frame; ``head``: its length word, when it was read already."""
    return _exactly(stream, _length_of(stream, head))


def _length_of(stream: BinaryIO, head: bytes = b"") -> int:
    head += stream.read(4 - len(head))
    if len(head) < 4:
        raise ConnectionResetError("the service closed the connection")
    return int.from_bytes(head, "big")


def _exactly(stream: BinaryIO, length: int) -> bytes:
    data = stream.read(length)
    if len(data) < length:
        raise ConnectionResetError("the service closed the connection inside a frame")
    return data


def _document(data: bytes) -> dict[str, Any]:
    """A JSON answer of the mail socket; the error it carries is raised as the class it was."""
    document = json.loads(data)
    if "error" in document:
        raise_from_body(int(document.get("status", 500)), data)
    return dict(document)
