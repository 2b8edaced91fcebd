"""``shadowstore mount|dismount SG[/STORE]``: a target that is not one or two names is refused by the CLI, naming
what is wrong with it, before any request; and no name can change the route of a request to the service."""

from __future__ import annotations

import json

import pytest

from shadowstore.cli.service_cmd import _path, _split
from shadowstore.errors import ExitCode, InvalidParameterError, NotFoundError
from shadowstore.service.client import check_route, segment
from tests.cli.clirun import run
from tests.service.running import Service

SG = "First Storage Group"
BAD_TARGETS = [
    ("", "an empty name"),
    ("/", "an empty name"),
    (f"{SG}/", "an empty name"),
    ("/Mailbox Store", "an empty name"),
    ("../x", "'.' or '..' as a name"),
    ("..", "'.' or '..' as a name"),
    (f"{SG}/.", "'.' or '..' as a name"),
    ("SG/Store/extra", "more than one '/'"),
    ("a\x07b", "a control character"),
    (f"{SG}/Mailbox Store\n", "a control character"),
]
HINT = (
    "name a storage group, or a storage group, '/' and one of its stores, as 'shadowstore status' lists them "
    "(e.g. 'First Storage Group/Mailbox Store')"
)


@pytest.mark.parametrize(("target", "problem"), BAD_TARGETS)
def test_a_target_that_is_not_sg_or_sg_store_is_refused(target: str, problem: str) -> None:
    with pytest.raises(InvalidParameterError) as refused:
        _split(target)
    assert refused.value.message == f"{target!r} is not SG or SG/STORE: it has {problem}"
    assert refused.value.hint == HINT


def test_names_are_split_and_encoded_as_one_segment_each() -> None:
    assert _split(SG) == (SG, None)
    assert _split(f"{SG}/Mailbox Store") == (SG, "Mailbox Store")
    assert _path(SG, None, "mount") == "/v1/storage-groups/First%20Storage%20Group/mount"
    assert _path("a?b#c", "d%e", "dismount") == "/v1/storage-groups/a%3Fb%23c/stores/d%25e/dismount"


def test_a_segment_can_never_be_another_route() -> None:
    assert segment("..") == "%2E%2E"
    assert segment(".") == "%2E"
    assert segment("a/../b") == "a%2F..%2Fb"
    assert segment("...") == "..."  # a name, not a dot-segment
    with pytest.raises(InvalidParameterError):
        segment("")


@pytest.mark.parametrize(
    "path", ["/v1/storage-groups//mount", "/v1/storage-groups/../mount", "/v1/storage-groups/./x/mount", "/v1/x/"]
)
def test_a_path_a_name_would_reroute_is_refused_before_it_is_sent(path: str) -> None:
    with pytest.raises(InvalidParameterError, match="which would change the route"):
        check_route("POST", path)


def test_a_good_path_passes() -> None:
    check_route("GET", "/v1/events?since=..&sg=")  # the query is not the route
    check_route("POST", "/v1/storage-groups/%2E%2E/mount")


@pytest.mark.parametrize("command", ["mount", "dismount"])
def test_a_bad_target_is_refused_before_the_service_is_looked_for(
    home_dir: str, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, err = run(capsys, "--home", home_dir, command, "../x", "--json")
    assert (code, err) == (ExitCode.USAGE, "")
    error = json.loads(out)
    assert error["error"] == "InvalidParameterError"
    assert error["message"] == "'../x' is not SG or SG/STORE: it has '.' or '..' as a name"


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("", "an empty name"),
        ("/", "an empty name"),
        ("../x", "'.' or '..' as a name"),
        ("SG/Store/extra", "more than one '/'"),
        ("a\x07b", "a control character"),
    ],
)
def test_through_the_service_a_bad_target_is_named_not_a_route_error(
    service: Service, target: str, problem: str
) -> None:
    done = service.cli("mount", target, check=False)
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"error: [-1003 JET_errInvalidParameter] {target!r} is not SG or SG/STORE: it has {problem}",
        f"hint: {HINT}",
    ]
    assert "API route" not in done.stderr


def test_through_the_service_a_dot_name_reaches_its_own_route(service: Service) -> None:
    with pytest.raises(NotFoundError, match=r"there is no storage group '\.\.'"):
        service.client.post(f"/v1/storage-groups/{segment('..')}/stores/{segment('x')}/mount")
    with pytest.raises(InvalidParameterError, match="which would change the route"):
        service.client.post("/v1/storage-groups/../stores/x/mount")  # once rewritten into POST /v1/stores/x/mount
    assert service.cli("mount", f"{SG}/Mailbox Store").stdout.splitlines()[0] == f"{SG}/Mailbox Store: mounted."
