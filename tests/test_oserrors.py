"""What the OS refuses is a refusal, not a bug: a path without permission, a folder that is missing, a file where
a folder must be, an address that cannot be listened on. Each is one line naming the path (and the command), a
hint saying what to do, and the exit code of its kind; no crash file, no "a bug in ShadowStore"."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shadowstore.errors import ExitCode
from shadowstore.home import ServerHome
from shadowstore.io.fs import OsFileSystem
from shadowstore.oserrors import os_refusal
from tests.cli.clirun import run
from tests.service.running import shadowstore

SG = "First Storage Group"
NOBODY = 65534
CLI = [sys.executable, "-c", "import sys; from shadowstore.cli.main import main; sys.exit(main())"]


def assert_refused(err: str, message: str, hint: str) -> None:
    """``err`` is exactly the refusal's two lines (no traceback, no bug report)."""
    assert err.splitlines() == [f"error: {message}", f"hint: {hint}"], err


def home_with_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, Path]:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    return home, afile


# --- a file where a folder must be (real) -------------------------------------------------------------------


def test_init_below_a_file_says_the_file_is_not_a_folder(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, out, err = run(capsys, "init", "--home", str(afile / "sub"))
    assert (code, out) == (ExitCode.USAGE, "")
    assert_refused(
        err,
        f"[-1003 JET_errInvalidParameter] {afile} is a file, not a folder, while running 'shadowstore init'",
        f"choose another path, or move the file {afile} away",
    )
    assert list(tmpdir_env.iterdir()) == []  # no crash file


def test_sg_create_with_a_log_folder_that_is_a_file(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, afile = home_with_a_file(tmp_path, capsys)
    code, _out, err = run(capsys, "--home", home, "sg", "create", "y", "--log-dir", str(afile))
    assert code == ExitCode.USAGE
    assert err.startswith(f"error: [-1003 JET_errInvalidParameter] {afile} is a file, not a folder, while running")
    assert "a bug" not in err
    assert "y" not in [
        g["name"] for g in json.loads(run(capsys, "--home", home, "status", "--json")[1])["storage_groups"]
    ]


@pytest.mark.parametrize("dry_run", [True, False])
def test_sg_move_to_a_file_is_refused_naming_it(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str], dry_run: bool
) -> None:
    home, afile = home_with_a_file(tmp_path, capsys)
    code, _out, err = run(capsys, "--home", home, "sg", "move", SG, "--to", str(afile), *(["--dry-run"] * dry_run))
    assert code == ExitCode.USAGE
    assert_refused(
        err,
        f"[-1003 JET_errInvalidParameter] {afile} is a file, not a folder (for {afile / 'E00.log'}), while "
        "running 'shadowstore sg move'",
        f"choose another path, or move the file {afile} away",
    )
    assert run(capsys, "--home", home, "doctor")[0] == 0  # nothing left half-moved


def test_mail_export_below_a_file_names_the_file(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, afile = home_with_a_file(tmp_path, capsys)
    assert run(capsys, "--home", home, "mail", "generate", "--mailboxes", "1", "--messages", "1", "--seed", "1")[0] == 0
    code, out, _err = run(
        capsys, "--home", home, "mail", "export", str(afile / "x"), "--format", "mbox", "--mailbox", "user01", "--json"
    )
    assert code == ExitCode.USAGE
    error = json.loads(out)
    assert error["error"] == "InvalidParameterError"
    assert error["exit_code"] == ExitCode.USAGE
    assert error["message"].startswith(f"{afile} is a file, not a folder (for {afile / 'x'})")
    assert error["file"] == str(afile / "x")


# --- a folder that is missing (real) ------------------------------------------------------------------------


def test_backup_of_a_group_whose_log_folder_is_gone_names_the_folder(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    logs = tmp_path / "logs"
    assert run(capsys, "--home", home, "init")[0] == 0
    assert run(capsys, "--home", home, "sg", "create", "x", "--log-dir", str(logs))[0] == 0
    shutil.rmtree(logs)
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--sg", "x", "--kind", "full")
    assert code == ExitCode.NOT_FOUND
    assert_refused(
        err,
        f"[-1811 JET_errFileNotFound] no such folder: {logs} (for {logs / 'E01.lock'}), while running "
        "'shadowstore backup run'",
        "check the path and that its disk is mounted ('shadowstore status' shows the folders each storage group uses)",
    )
    assert list(tmpdir_env.iterdir()) == []


# --- no permission ------------------------------------------------------------------------------------------


def test_an_unreadable_configuration_is_a_refusal_naming_it_and_the_user(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    config = os.path.join(home, "shadowstore.toml")
    opened = OsFileSystem.open

    def refused(self: OsFileSystem, path: str, **kwargs: bool) -> object:
        if path == config:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)  # as the kernel says it
        return opened(self, path, **kwargs)

    monkeypatch.setattr(OsFileSystem, "open", refused)
    code, out, err = run(capsys, "--home", home, "status", "--json")
    assert (code, err) == (ExitCode.USAGE, "")
    error = json.loads(out)
    assert error["error"] == "AccessDeniedError"
    assert error["exit_code"] == ExitCode.USAGE
    assert error["message"] == f"permission denied: {config}, while running 'shadowstore status'"
    assert error["hint"].startswith(f"check the permissions of {config} and of the folders above it: ShadowStore")
    assert f"(uid {os.geteuid()})" in error["hint"]
    assert error["file"] == config
    assert list(tmpdir_env.iterdir()) == []


@pytest.fixture
def shared_home() -> Iterator[Path]:
    """A server home another user can reach (pytest's own folders are the user's alone), removed after."""
    base = Path(tempfile.mkdtemp(prefix="shadowstore-perm-"))
    base.chmod(0o755)
    try:
        home = base / "home"
        ServerHome.init(str(home))
        yield home
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(base)


def as_a_user(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``shadowstore ARGS`` as a user that file permissions bind: this one, or nobody when this is root (who
    is not bound by them). Skips where root cannot become nobody."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    if os.geteuid() != 0:
        return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, check=False, timeout=120)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if subprocess.run([*drop, *CLI, "--version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("nobody cannot run this Python")
    return subprocess.run([*drop, *CLI, *args], capture_output=True, text=True, env=env, check=False, timeout=120)


def hand_over(home: Path) -> None:
    """Make ``home`` the files of the user ``as_a_user`` runs as."""
    if os.geteuid() == 0:
        for path in [home, *home.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)


@pytest.mark.parametrize("command", [["status"], ["mail", "list"], ["doctor"], ["backup", "list"]])
def test_a_configuration_the_user_cannot_read(shared_home: Path, command: list[str]) -> None:
    hand_over(shared_home)
    config = shared_home / "shadowstore.toml"
    config.chmod(0)
    done = as_a_user("--home", str(shared_home), *command, tmp=shared_home.parent)
    assert done.returncode == ExitCode.USAGE, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: permission denied: {config}, while running 'shadowstore {' '.join(command)}'"
    assert lines[1].startswith(f"hint: check the permissions of {config} and of the folders above it")
    assert len(lines) == 2
    assert not list(shared_home.parent.glob("crash-*"))


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["mail", "list"],
        ["doctor"],
        ["backup", "run", "--sg", SG, "--kind", "full"],
        ["workload", "run", "--txns", "1", "--seed", "1"],
        ["eseutil", "/r", f"{{home}}/{SG}/E00"],
    ],
)
def test_a_storage_group_folder_the_user_cannot_read(shared_home: Path, command: list[str]) -> None:
    hand_over(shared_home)
    folder = shared_home / SG
    folder.chmod(0)
    words = [word.replace("{home}", str(shared_home)) for word in command]
    done = as_a_user("--home", str(shared_home), *words, tmp=shared_home.parent)
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    error = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert error.startswith(f"error: permission denied: {folder}"), done.stderr
    assert "a bug" not in done.stderr
    assert "hint: check the permissions of " in done.stderr
    assert not list(shared_home.parent.glob("crash-*"))


# --- addresses ----------------------------------------------------------------------------------------------


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text("a-token-long-enough-for-the-service-0123456789\n")
    path.chmod(0o600)
    return str(path)


def test_serve_on_a_port_in_use_names_the_address(tmp_path: Path, token_file: str) -> None:
    home = str(tmp_path / "home")
    ServerHome.init(home)
    mounts = shadowstore(home, "events", "--id", "1000", "--json")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = shadowstore(home, "serve", "--listen", address, "--token-file", token_file)
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    # refused before it mounted anything: a mount may first replay logs for minutes
    assert shadowstore(home, "events", "--id", "1000", "--json").stdout == mounts.stdout
    assert_refused(
        done.stderr,
        f"[-1003 JET_errInvalidParameter] cannot listen on {address}: another program listens there",
        "stop that program, or choose another port in --listen",
    )


def test_serve_on_an_address_of_another_machine_says_so(tmp_path: Path, token_file: str) -> None:
    home = str(tmp_path / "home")
    ServerHome.init(home)
    address = "192.0.2.1:8470"  # TEST-NET-1: documentation only, never an address of this machine
    done = shadowstore(home, "serve", "--listen", address, "--token-file", token_file)
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    assert done.stderr.startswith(
        f"error: [-1003 JET_errInvalidParameter] cannot listen on {address}: no network interface of this machine "
        "has that address\nhint: name an address of this machine in --listen"
    )


# --- os_refusal ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "kind", "exit_code", "message"),
    [
        (errno.ENOSPC, "DiskFullError", ExitCode.DISK_FULL, "no space left for {path}, while x"),
        (errno.EDQUOT, "DiskFullError", ExitCode.DISK_FULL, "no space left for {path}, while x"),
        (errno.EROFS, "AccessDeniedError", ExitCode.USAGE, "read-only file system: {path}, while x"),
        (errno.EPERM, "AccessDeniedError", ExitCode.USAGE, "permission denied: {path}, while x"),
        (errno.EISDIR, "InvalidParameterError", ExitCode.USAGE, "{path} is a folder, not a file, while x"),
        (errno.EEXIST, "InvalidParameterError", ExitCode.USAGE, "{path} exists already, while x"),
        (errno.EIO, "DiskIOError", ExitCode.IO_ERROR, "I/O error on {path}, while x"),
        (errno.ENOENT, "FileNotFoundError_", ExitCode.NOT_FOUND, "no such file or folder: {path}, while x"),
    ],
)
def test_each_errno_of_the_machine_has_its_refusal(
    tmp_path: Path, number: int, kind: str, exit_code: ExitCode, message: str
) -> None:
    path = str(tmp_path / "name")
    refusal = os_refusal(OSError(number, os.strerror(number), path), "x")
    assert refusal is not None
    assert (type(refusal).__name__, refusal.exit_code) == (kind, exit_code)
    assert refusal.message == message.format(path=path)
    assert refusal.hint
    assert refusal.details["file"] == path


def test_an_errno_only_a_bug_causes_stays_a_bug(tmp_path: Path) -> None:
    assert os_refusal(OSError(errno.EBADF, os.strerror(errno.EBADF), str(tmp_path)), "x") is None
    assert os_refusal(OSError(errno.EINVAL, os.strerror(errno.EINVAL), str(tmp_path)), "x") is None
    assert os_refusal(OSError(errno.ENOENT, os.strerror(errno.ENOENT)), "x") is None  # no path: nothing to name


def test_with_shadowstore_debug_a_refusal_shows_its_traceback(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("SHADOWSTORE_DEBUG", "1")
    code, _out, err = run(capsys, "init", "--home", str(afile / "sub"))
    assert code == ExitCode.USAGE
    assert err.startswith("Traceback (most recent call last)")
    assert "FileExistsError" in err
    assert err.splitlines()[-2].startswith(f"error: [-1003 JET_errInvalidParameter] {afile} is a file, not a folder")


def test_an_address_in_use_is_a_refusal_with_or_without_a_path() -> None:
    for filename in (None, "/run/x.sock"):
        refusal = os_refusal(OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE), filename), "x")
        assert refusal is not None
        assert refusal.exit_code == ExitCode.USAGE
        assert refusal.message.startswith(os.strerror(errno.EADDRINUSE))
        assert (filename or "") in refusal.message
        assert refusal.hint == "another program listens there: stop it, or choose another port"
