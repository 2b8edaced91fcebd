"""Bad input to the service's API, written by hand: each is answered with a 4xx and ``{"error": {...}}`` (the
error's class, message and exit code, as ``--json`` prints it), never a 500 or a traceback, and changes nothing."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shadowstore.home import ServerHome
from shadowstore.service.wire import FRAMES, MAX_FRAME, frame
from tests.service.running import Service, running_service

SG = "First Storage Group"
DELIVER = "/v1/mailboxes/alice/folders/INBOX/messages"
BEGIN = {"sg": SG, "kind": "full", "owner": "test_validation"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the module: no request here may change what the next one finds."""
    home = str(tmp_path_factory.mktemp("valid") / "home")
    ServerHome.init(home)
    with running_service(home) as running:
        running.client.post("/v1/mailboxes", {"name": "alice"})
        yield running


@pytest.fixture(scope="module")
def session(service: Service) -> Iterator[str]:
    """A running backup session, for calls whose only fault is another argument."""
    begun = service.client.post("/v1/backup-sessions", {**BEGIN, "lease_seconds": 600})
    yield begun["id"]
    service.client.delete(f"/v1/backup-sessions/{begun['id']}")


def assert_refused(response: httpx.Response, status: int, kind: str, *mentions: str) -> dict[str, Any]:
    """``response`` is the error ``kind`` with ``status``, whose message names each of ``mentions``."""
    what = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == "application/json", what
    assert "Traceback" not in response.text
    body = response.json()
    assert list(body) == ["error"], what
    error = body["error"]
    assert error["error"] == kind, f"{what}: {error}"
    assert isinstance(error["message"], str)
    assert isinstance(error["exit_code"], int)
    assert error["exit_code"] > 2, f"{what}: a refusal has a specific exit code, not {error['exit_code']}"
    for mention in mentions:
        assert mention in error["message"], f"{what}: {error['message']!r} does not name {mention!r}"
    return error


def post_json(service: Service, route: str, content: bytes) -> httpx.Response:
    return service.client.http.post(route, content=content, headers={"content-type": "application/json"})


# --- request bodies ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({**BEGIN, "sg": 5}, ["sg", "string"]),
        ({**BEGIN, "owner": ["me"]}, ["owner"]),
        ({**BEGIN, "lease_seconds": "soon"}, ["lease_seconds"]),
        ({**BEGIN, "kind": "nightly"}, ["kind", "'full'"]),
        ({**BEGIN, "kind": None}, ["kind"]),
        ({"kind": "full"}, ["sg: Field required", "owner: Field required"]),
        ({}, ["sg", "kind", "owner"]),
        ({**BEGIN, "sg": ""}, ["sg"]),
        ({**BEGIN, "owner": "x" * 513}, ["owner"]),
        ({**BEGIN, "lease_seconds": 0.5}, ["lease_seconds", "greater than or equal to 1"]),
        ({**BEGIN, "lease_seconds": 3601}, ["lease_seconds", "less than or equal to 3600"]),
        ({**BEGIN, "lease_seconds": -30}, ["lease_seconds"]),
        ({**BEGIN, "lease_seconds": 1e308}, ["lease_seconds"]),
        ([BEGIN], ["object"]),
        ("full", []),
    ],
    ids=lambda value: None,
)
def test_a_bad_backup_begin_is_refused_naming_the_field(service: Service, body: object, mentions: list[str]) -> None:
    before = service.client.get("/v1/backup-sessions")
    assert_refused(service.client.http.post("/v1/backup-sessions", json=body), 422, "InvalidParameterError", *mentions)
    assert service.client.get("/v1/backup-sessions") == before


@pytest.mark.parametrize(
    ("content", "status"),
    [(b"", 422), (b"{not json", 422), (b'{"sg": "First Storage Group", "kind": "full", "owner": "x",', 422)],
)
def test_a_body_that_is_not_json_is_refused(service: Service, content: bytes, status: int) -> None:
    before = service.client.get("/v1/backup-sessions")
    assert_refused(post_json(service, "/v1/backup-sessions", content), status, "InvalidParameterError")
    assert service.client.get("/v1/backup-sessions") == before


