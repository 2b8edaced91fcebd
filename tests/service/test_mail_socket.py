"""The service's mail socket (service/mailsocket.py): deliveries without HTTP. What arrives is stored byte for
byte with the properties the service would have computed itself; bad deliveries are refused with the API's
error document and store nothing; a cut connection stores nothing; the socket never takes the service down."""

from __future__ import annotations

import json
import os
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowstore.errors import InvalidParameterError, NotFoundError
from shadowstore.mail.generate import generate_messages
from shadowstore.mail.schema import message_props
from shadowstore.service.mailsocket import MAX_CONNECTIONS
from shadowstore.service.remotemail import RemoteMail
from shadowstore.service.sharedread import REGION, SHARED_FROM, shared_reads_work
from shadowstore.service.wire import MAX_FRAME
from tests.service.running import Service, running_service

ODD_MESSAGES = [
    b"Subject: first\nFrom: Ann <ann@example.com>\nDate: Mon, 01 Jan 2024 10:00:00 +0000\n\nhello\n",
    b"Subject: =?utf-8?q?caf=C3=A9?=\nTo: a@example.com,\n b@example.com\n\nfolded To\n",
    b"Subject: caf\xe9\n\n\x00\xff binary\n",
    b"",
    b"no header and no final newline",
    b"Subject: =?broken\nX-Header-Without-Colon\nDate: not a date\n\n",
]
COMPUTED = ("size", "sha256", "subject", "from", "to", "date", "message_id", "date_ts")


def _frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _header(**fields: object) -> bytes:
    base: dict[str, object] = {"mailbox": "alice", "folder": "INBOX", "sg": None, "store": None, "messages": 0}
    return _frame(json.dumps({**base, **fields}).encode())


