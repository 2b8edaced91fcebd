"""Who may reach the Information Store service: the Unix socket only its owner can connect to, the TCP listener
only with the bearer token (a token file others can read is refused at start), and files only inside the home."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shadowstore.io.fs import OsFileSystem
from shadowstore.service.client import TOKEN_VARIABLE, URL_VARIABLE
from shadowstore.service.homefiles import service_info_path, service_lock_path
from tests.service.running import Service, running_service, shadowstore

SG = "First Storage Group"
STORE_FILE = "First Storage Group/priv1.edb"

# Run by a new interpreter started as root, which drops to ``uid`` before it connects (why not exec as that
# user: the interpreter may live where only root can reach it). Prints "refused" or "connected".
_CONNECT = """
import os, socket, sys
path, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if uid >= 0:
    os.setgroups([]); os.setgid(gid); os.setuid(uid)
os.stat(path)  # why: the folders let this user reach the socket, so only the socket's own mode can refuse
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    client.connect(path)
except PermissionError:
    print("refused")
else:
    print("connected")
"""


def write_token(path: Path, token: str, mode: int = 0o600) -> str:
    path.write_text(token + "\n")
    path.chmod(mode)
    return str(path)


def assert_not_owned(home: str) -> None:
    assert not os.path.exists(service_info_path(home))
    assert OsFileSystem().lock_holder(service_lock_path(home)) is None


def assert_error_body(response: httpx.Response, status: int, kind: str, what: str = "") -> dict[str, object]:
    assert response.status_code == status, f"{what}: {response.text}"
    assert "Traceback" not in response.text
    error = response.json()["error"]
    assert error["error"] == kind
    assert error["message"]
    return error


# --- the Unix socket ---------------------------------------------------------------------------------------------


def test_socket_is_mode_0600_and_owned_by_the_services_user(service: Service) -> None:
    mail_socket = service.client.get("/v1/health")["mail_socket"]
    assert mail_socket == service.socket.removesuffix(".sock") + "-mail.sock"
    for path in (service.socket, mail_socket):
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.stat(f"/proc/{service.process.pid}").st_uid


@pytest.fixture
def open_folder() -> Iterator[str]:
    """A folder every user may search (the home's tmp_path is not), for a socket only its mode protects."""
    folder = tempfile.mkdtemp(prefix="shadowstore-sock-")
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_another_user_cannot_connect_to_the_socket(home_dir: str, open_folder: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    try:
        other = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no unprivileged user ('nobody') exists to connect as")

    def connect_as(uid: int, gid: int) -> str:
        args = [sys.executable, "-I", "-c", _CONNECT, path, str(uid), str(gid)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    path = os.path.join(open_folder, "service.sock")
    with running_service(home_dir, "--socket", path) as service:
        assert service.socket == path
        assert connect_as(-1, -1) == "connected"  # the script can connect at all
        assert connect_as(other.pw_uid, other.pw_gid) == "refused"
        assert service.client.get("/v1/health")["pid"] == service.process.pid
        path = os.path.join(open_folder, "service-mail.sock")  # the mail socket, beside it
        assert service.client.get("/v1/health")["mail_socket"] == path
        assert connect_as(-1, -1) == "connected"
        assert connect_as(other.pw_uid, other.pw_gid) == "refused"


# --- TCP with a bearer token -------------------------------------------------------------------------------------


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    return write_token(tmp_path / "token", secrets.token_urlsafe(32))


@pytest.fixture
def tcp_service(home_dir: str, token_file: str) -> Iterator[Service]:
    with running_service(home_dir, "--listen", "127.0.0.1:0", "--token-file", token_file) as running:
        yield running


def test_every_tcp_route_needs_the_token(tcp_service: Service, token_file: str) -> None:
    token = Path(token_file).read_text().strip()
    assert tcp_service.listen is not None
    assert tcp_service.listen.startswith("127.0.0.1:")
    dismount = f"/v1/storage-groups/{SG.replace(' ', '%20')}/dismount"
    begin = {"sg": SG, "kind": "full", "owner": "test_security"}
    routes = [
        ("GET", "/v1/status", None),
        ("GET", "/v1/health", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("GET", "/docs", None),
        ("GET", "/v1/no-such-route", None),  # 401, not 404: nothing is told before the token
        ("POST", "/v1/backup-sessions", begin),
        ("POST", dismount, None),
    ]
    same_length = secrets.token_urlsafe(64)[: len(token)]
    wrong = {
        "no token": {},
        "a wrong token of the same length": {"Authorization": f"Bearer {same_length}"},
        "a short token": {"Authorization": "Bearer short"},
        "the token and one more character": {"Authorization": f"Bearer {token}x"},
        "the token without its scheme": {"Authorization": token},
    }
    with httpx.Client(base_url=f"http://{tcp_service.listen}", timeout=30) as http:
        for method, route, body in routes:
            for label, headers in wrong.items():
                answer = http.request(method, route, json=body, headers=headers)
                error = assert_error_body(answer, 401, "AccessDeniedError", f"{method} {route} with {label}")
                assert "bearer token" in str(error["message"])
                assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        # nothing the refused requests asked for was done
        status = tcp_service.client.get("/v1/status")
        assert status["storage_groups"][0]["mounted"] is True
        assert status["service"]["backup_sessions"] == []

        good = {"Authorization": f"Bearer {token}"}
        for route in ("/v1/status", "/metrics", "/openapi.json", "/docs"):
            assert http.get(route, headers=good).status_code == 200, route
        session = http.post("/v1/backup-sessions", json=begin, headers=good)
        assert session.status_code == 200, session.text
        assert http.delete(f"/v1/backup-sessions/{session.json()['id']}", headers=good).status_code == 200
        answer = http.post(dismount, headers=good)
        assert answer.status_code == 200, answer.text
        assert answer.json()["mounted"] is False


def test_cli_reaches_the_service_over_tcp_with_the_token_file(
    tcp_service: Service, token_file: str, tmp_path: Path
) -> None:
    url = f"http://{tcp_service.listen}"
    done = shadowstore(tcp_service.home, "status", env={URL_VARIABLE: url, TOKEN_VARIABLE: token_file})
    assert done.returncode == 0, done.stderr
    assert f"mounted by the Information Store service (pid {tcp_service.process.pid})" in done.stdout

    other = write_token(tmp_path / "other-token", secrets.token_urlsafe(32))
    refused = shadowstore(tcp_service.home, "status", env={URL_VARIABLE: url, TOKEN_VARIABLE: other})
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: this listener needs the service's bearer token")
    assert "hint: pass --token-file" in refused.stderr


def test_status_over_tcp_needs_no_copy_of_the_home_on_the_clients_machine(
    tcp_service: Service, token_file: str, tmp_path: Path
) -> None:
    env = {URL_VARIABLE: f"http://{tcp_service.listen}", TOKEN_VARIABLE: token_file}
    away = str(tmp_path / "no-home-here")  # a monitoring machine: no server home at all
    done = shadowstore(away, "status", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"Server home: {tcp_service.home} ")
    document = json.loads(shadowstore(away, "status", "--json", env=env).stdout)
    assert document["unfinished_restores"] == []
    assert all("quarantine" in sg for sg in document["storage_groups"])
    assert document == json.loads(shadowstore(tcp_service.home, "status", "--json").stdout)  # as on the server


def test_the_cli_refuses_a_tcp_service_of_another_home_than_its_own(
    tcp_service: Service, token_file: str, tmp_path: Path
) -> None:
    # A backup through another home's service copied that home's stores and filed the set under this home's
    # id: a restore of this home would then bring back the other server's data.
    other = str(tmp_path / "other-home")
    assert shadowstore(other, "init").returncode == 0
    target = str(tmp_path / "backups")
    env = {URL_VARIABLE: f"http://{tcp_service.listen}", TOKEN_VARIABLE: token_file}
    done = shadowstore(other, "backup", "run", "--sg", "First Storage Group", "--kind", "full", "--to", target, env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    first, hint = done.stderr.splitlines()
    served = tomllib.loads(Path(tcp_service.home, "shadowstore.toml").read_text())["home_id"]
    assert f"is the Information Store service of home {served}" in first
    assert "backups and restores through it would mix the two homes" in first
    assert hint.startswith("hint: name that home with --home on the machine that has it")
    assert not os.path.exists(target), "nothing was backed up"
    assert shadowstore(tcp_service.home, "status", env=env).returncode == 0, "its own home is served as before"


# --- refused at start --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640], ids=lambda mode: f"{mode:04o}")
def test_a_token_file_others_can_read_is_refused_at_start(home_dir: str, tmp_path: Path, mode: int) -> None:
    path = write_token(tmp_path / "token", secrets.token_urlsafe(32), mode)
    done = shadowstore(home_dir, "serve", "--listen", "127.0.0.1:0", "--token-file", path, timeout=20)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    error, hint = done.stderr.splitlines()
    assert error.startswith(f"error: token file {path} is readable or writable by others (mode {mode:04o})")
    assert hint == f"hint: chmod 600 {path}"
    assert_not_owned(home_dir)

    os.chmod(path, 0o600)
    with running_service(home_dir, "--listen", "127.0.0.1:0", "--token-file", path) as service:
        assert service.listen is not None


@pytest.mark.parametrize(
    ("case", "exit_code", "message"),
    [
        ("missing", 4, "token file {path} does not exist"),
        ("short", 3, "token file {path} holds 11 characters; a token needs at least 16"),
        ("no token file", 3, "--listen needs --token-file"),
    ],
    ids=["missing", "short", "no-token-file"],
)
def test_serve_refuses_a_bad_token_setup(
    home_dir: str, tmp_path: Path, case: str, exit_code: int, message: str
) -> None:
    path = str(tmp_path / "token")
    if case == "short":
        write_token(tmp_path / "token", "short-token")
    options = ["--listen", "127.0.0.1:0"] + (["--token-file", path] if case != "no token file" else [])
    done = shadowstore(home_dir, "serve", *options, timeout=20)
    assert done.returncode == exit_code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("error: ")
    assert message.format(path=path) in first
    assert_not_owned(home_dir)


# --- paths -------------------------------------------------------------------------------------------------------


def header(service: Service, path: str) -> httpx.Response:
    return service.client.http.get("/v1/files/header", params={"path": path})


def test_paths_outside_the_home_are_refused(service: Service) -> None:
    home = service.home
    outside = os.path.join(os.path.dirname(home), "secret.edb")
    Path(outside).write_bytes(Path(home, STORE_FILE).read_bytes())  # a real store, only in the wrong place
    os.symlink(outside, os.path.join(home, "link.edb"))
    os.mkdir(home + "-evil")  # shares the home's name as a prefix
    shutil.copy(outside, home + "-evil/priv1.edb")
    for path in (
        "/etc/passwd",
        outside,
        os.path.join(home, "link.edb"),
        os.path.join(home, "..", "secret.edb"),
        home + "-evil/priv1.edb",
    ):
        error = assert_error_body(header(service, path), 403, "AccessDeniedError", path)
        assert path in str(error["message"])
        assert error["exit_code"] == 3
    error = assert_error_body(header(service, STORE_FILE), 400, "InvalidParameterError")
    assert "not an absolute path" in str(error["message"])


def test_header_of_a_store_in_the_home_reads_as_eseutil_prints_it(service: Service) -> None:
    service.client.post(f"/v1/storage-groups/{SG}/dismount")  # why: a header that no longer changes
    path = os.path.join(service.home, STORE_FILE)
    answer = header(service, path)
    assert answer.status_code == 200, answer.text
    lines = answer.json()["lines"]
    assert any("State: Clean Shutdown" in line for line in lines)

    direct = shadowstore(service.home, "eseutil", "/mh", path)
    assert direct.returncode == 0, direct.stderr
    printed = direct.stdout.splitlines()
    assert printed[0] == "Initiating FILE DUMP mode..."
    assert printed[1:-2] == lines
    assert printed[-1].startswith("Operation completed successfully")

    as_json = shadowstore(service.home, "eseutil", "/mh", path, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == answer.json()["json"]


def test_eseutil_mh_through_the_tcp_listener_prints_what_it_prints_directly(
    tcp_service: Service, token_file: str
) -> None:
    tcp_service.client.post(f"/v1/storage-groups/{SG}/stores/Mailbox%20Store/dismount")  # a header that stays
    path = os.path.join(tcp_service.home, STORE_FILE)
    env = {URL_VARIABLE: f"http://{tcp_service.listen}", TOKEN_VARIABLE: token_file}
    remote = shadowstore(tcp_service.home, "eseutil", "/mh", path, env=env)
    direct = shadowstore(tcp_service.home, "eseutil", "/mh", path)
    assert remote.returncode == direct.returncode == 0, remote.stderr + direct.stderr
    assert remote.stdout.splitlines()[:-1] == direct.stdout.splitlines()[:-1]  # the last line gives the seconds
    assert "State: Clean Shutdown" in remote.stdout
    as_json = [json.loads(shadowstore(tcp_service.home, "eseutil", "/mh", path, "--json", env=e).stdout)
               for e in (env, None)]  # fmt: skip
    assert as_json[0] == as_json[1]

    outside = shadowstore(tcp_service.home, "eseutil", "/mh", "/etc/passwd", env=env)
    assert outside.returncode == 3
    assert "outside the server home" in outside.stderr
    assert "Operation terminated with error" in outside.stdout
