"""How the command line behaves around its output: a reader that closes the pipe early is not an error, and a
JSON error carries the ESE code (or null, not a 0 that reads as success) and the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.clirun import run

CLI = [sys.executable, "-c", "import sys; from shadowstore.cli.main import main; sys.exit(main())"]


def test_a_reader_that_stops_early_is_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    store = os.path.join(home, "First Storage Group", "priv1.edb")
    for args in (["eseutil", "/mh", store], ["--home", home, "events", "--json"]):
        proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # as `| head -1` does
        err = proc.stderr.read()
        assert proc.wait() == 0, (args, err)
        assert b"Broken pipe" not in err
        assert b"Traceback" not in err


def test_json_errors_carry_the_ese_code_or_none_and_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    code, out, _err = run(capsys, "--home", home, "restore", "plan", "--json")
    error = json.loads(out)
    assert (error["code"], error["code_name"], error["exit_code"]) == (-560, "JET_errMissingFullBackup", code)
    code, out, _err = run(capsys, "--home", home, "workload", "check", "--seed", "1", "--committed", "1", "--json")
    error = json.loads(out)
    assert error["code"] is None
    assert error["exit_code"] == code != 0


def test_home_is_taken_before_or_after_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "init", "--home", home)[0] == 0
    code, before, _err = run(capsys, "--home", home, "status")
    assert code == 0
    assert run(capsys, "status", "--home", home) == (0, before, "")
    assert run(capsys, "workload", "run", "--txns", "3", "--seed", "1", "--home", home)[0] == 0
    code, out, err = run(capsys, "backup", "list", "--home", home, "--home-id", "this")
    assert code == 0, err
    assert "no backup sets" in out