def _socket_deliveries(service: Service) -> float:
    text = service.client.request("GET", "/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("shadowstore_mail_socket_deliveries_total "))
    return float(line.split()[1])


def _connect(service: Service) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(service.client.get("/v1/health")["mail_socket"])
    return sock


def _answer(sock: socket.socket) -> dict[str, object] | None:
    """The service's answer frame, or None when it closed the connection without one."""
    data = b""
    while True:
        piece = sock.recv(1 << 16)
        if not piece:
            break
        data += piece
        if len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
            break
    if not data:
        return None
    (length,) = struct.unpack(">I", data[:4])
    assert len(data) == 4 + length, data
    return dict(json.loads(data[4:]))


def _closed(sock: socket.socket) -> bool:
    return sock.recv(1) == b""


def test_deliveries_over_the_mail_socket_are_stored_byte_for_byte_with_the_services_own_properties(
    service: Service,
) -> None:
    mail = RemoteMail(service.client)
    mail.create_mailbox("alice")
    generated = list(generate_messages(5, 20))
    before = _socket_deliveries(service)
    uids = mail.add("alice", "INBOX", ODD_MESSAGES, [{"flags": "S"}] + [{}] * (len(ODD_MESSAGES) - 1))
    uids += mail.add("alice", "INBOX", generated, [{} for _ in generated])
    assert uids == list(range(1, len(ODD_MESSAGES) + len(generated) + 1))
    assert _socket_deliveries(service) == before + 2  # both came on the mail socket, not over HTTP

    records = list(mail.messages("alice"))
    assert [r.raw for r in records] == ODD_MESSAGES + generated
    for record in records:
        expected = message_props(record.raw, {}, 0.0)  # what the service computes when it parses itself
        assert {k: record.props[k] for k in COMPUTED} == {k: expected[k] for k in COMPUTED}
    assert records[0].props["flags"] == "S"
    mail.close()


def test_an_mbox_with_a_long_from_line_imports_through_the_mail_socket(service: Service, tmp_path: object) -> None:
    # an unescaped "From " line in a body begins a message whose From_ line (a property) is that whole line;
    # 8-bit text takes six bytes each in JSON: 20,000 of them passed the properties frame's old 64 KiB bound
    source = os.path.join(str(tmp_path), "long.mbox")
    with open(source, "wb") as f:
        f.write(b"From a@example.com Mon Dec  7 10:00:00 2026\nSubject: one\n\nbody\n\nFrom " + b"\xe9" * 20_000)
        f.write(b"\nSubject: two\n\nsecond\n")
    before = _socket_deliveries(service)
    done = service.cli("mail", "import", "--mailbox", "long", source)
    assert "2 message" in done.stdout, done.stdout
    assert _socket_deliveries(service) > before  # it came on the mail socket
    assert service.cli("mail", "check", "--mailbox", "long", source).stdout.startswith("ok: the 2 message(s)")


def test_a_refused_delivery_gives_the_apis_error_and_the_connection_serves_the_next(service: Service) -> None:
    mail = RemoteMail(service.client)
    mail.create_mailbox("alice")
    mail.add("alice", "INBOX", [b"Subject: one\n\n1\n"], [{}])
    assert mail._mail_socket is not None
    connection = mail._mail_socket._sock
    with pytest.raises(NotFoundError) as over_socket:
        mail.add("nobody", "INBOX", [b"Subject: lost\n\n"], [{}])
    with pytest.raises(NotFoundError) as over_http:
        service.client.request(
            "POST",
            "/v1/mailboxes/nobody/folders/INBOX/messages",
            content=_frame(b"{}") + _frame(b"Subject: lost\n\n"),
            headers={"Content-Type": "application/x-shadowstore-frames"},
        )
    assert str(over_socket.value) == str(over_http.value)
    assert "alice" in str(over_socket.value)  # it names the mailboxes there are
    with pytest.raises(InvalidParameterError):
        mail.add("alice", "bad/folder", [b"x"], [{}])
    # a message the service refuses while the rest of its delivery is still arriving (NaN is no JSON data):
    # answered once the whole delivery was read, nothing of it stored
    big = [b"Subject: big %d\n\n" % i + os.urandom(1 << 20) for i in range(6)]
    with pytest.raises(InvalidParameterError, match="the properties of message 2 of 6 cannot be stored"):
        mail.add("alice", "INBOX", big, [{}, {"weight": float("nan")}, {}, {}, {}, {}])
    assert mail.add("alice", "INBOX", [b"Subject: two\n\n2\n"], [{}]) == [2]
    assert mail._mail_socket._sock is connection  # the same connection went on after every refusal
    assert [r.raw for r in mail.messages("alice")] == [b"Subject: one\n\n1\n", b"Subject: two\n\n2\n"]


@pytest.mark.parametrize(
    ("what", "data", "words"),
    [
        ("a header that is not JSON", _frame(b"{not json"), "not a JSON object"),
        ("a header that is a list", _frame(b"[1, 2]"), "not a JSON object"),
        ("an unknown field", _header(messages=1, colour="red"), "unknown fields: colour"),
        ("no mailbox", _header(mailbox=""), "needs 'mailbox'"),
        ("a count that is text", _header(messages="2"), "'messages' must be a whole number"),
        ("too many messages", _header(messages=10**9), "'messages' must be a whole number"),
        ("a store name too long", _header(store="s" * 300), "'store' must be null"),
        ("parsed that is not a flag", _header(parsed="yes"), "'parsed' must be true or false"),
        ("an unknown request", _header(op="write"), "'op' must be 'deliver' or 'read'"),
        ("a read with a message count", _header(op="read", folder=None), "unknown fields: messages"),
        ("a read of an empty folder name", _frame(b'{"op": "read", "mailbox": "a", "folder": ""}'), "'folder' must"),
        ("a read with raw that is text", _frame(b'{"op": "read", "mailbox": "a", "raw": "no"}'), "'raw' must be"),
        ("a read with shared that is text", _frame(b'{"op": "read", "mailbox": "a", "shared": 1}'), "'shared' must"),
        ("a header frame too long", struct.pack(">I", 1 << 30), "at most"),
        ("a message over 256 MiB", _header(messages=1) + _frame(b"{}") + struct.pack(">I", MAX_FRAME + 1), "at most"),
        ("properties that are not an object", _header(messages=1) + _frame(b"7") + _frame(b"x"), "not a JSON object"),
        (
            "parsed headers missing",
            _header(messages=1, parsed=True) + _frame(b'{"subject": "s"}') + _frame(b"Subject: s\n\n"),
            "lack the parsed header 'from'",
        ),
        (
            "a parsed date that is text",
            _header(messages=1, parsed=True)
            + _frame(
                json.dumps(
                    {"subject": None, "from": None, "to": None, "date": None, "message_id": None, "date_ts": "x"}
                ).encode()
            )
            + _frame(b""),
            "'date_ts' of message 1's properties is not a number",
        ),
    ],
)
def test_a_malformed_delivery_is_refused_with_a_400_and_nothing_is_stored(
    service: Service, what: str, data: bytes, words: str
) -> None:
    mail = RemoteMail(service.client)
    mail.create_mailbox("alice")
    with _connect(service) as sock:
        sock.sendall(data)
        answer = _answer(sock)
        assert answer is not None, what
        assert answer["status"] == 400, (what, answer)
        error = answer["error"]
        assert isinstance(error, dict)
        assert error["error"] == "InvalidParameterError"
        assert words in str(error["message"]), (what, error)
        assert _closed(sock), what  # the framing cannot be trusted any more: the service closed it
    assert service.client.get("/v1/mailboxes")[0]["messages"] == 0
    assert mail.add("alice", "INBOX", [b"after"], [{}]) == [1]  # the service goes on


def test_a_connection_cut_inside_a_delivery_stores_nothing_of_it(service: Service) -> None:
    mail = RemoteMail(service.client)
    mail.create_mailbox("alice")
    raw = b"Subject: half\n\n" + b"x" * 100_000
    header = _header(messages=2)
    whole = header + _frame(b"{}") + _frame(raw) + _frame(b"{}") + _frame(raw)
    first = len(header) + 6  # where the first message's frame starts
    for cut in (3, len(header) + 5, first + 50_000, len(whole) - 1):  # header, properties, 1st and 2nd message
        with _connect(service) as sock:
            sock.sendall(whole[:cut])
    assert mail.add("alice", "INBOX", [b"whole"], [{}]) == [1]
    assert [r.raw for r in mail.messages("alice")] == [b"whole"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200), st.builds(lambda b: _header(messages=1) + b, st.binary(max_size=200))))