@pytest.mark.parametrize(("body", "mention"), [({"name": 7}, "name"), ({"name": ""}, "name"), ({}, "name")])
def test_a_bad_mailbox_is_refused(service: Service, body: dict[str, object], mention: str) -> None:
    assert_refused(service.client.http.post("/v1/mailboxes", json=body), 422, "InvalidParameterError", mention)


def test_a_mailbox_name_the_store_cannot_hold_is_refused(service: Service) -> None:
    for name in ("a/b", ".hidden", " edge", "bell\x07"):
        answer = service.client.http.post("/v1/mailboxes", json={"name": name})
        assert_refused(answer, 400, "InvalidParameterError", "mailbox name")
    assert [m["name"] for m in service.client.get("/v1/mailboxes")] == ["alice"]


# --- frames ------------------------------------------------------------------------------------------------------

_LENGTH = struct.Struct(">I")


@pytest.mark.parametrize(
    ("content", "mention"),
    [
        (b"\x00\x00", "the body ends inside the length of message 1's properties"),
        (_LENGTH.pack(100) + b"{}", "the body ends inside message 1's properties: 100 bytes announced at byte 0"),
        (frame(b"{}") + _LENGTH.pack(50) + b"short", "the body ends inside message 1's bytes"),
        (frame(b"{}"), "the body ends inside the length of message 1's bytes"),
        (frame(b"{}") + frame(b"raw") + b"\x00", "the body ends inside the length of message 2's properties"),
        (_LENGTH.pack(MAX_FRAME + 1), f"claims {MAX_FRAME + 1:,} bytes"),
        (frame(b"[1, 2]") + frame(b"raw"), "message 1's properties are not a JSON object"),
        (frame(b'"text"') + frame(b"raw"), "message 1's properties are not a JSON object"),
        (frame(b"{nope") + frame(b"raw"), "message 1's properties are not a JSON object"),
        (frame(b"\xff\xfe") + frame(b"raw"), "message 1's properties are not a JSON object"),
        (frame(b"[" * 100_000) + frame(b"raw"), "message 1's properties are not a JSON object"),  # was a 500
        (frame(b'{"a":' * 5000 + b"1" + b"}" * 5000) + frame(b"raw"), "message 1's properties"),
        (frame(b"{}") + frame(b"ok") + frame(b"7") + frame(b"raw"), "message 2's properties are not a JSON object"),
        (frame(b'{"received": 1e999}') + frame(b"raw"), "properties of message 1 of 1 cannot be stored"),
    ],
    ids=lambda value: None,
)
def test_a_malformed_frames_body_is_refused_and_stores_nothing(service: Service, content: bytes, mention: str) -> None:
    answer = service.client.http.post(DELIVER, content=content, headers={"content-type": FRAMES})
    assert_refused(answer, 400, "InvalidParameterError", mention)
    assert service.client.get("/v1/mailboxes")[0]["messages"] == 0


@pytest.mark.parametrize(
    ("route", "status", "kind", "mention"),
    [
        ("/v1/mailboxes/nobody/folders/INBOX/messages", 404, "NotFoundError", "'nobody'"),
        ("/v1/mailboxes/alice/folders/.dot/messages", 400, "InvalidParameterError", "folder name"),
        (DELIVER + "?sg=Nope", 404, "NotFoundError", "Nope"),
        (DELIVER + "?store=Nope", 404, "NotFoundError", "Nope"),
        (DELIVER + "?store=", 422, "InvalidParameterError", "store"),
    ],
)
def test_a_delivery_to_nowhere_is_refused(service: Service, route: str, status: int, kind: str, mention: str) -> None:
    content = frame(b"{}") + frame(b"Subject: lost\r\n\r\n")
    answer = service.client.http.post(route, content=content, headers={"content-type": FRAMES})
    assert_refused(answer, status, kind, mention)
    assert service.client.get("/v1/mailboxes")[0]["messages"] == 0


