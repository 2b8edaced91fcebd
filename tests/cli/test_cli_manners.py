"""How the command line behaves around its output: a reader that closes the pipe early is not an error, a JSON
error carries the ESE code (or null, not a 0 that reads as success) and the exit code, and with --json a command
prints one document, even when it refuses after its report (doctor --fix)."""

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


@pytest.mark.parametrize("dry_run", [False, True])
def test_doctor_fix_refusing_with_json_prints_one_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dry_run: bool
) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    store = os.path.join(home, "First Storage Group", "priv1.edb")
    os.remove(store)  # a finding --fix refuses to cure: the store must come back from a backup
    code, out, err = run(capsys, "--home", home, "doctor", "--fix", *(["--dry-run"] * dry_run), "--json")
    assert err == ""
    document = json.loads(out)  # one JSON value: json.loads refuses two
    assert code == document["exit_code"] == 4  # -1203 JET_errDatabaseNotFound
    assert (document["error"], document["code"]) == ("DatabaseNotFoundError", -1203)
    assert document["message"].startswith("doctor --fix does not cure 'First Storage Group': store 'Mailbox Store'")
    assert document["hint"].startswith("restore it from a backup")
    assert [f["code"] for f in document["findings"]] == ["store-missing"]
    assert document["plan"]["refused"] == [{"sg": "First Storage Group", "findings": ["store-missing"]}]
    assert document["plan"]["dry_run"] is dry_run
    assert document["healthy"] is False


def test_doctor_fix_refusing_as_text_shows_the_findings_then_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    os.remove(os.path.join(home, "First Storage Group", "priv1.edb"))
    code, out, err = run(capsys, "--home", home, "doctor", "--fix")
    assert code == 4
    assert "error store-missing: store 'Mailbox Store'" in out
    assert err.startswith("error: [-1203 JET_errDatabaseNotFound] doctor --fix does not cure 'First Storage Group'")