def test_any_bytes_on_the_mail_socket_get_a_4xx_or_a_close_never_a_crash(service: Service, data: bytes) -> None:
    with _connect(service) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = _answer(sock)
    if answer is not None and "error" in answer:
        assert 400 <= int(answer["status"]) < 500, answer  # type: ignore[call-overload]
    assert service.client.get("/v1/health")["pid"] == service.process.pid


def test_more_connections_than_the_bound_are_refused_with_a_clear_error(service: Service) -> None:
    held = [_connect(service) for _ in range(MAX_CONNECTIONS)]  # accepted in order, each given a thread
    try:
        with _connect(service) as extra:
            answer = _answer(extra)
        assert answer is not None
        assert answer["status"] == 503
        assert "already serves 64 connections" in str(answer["error"]["message"])  # type: ignore[index]
    finally:
        for sock in held:
            sock.close()
    mail = RemoteMail(service.client)
    mail.create_mailbox("alice")
    assert mail.add("alice", "INBOX", [b"after the crowd"], [{}]) == [1]


def test_the_service_stops_promptly_with_mail_connections_open_and_leaves_no_socket(home_dir: str) -> None:
    with running_service(home_dir) as service:
        mail = RemoteMail(service.client)
        mail.create_mailbox("alice")
        mail.add("alice", "INBOX", [b"Subject: kept\n\n"], [{}])  # leaves its connection open, idle
        path = service.client.get("/v1/health")["mail_socket"]
        idle = _connect(service)
        out = service.stop(timeout=30)
        idle.close()
    assert "every store is in Clean Shutdown" in out
    assert not os.path.exists(path)
    with running_service(home_dir) as again:  # the next start binds it again and the mail is there
        assert [r.raw for r in RemoteMail(again.client).messages("alice")] == [b"Subject: kept\n\n"]


