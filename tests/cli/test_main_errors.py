"""How ``main()`` shows a failure that is not a ShadowStoreError (a bug): one line naming the command, the
exception and its text, and a hint naming the crash file that holds the traceback. And how it shows what is not
ours but no bug either (click's usage errors, Ctrl-C): with --json, as one JSON document too."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shadowstore.cli.common import CliContext
from shadowstore.cli.main import cli
from shadowstore.errors import ExitCode, UnexpectedError, unexpected
from tests.cli.clirun import run

HINT = re.compile(r"hint: the full traceback is saved in (\S+); please include it when you report the bug")


def broken(*_args: object, **_kwargs: object) -> None:
    raise KeyError("storage group index")


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


# --- --json: every failure is one document on stdout --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "command", "message"),
    [
        (
            ["backup", "run", "--kind", "bogus", "--json"],
            "backup run",
            "Invalid value for '--kind': 'bogus' is not one of 'full', 'incremental', 'differential', 'copy'.",
        ),
        (["events", "--id", "abc", "--json"], "events", "Invalid value for '--id': 'abc' is not a valid integer."),
        (["--json", "events"], "", "No such option '--json'. Did you mean '--version'?"),  # --json before the command
        (
            ["store", "read", "First Storage Group", "Mailbox Store", "--limit", "-1", "--json"],
            "store read",
            "Invalid value for '--limit': -1 is not in the range x>=0.",
        ),
        (["config", "set", "backup.lease_seconds", "-1", "--json"], "config set", "No such option '-1'."),
    ],
)
def test_a_usage_error_with_json_is_one_json_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], command: str, message: str
) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    code, out, err = run(capsys, "--home", home, *args)
    assert code == ExitCode.USAGE
    assert err == ""
    error = json.loads(out)
    assert list(error) == ["error", "code", "code_name", "exit_code", "message", "hint"]
    assert (error["error"], error["code"], error["exit_code"]) == ("InvalidParameterError", -1003, ExitCode.USAGE)
    assert error["message"] == message
    assert error["hint"].startswith(f"see '{' '.join(['shadowstore', *command.split()])} --help'")


def test_a_negative_number_taken_for_an_option_gets_a_hint_to_use_dashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run(capsys, "--home", str(tmp_path), "config", "set", "backup.lease_seconds", "-1", "--json")
    assert code == ExitCode.USAGE
    assert json.loads(out)["hint"] == (
        "see 'shadowstore config set --help' (a value that starts with '-' goes after '--': -- -1)"
    )


def test_a_usage_error_without_json_is_clicks_text_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--home", str(tmp_path), "backup", "run", "--kind", "bogus")
    assert (code, out) == (ExitCode.USAGE, "")
    assert "Error: Invalid value for '--kind'" in err
    code, out, err = run(capsys, "--home", str(tmp_path), "mail", "import", "x", "--", "--json")
    assert out == ""  # after '--' it is an argument, not the option


def interrupted(*_args: object, **_kwargs: object) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_with_json_is_a_json_document_and_exit_code_99(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CliContext, "open_home", interrupted)
    code, out, err = run(capsys, "--home", str(tmp_path), "status", "--json")
    assert (code, err.strip()) == (ExitCode.INTERRUPTED, "")  # click ends the line the terminal showed ^C on
    error = json.loads(out)
    assert error["error"] == "CommandInterruptedError"
    assert error["exit_code"] == ExitCode.INTERRUPTED
    assert error["code"] is None
    assert error["message"] == "the command was interrupted (Ctrl-C or SIGINT)"
    assert error["hint"]
    code, out, err = run(capsys, "--home", str(tmp_path), "status")
    assert (code, out, err.strip()) == (ExitCode.INTERRUPTED, "", "interrupted")


def test_sigint_during_a_backup_with_json_prints_a_json_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    command = [sys.executable, "-c", "from shadowstore.cli.main import entry; entry()", "--home", home]
    backup = subprocess.Popen(
        [*command, "backup", "run", "--sg", "First Storage Group", "--kind", "full", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SHADOWSTORE_PAUSE_AT": "backup.copy.database"},
    )
    assert backup.stderr is not None
    assert backup.stderr.readline() == "paused at backup.copy.database\n"
    backup.send_signal(signal.SIGINT)
    out, err = backup.communicate(timeout=60)
    assert backup.returncode == ExitCode.INTERRUPTED, err
    assert json.loads(out)["error"] == "CommandInterruptedError"
    assert "Traceback" not in err
