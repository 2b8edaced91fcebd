"""How ``main()`` shows a failure that is not a ShadowStoreError (a bug): one line naming the command, the
exception and its text, and a hint naming the crash file that holds the traceback."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from shadowstore.cli.common import CliContext
from shadowstore.cli.main import cli
from shadowstore.errors import ExitCode, UnexpectedError, unexpected
from tests.cli.clirun import run

HINT = re.compile(r"hint: the full traceback is saved in (\S+); please include it when you report the bug")


def broken(*_args: object, **_kwargs: object) -> None:
    raise KeyError("storage group index")


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $TMPDIR for crash files; SHADOWSTORE_DEBUG unset."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.delenv("SHADOWSTORE_DEBUG", raising=False)
    return folder


def crash_file_named_in(err: str) -> Path:
    match = HINT.search(err)
    assert match is not None, err
    return Path(match.group(1))


def test_a_bug_is_one_line_and_a_hint_naming_the_saved_traceback(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CliContext, "open_home", broken)
    code, out, err = run(capsys, "--home", str(tmp_path / "no-home"), "status")
    assert code == ExitCode.ERROR
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == (
        "error: unexpected failure while running 'shadowstore status': KeyError: 'storage group index' "
        "(a bug in ShadowStore)"
    )
    assert len(lines) == 2
    assert "Traceback" not in err
    crash = crash_file_named_in(lines[1])
    assert crash.parent == tmpdir_env  # no server home there: $TMPDIR
    assert re.fullmatch(rf"crash-\d{{8}}T\d{{6}}Z-{os.getpid()}\.log", crash.name)
    saved = crash.read_text()
    assert "Traceback (most recent call last)" in saved
    assert "in broken" in saved  # the frame that raised
    assert "KeyError: 'storage group index'" in saved
    assert "status" in saved.splitlines()[0]  # the command line comes first
    assert crash.stat().st_mode & 0o077 == 0  # tracebacks may name private paths


def test_the_command_named_is_the_subcommand_that_failed(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CliContext, "open_home", broken)
    code, _out, err = run(capsys, "--home", str(tmp_path / "no-home"), "backup", "list")
    assert code == ExitCode.ERROR
    assert err.startswith("error: unexpected failure while running 'shadowstore backup list': KeyError: ")


def test_in_a_server_home_the_traceback_goes_to_its_reports_folder(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    assert run(capsys, "--home", str(home), "init")[0] == 0
    monkeypatch.setattr(CliContext, "open_home", broken)
    paths = []
    for _ in range(2):  # why twice: a second crash in the same second gets a file of its own
        code, _out, err = run(capsys, "--home", str(home), "status")
        assert code == ExitCode.ERROR
        paths.append(crash_file_named_in(err))
    assert paths[0] != paths[1]
    assert all(path.parent == home / "reports" for path in paths)
    assert all("KeyError" in path.read_text() for path in paths)
    assert list(tmpdir_env.iterdir()) == []


def test_with_shadowstore_debug_the_traceback_is_printed_too(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CliContext, "open_home", broken)
    monkeypatch.setenv("SHADOWSTORE_DEBUG", "1")
    code, _out, err = run(capsys, "--home", str(tmp_path / "no-home"), "status")
    assert code == ExitCode.ERROR
    assert err.startswith("Traceback (most recent call last)")
    assert "in broken" in err
    lines = err.splitlines()
    assert lines[-2].startswith("error: unexpected failure while running 'shadowstore status': KeyError")
    assert crash_file_named_in(lines[-1]).is_file()


def test_with_json_the_bug_is_one_json_document_on_stdout(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CliContext, "open_home", broken)
    code, out, err = run(capsys, "--home", str(tmp_path / "no-home"), "status", "--json")
    assert code == ExitCode.ERROR
    assert err == ""
    data = json.loads(out)
    assert data["error"] == "UnexpectedError"
    assert data["message"] == (
        "unexpected failure while running 'shadowstore status': KeyError: 'storage group index' (a bug in ShadowStore)"
    )
    assert Path(data["crash_file"]).parent == tmpdir_env
    assert data["crash_file"] in data["hint"]
    assert "Traceback" in Path(data["crash_file"]).read_text()


def test_a_bug_outside_the_commands_own_code_is_shown_the_same_way(
    tmp_path: Path, tmpdir_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.load("status")
    monkeypatch.setattr(cli.commands["status"], "callback", broken)  # bypasses what names the command
    home = str(tmp_path / "no-home")
    code, _out, err = run(capsys, "--home", home, "status")
    assert code == ExitCode.ERROR
    lines = err.splitlines()
    assert lines[0] == (
        f"error: unexpected failure while running 'shadowstore --home {home} status': KeyError: "
        "'storage group index' (a bug in ShadowStore)"
    )
    assert "in broken" in crash_file_named_in(lines[1]).read_text()


def test_a_traceback_that_cannot_be_saved_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    monkeypatch.delenv("SHADOWSTORE_DEBUG", raising=False)
    monkeypatch.setattr(CliContext, "open_home", broken)
    code, _out, err = run(capsys, "--home", str(tmp_path / "no-home"), "status")
    assert code == ExitCode.ERROR
    assert err.startswith("Traceback (most recent call last)")
    assert "error: unexpected failure while running 'shadowstore status'" in err
    assert "hint: the traceback could not be saved (" in err
    assert "it is printed on stderr above" in err


def test_our_own_errors_are_shown_as_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--home", str(tmp_path / "no-home"), "status")
    assert code == ExitCode.NOT_FOUND
    assert err.startswith("error: ")
    assert "unexpected" not in err
    assert not (tmp_path / "no-home").exists()


# --- unexpected() -------------------------------------------------------------------------------------------


class OddError(Exception):
    pass


def test_unexpected_is_one_line_naming_what_was_done_the_type_and_the_text() -> None:
    error = unexpected(ValueError("bad value\n  on two lines"), "copying  priv1.edb")
    assert isinstance(error, UnexpectedError)
    assert error.exit_code == ExitCode.ERROR
    assert error.message == (
        "unexpected failure while copying priv1.edb: ValueError: bad value on two lines (a bug in ShadowStore)"
    )
    assert str(unexpected(OddError(), "x")) == (
        f"unexpected failure while x: {__name__}.OddError (a bug in ShadowStore)"
    )
    long = unexpected(RuntimeError("y" * 10_000), "x").message
    assert "\n" not in long
    assert len(long) < 700
    assert "yyy..." in long