def test_a_client_over_tcp_delivers_over_http(home_dir: str, tmp_path: object) -> None:
    from pathlib import Path

    from shadowstore.service.client import ServiceClient

    token_path = Path(str(tmp_path)) / "token"
    token_path.write_text("a-token-long-enough-for-the-test\n")
    token_path.chmod(0o600)
    with running_service(home_dir, "--listen", "127.0.0.1:0", "--token-file", str(token_path)) as service:
        assert service.listen is not None
        with ServiceClient(url=f"http://{service.listen}", token="a-token-long-enough-for-the-test") as tcp:
            mail = RemoteMail(tcp)
            mail.create_mailbox("alice")
            before = _socket_deliveries(service)
            assert mail.add("alice", "INBOX", [b"Subject: by tcp\n\n"], [{}]) == [1]
            assert mail._mail_socket is None
            assert _socket_deliveries(service) == before
            assert [r.raw for r in mail.messages("alice")] == [b"Subject: by tcp\n\n"]


def test_a_read_over_the_mail_socket_gives_what_the_api_gives(service: Service) -> None:
    mail = RemoteMail(service.client)
    over_api = RemoteMail(service.client, mail_socket=False)
    mail.create_mailbox("alice")
    generated = list(generate_messages(7, 30))
    mail.add("alice", "INBOX", ODD_MESSAGES, [{} for _ in ODD_MESSAGES])
    mail.add("alice", "Archive", generated, [{"n": i} for i in range(len(generated))])
    mail.add("alice", "Archive", [b"Subject: claims\n\n"], [{"folder": "Elsewhere", "uid": 10**6}])

    def rows(records: object) -> list[tuple[object, ...]]:
        return [(r.folder, r.uid, r.raw, r.props) for r in records]  # type: ignore[attr-defined]

    assert rows(mail.messages("alice")) == rows(over_api.messages("alice"))
    claims = rows(mail.messages("alice", "Archive"))[-1]
    assert claims[:2] == ("Archive", len(generated) + 1)  # the message's own folder and uid, not its claims
    # after a remount every long value comes from its pages, sent uncopied (service/mailsocket.py)
    service.client.request("POST", "/v1/storage-groups/First Storage Group/dismount")
    service.client.request("POST", "/v1/storage-groups/First Storage Group/mount")
    assert rows(mail.messages("alice")) == rows(over_api.messages("alice"))
    assert [r[2] for r in rows(mail.messages("alice", "Archive"))][:-1] == generated
    assert len(rows(mail.messages("alice"))) == len(ODD_MESSAGES) + len(generated) + 1
    assert rows(mail.messages("alice", "Archive")) == rows(over_api.messages("alice", "Archive"))
    listing = rows(mail.messages("alice", raw=False))
    assert [r[2] for r in listing] == [b""] * len(listing)  # properties alone: no bodies sent
    assert [r[3] for r in listing] == [r[3] for r in rows(over_api.messages("alice"))]
    with pytest.raises(NotFoundError, match="no mailbox 'bob'"):
        mail.messages("bob")  # at the call, before any record is asked for
    with pytest.raises(NotFoundError, match="no folder 'Nowhere'"):
        mail.messages("alice", "Nowhere")


def test_a_read_the_client_stops_early_leaves_the_service_serving(service: Service) -> None:
    mail = RemoteMail(service.client)
    mail.create_mailbox("alice")
    big = [b"Subject: big\n\n" + bytes([i]) * 500_000 for i in range(20)]  # more than the socket buffers hold
    mail.add("alice", "INBOX", big, [{} for _ in big])
    records = mail.messages("alice")
    assert next(records).raw == big[0]
    records.close()  # type: ignore[attr-defined]
    assert mail.add("alice", "INBOX", [b"after"], [{}]) == [21]
    assert [r.raw for r in mail.messages("alice")][-1] == b"after"
    assert service.client.get("/v1/health")["pid"] == service.process.pid