# --- names, ids, numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("POST", "/v1/storage-groups/Nope/mount", None),
        ("POST", "/v1/storage-groups/Nope/dismount", None),
        ("POST", f"/v1/storage-groups/{SG}/stores/Nope/mount", None),
        ("POST", f"/v1/storage-groups/{SG}/stores/Nope/dismount", None),
        ("POST", "/v1/storage-groups/Nope/stores/Mailbox Store/mount", None),
        ("POST", "/v1/storage-groups/Nope/backup/abort", None),
        ("POST", "/v1/backup-sessions", {**BEGIN, "sg": "Nope"}),
        ("GET", "/v1/mailboxes?sg=Nope", None),
        ("GET", "/v1/mailboxes?store=Nope", None),
        ("GET", "/v1/mailboxes/alice/messages?sg=Nope", None),
    ],
)
def test_an_unknown_storage_group_or_store_is_404(service: Service, method: str, route: str, body: object) -> None:
    answer = service.client.http.request(method, route, json=body)
    assert_refused(answer, 404, "NotFoundError", "Nope")
    status = service.client.get("/v1/status")["storage_groups"]
    assert [(sg["name"], sg["mounted"], [s["mounted"] for s in sg["stores"]]) for sg in status] == [
        (SG, True, [True, True])
    ]


@pytest.mark.parametrize("generation", ["0", "-1", str(2**31), str(10**30), "abc", "1.5"])
def test_a_generation_out_of_bounds_is_refused(service: Service, session: str, generation: str) -> None:
    answer = service.client.http.get(f"/v1/backup-sessions/{session}/logs/{generation}")
    assert_refused(answer, 422, "InvalidParameterError", "generation")


def test_a_generation_in_bounds_but_absent_is_a_clear_4xx(service: Service, session: str) -> None:
    answer = service.client.http.get(f"/v1/backup-sessions/{session}/logs/{2**31 - 1}")
    assert 400 <= answer.status_code < 500, answer.text
    assert "Traceback" not in answer.text
    assert answer.json()["error"]["message"]


@pytest.mark.parametrize("action", ["", "/heartbeat", "/stores", "/logs/prepare", "/checkpoint", "/complete"])
def test_an_unknown_session_says_it_is_not_running(service: Service, action: str) -> None:
    method = "GET" if action in ("", "/stores", "/checkpoint") else "POST"
    answer = service.client.http.request(method, f"/v1/backup-sessions/0123456789abcdef{action}")
    error = assert_refused(answer, 409, "NoBackupError", "backup session 0123456789abcdef is not running")
    assert error["exit_code"] == 20
    assert error["hint"]


@pytest.mark.parametrize("session_id", ["xyz", "0123456789ABCDEF", "0123456789abcdef0", "../status"])
def test_a_malformed_session_id_is_refused(service: Service, session_id: str) -> None:
    answer = service.client.http.post(f"/v1/backup-sessions/{session_id}/heartbeat")
    assert answer.status_code in (404, 422), answer.text
    assert_refused(
        answer, answer.status_code, "InvalidParameterError" if answer.status_code == 422 else "NotFoundError"
    )


@pytest.mark.parametrize(
    ("route", "mention"),
    [
        ("/v1/events?limit=-1", "limit"),
        ("/v1/events?limit=many", "limit"),
        ("/v1/events?event_id=70000", "event_id"),
        ("/v1/events?since=yesterday", "since"),
        ("/v1/files/header", "path"),
        ("/v1/files/header?path=", "path"),
        (f"/v1/mailboxes?sg={'x' * 257}", "sg"),
    ],
)
def test_a_bad_query_parameter_is_refused(service: Service, route: str, mention: str) -> None:
    assert_refused(service.client.http.get(route), 422, "InvalidParameterError", mention)


@pytest.mark.parametrize(
    ("method", "route", "status", "kind"),
    [
        ("GET", "/v1/nothing-here", 404, "NotFoundError"),
        ("GET", "/v2/status", 404, "NotFoundError"),
        ("POST", "/v1/status", 405, "InvalidParameterError"),
        ("GET", f"/v1/storage-groups/{SG}/mount", 405, "InvalidParameterError"),
        ("DELETE", "/v1/mailboxes", 405, "InvalidParameterError"),
    ],
)
def test_an_unknown_route_or_method_is_refused(
    service: Service, method: str, route: str, status: int, kind: str
) -> None:
    assert_refused(service.client.http.request(method, route), status, kind, route.split("?")[0])
