"""``workload check`` names the option that does not match what the store holds before it blames the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.clirun import run


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "home")
    assert run(capsys, "--home", path, "init")[0] == 0
    args = ("--home", path, "workload", "run", "--txns", "20", "--seed", "7", "--value-size", "300")
    assert run(capsys, *args)[0] == 0
    return path


def check(capsys: pytest.CaptureFixture[str], home: str, *args: str) -> tuple[int, str]:
    code, _out, err = run(capsys, "--home", home, "workload", "check", *args)
    return code, err


def test_a_wrong_value_size_is_named(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = check(capsys, home, "--seed", "7", "--committed", "20")
    assert code != 0
    assert "the workload was run with --value-size 300, not 100" in err
    assert "lost or tore" not in err
    assert check(capsys, home, "--seed", "7", "--committed", "20", "--value-size", "300")[0] == 0


def test_a_wrong_seed_is_named(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = check(capsys, home, "--seed", "8", "--committed", "20", "--value-size", "300")
    assert code != 0
    assert "holds no transaction of seed 8 (seeds it holds: 7)" in err


def test_too_low_a_committed_count_is_named(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = check(capsys, home, "--seed", "7", "--committed", "15", "--value-size", "300", "--exact")
    assert code != 0
    assert "more were committed, or --committed is too low" in err