def test_a_client_whose_connection_the_service_closed_reconnects_for_the_next_delivery(home_dir: str) -> None:
    from shadowstore.service.client import ServiceClient

    with running_service(home_dir) as first:
        client = ServiceClient(socket=first.socket)
        mail = RemoteMail(client)
        mail.create_mailbox("alice")
        assert mail.add("alice", "INBOX", [b"before"], [{}]) == [1]
        assert mail._mail_socket is not None
        stale = mail._mail_socket._sock
    with running_service(home_dir) as second:  # the same socket paths, a new process: the old connection is dead
        assert second.socket == first.socket
        assert mail.add("alice", "INBOX", [b"after"], [{}]) == [2]  # sent again on a new connection, once
        assert mail._mail_socket._sock is not stale
        assert [r.raw for r in mail.messages("alice")] == [b"before", b"after"]
    client.close()


def _shared_reads(service: Service) -> float:
    text = service.client.request("GET", "/metrics").text
    return float(next(x for x in text.splitlines() if x.startswith("shadowstore_mail_shared_reads_total ")).split()[1])


@pytest.mark.skipif(not shared_reads_work(), reason="this system cannot make or pass memory files")
def test_a_large_read_goes_through_shared_memory_and_gives_what_the_api_gives(service: Service) -> None:
    mail = RemoteMail(service.client)
    over_api = RemoteMail(service.client, mail_socket=False)
    mail.create_mailbox("alice")
    mail.create_mailbox("bob")
    big = [b"Subject: big %d\n\n" % i + bytes([i]) * (REGION + 1000) for i in range(2)]  # larger than a region
    rest = [b"Subject: m %d\n\n" % i + os.urandom(300_000 + 7 * i) for i in range(110)]
    mail.add("alice", "INBOX", rest[:90], [{} for _ in rest[:90]])
    mail.add("alice", "INBOX", big, [{"folder": "claimed"} for _ in big])
    mail.add("alice", "Archive", rest[90:], [{"n": i} for i in range(20)])
    mail.add("bob", "INBOX", rest[:3], [{} for _ in rest[:3]])
    assert sum(map(len, big + rest[:90])) >= SHARED_FROM  # the INBOX alone is read through shared memory

    def rows(records: object) -> list[tuple[object, ...]]:
        return [(r.folder, r.uid, r.raw, r.props) for r in records]  # type: ignore[attr-defined]

    before = _shared_reads(service)
    assert rows(mail.messages("alice")) == rows(over_api.messages("alice"))
    assert _shared_reads(service) == before + 1
    assert [r.raw for r in mail.messages("alice", "INBOX")] == rest[:90] + big
    assert _shared_reads(service) == before + 2
    assert [r.raw for r in mail.messages("bob")] == rest[:3]  # small: through the socket
    assert [r.props["n"] for r in mail.messages("alice", "Archive")] == list(range(20))  # small: the socket
    assert _shared_reads(service) == before + 2
    records = mail.messages("alice", "INBOX")  # a shared read its client stops early
    assert next(records).raw == rest[0]
    records.close()  # type: ignore[attr-defined]
    assert mail.add("bob", "INBOX", [b"after"], [{}]) == [4]
    assert service.client.get("/v1/health")["pid"] == service.process.pid

    # Read from the disk now (a dismount writes every page, a mount reads nothing of the mail): the store reads
    # each message's pages straight into the regions and the client joins their payloads
    service.cli("dismount", "First Storage Group")
    service.cli("mount", "First Storage Group")
    fresh = RemoteMail(service.client)
    assert [r.raw for r in fresh.messages("alice", "INBOX")] == rest[:90] + big
    assert rows(fresh.messages("alice")) == rows(over_api.messages("alice"))
    assert _shared_reads(service) == before + 5
