"""``shadowstore workload run|check``."""

from __future__ import annotations

import os

import pytest

from shadowstore.home import ServerHome
from shadowstore.tools import workload
from tests.cli.clirun import run, run_json


@pytest.fixture
def home_dir(tmp_path: os.PathLike[str]) -> str:
    path = os.path.join(tmp_path, "home")
    ServerHome.init(path, log_file_size=64 * 1024)
    return path


def test_run_prints_each_commit_and_check_passes(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--home", home_dir, "workload", "run", "--txns", "25", "--seed", "3", "--threads", "3")
    assert code == 0
    committed = sorted(int(line.split()[1]) for line in out.splitlines())
    assert committed == list(range(1, 26))
    code, data = run_json(capsys, "--home", home_dir, "workload", "check", "--seed", "3", "--committed", "25", "--json")
    assert code == 0
    assert data["ok"] is True
    assert data["present"] == 25


def test_seeds_coexist_and_are_checked_alone(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "10", "--seed", "1")[0] == 0
    assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "7", "--seed", "2")[0] == 0
    assert run(capsys, "--home", home_dir, "workload", "check", "--seed", "1", "--committed", "10")[0] == 0
    code, out, _ = run(capsys, "--home", home_dir, "workload", "check", "--seed", "2", "--committed", "5")
    assert code == 0
    assert "2 later transaction(s) complete" in out


def test_check_names_a_missing_transaction(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "5", "--seed", "4")[0] == 0
    code, _out, err = run(capsys, "--home", home_dir, "workload", "check", "--seed", "4", "--committed", "6")
    assert code == 30
    assert "transaction 6 (committed): missing" in err


def test_check_names_a_partial_and_a_corrupted_transaction(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "40", "--seed", "5")[0] == 0
    partial = next(n for n in range(1, 41) if workload.keys_in(5, n) > 1)
    home = ServerHome.open(home_dir)
    sg = home.storage_group()
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.delete(workload.TABLE, workload.key_for(5, partial, 1))
        tx.put(workload.TABLE, workload.key_for(5, 40, 0), b"wrong bytes")
    sg.dismount()
    code, _out, err = run(capsys, "--home", home_dir, "workload", "check", "--seed", "5", "--committed", "30")
    assert code == 30
    if partial <= 30:
        assert f"transaction {partial} (committed): has keys" in err
    else:
        assert f"transaction {partial} (beyond 30): present in part" in err
    assert "transaction 40 (beyond 30): present in part: key 0 has 11 bytes" in err


def test_bad_arguments(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--home", home_dir, "workload", "run", "--txns", "5", "--seed", "1", "--threads", "0")
    assert code == 3
    assert "--threads >= 1" in err
    code, _out, err = run(capsys, "--home", home_dir, "workload", "run", "--txns", "5")
    assert code == 3
    assert "Missing option '--seed'" in err
