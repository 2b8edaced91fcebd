"""Ages on the command line (``quarantine purge --older-than``, ``backup prune --verified-within``): refused
naming the option they were given to, before anything is listed or deleted."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowstore.cli.backup_checks_cmd import MAX_AGE, parse_age
from shadowstore.errors import InvalidParameterError
from tests.cli.clirun import run, run_json

AGE_HINT = "hint: give seconds, or a number with s, m, h or d: 3600, 90m, 12h, 7d"


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "64K")[0] == 0
    return path


@pytest.mark.parametrize("bad", ["xyz", "-1d", "0", "0s", "1w", "", "9" * 400, "5000000000d"])
def test_a_bad_older_than_is_refused_naming_older_than(home: str, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    code, _out, err = run(capsys, "--home", home, "quarantine", "purge", "--older-than", bad)
    assert code == 3
    assert f"--older-than {bad!r} is not an age of more than 0 seconds and at most 100 years\n" in err
    assert AGE_HINT in err
    assert "--verified-within" not in err


def test_a_bad_verified_within_is_refused_naming_verified_within(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    args = ["backup", "prune", "--to", str(target), "--keep-full", "1", "--verified-within", "soon"]
    code, _out, err = run(capsys, "--home", home, *args)
    assert code == 3
    assert "--verified-within 'soon' is not an age" in err
    assert AGE_HINT in err


def test_a_good_older_than_is_taken(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "--home", home, "quarantine", "purge", "--older-than", "30D", "--json")
    assert (code, data["folders"], data["dry_run"]) == (0, [], True)


@pytest.mark.parametrize(
    ("text", "seconds"), [("3600", 3600), ("90m", 5400), (" 12h ", 43200), ("7d", 604800), ("1.5h", 5400)]
)
def test_ages_in_each_unit(text: str, seconds: float) -> None:
    assert parse_age(text, "--older-than") == seconds


def test_the_longest_age_is_a_century() -> None:
    assert parse_age(f"{MAX_AGE}", "--older-than") == MAX_AGE
    with pytest.raises(InvalidParameterError, match="--older-than '36501d'"):
        parse_age("36501d", "--older-than")
