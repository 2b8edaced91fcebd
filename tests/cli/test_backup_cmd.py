"""``shadowstore backup run``'s options refused before anything is copied or truncated (cli/backup_cmd.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.clirun import run

SG = "First Storage Group"


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "home")
    assert run(capsys, "--home", path, "init")[0] == 0
    assert run(capsys, "--home", path, "workload", "run", "--txns", "50", "--seed", "1")[0] == 0
    return path


def _logs(home: str) -> list[str]:
    return sorted(name for name in os.listdir(os.path.join(home, SG)) if name.endswith(".log"))


def test_an_empty_target_is_refused_not_taken_as_the_current_directory(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    logs = _logs(home)
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--to", "")
    assert code == 3
    assert "error: [-1003 JET_errInvalidParameter] --to is empty" in err
    assert "hint: give a directory or an s3://bucket/prefix URL" in err
    assert list(here.iterdir()) == []
    assert _logs(home) == logs


def test_a_provider_for_a_streaming_backup_is_refused_as_a_contradiction(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = str(tmp_path / "backups")
    args = ("--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--to", target)
    code, _out, err = run(capsys, *args, "--provider", "btrfs")
    assert code == 3
    assert "--provider btrfs chooses how a shadow copy is made, and this is a streaming backup" in err
    assert "hint: add --method snapshot, or leave --provider out" in err
    assert not os.path.exists(target)
    code, _out, err = run(capsys, *args, "--method", "snapshot", "--provider", "copy", "--quiet")
    assert code == 0, err


def test_all_leaves_out_the_recovery_storage_group(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # why: it holds restored data to look at; a nightly 'backup run --all --kind incremental' failed on it (-560)
    target = str(tmp_path / "backups")
    assert run(capsys, "--home", home, "backup", "run", "--all", "--kind", "full", "--to", target, "--quiet")[0] == 0
    args = ("--home", home, "restore", "run", "--from", target, "--into-recovery-group", "--quiet")
    assert run(capsys, *args)[0] == 0
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--all", "--kind", "incremental", "--to", target)
    assert code == 0, err
    assert "note: 'Recovery Storage Group' is not in --all (name it with --sg to back it up)" in err
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--sg", "Recovery Storage Group", "--kind", "full")
    assert code == 0, err  # named, it is backed up
