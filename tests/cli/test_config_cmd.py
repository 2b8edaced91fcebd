"""``shadowstore config get|set``: the home's settings, checked when they are set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shadowstore.home import ServerHome
from tests.cli.clirun import run, run_json


@pytest.fixture
def home(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> str:
    path = os.path.join(tmp_path, "home")
    code, _out, err = run(capsys, "--home", path, "init")
    assert code == 0, err
    return path


def test_a_relative_backup_target_is_inside_the_home_and_backups_go_there(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run(capsys, "--home", home, "config", "set", "backup.target", "elsewhere")
    assert (code, out) == (0, "backup.target = elsewhere\n")
    code, value = run_json(capsys, "--home", home, "config", "get", "backup.target", "--json")
    assert (code, value) == (0, {"backup.target": "elsewhere"})
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--all", "--kind", "full", "--quiet")
    assert code == 0, err
    assert os.listdir(os.path.join(home, "elsewhere", ServerHome.open(home).home_id, "First Storage Group"))
    assert not os.path.exists(os.path.join(home, "backups"))


def test_a_target_that_can_never_work_is_refused_when_it_is_set(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "--home", home, "config", "set", "backup.target", "/srv/backups")
    code, _out, err = run(capsys, "--home", home, "config", "set", "backup.target", "nowhere://bucket")
    assert code == 3
    assert "supported are a directory and s3://" in err
    code, _out, err = run(capsys, "--home", home, "config", "set", "backup.target", "memory://kept")
    assert code == 3
    assert "a memory:// target is gone when this command exits" in err
    code, out, _err = run(capsys, "--home", home, "config", "get", "backup.target")
    assert (code, out) == (0, "/srv/backups\n")  # unchanged


def test_a_backup_into_memory_is_refused_before_it_truncates_a_log(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # why: the set would be gone with the command, and a full backup truncates the logs it copied
    code, _out, err = run(capsys, "--home", home, "workload", "run", "--txns", "300", "--seed", "1")
    assert code == 0, err
    log_dir = os.path.join(home, "First Storage Group")
    logs = sorted(name for name in os.listdir(log_dir) if name.endswith(".log"))
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--all", "--kind", "full", "--to", "memory://gone")
    assert code == 3
    assert "--to 'memory://gone': a memory:// target is gone when this command exits" in err
    assert "hint: give a directory or an s3://bucket/prefix URL" in err
    assert sorted(name for name in os.listdir(log_dir) if name.endswith(".log")) == logs


def test_unknown_and_unset_settings_are_named(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--home", home, "config", "set", "backup.colour", "blue")
    assert code == 3
    assert "unknown setting 'backup.colour'; settings: backup.target" in err
    code, out, _err = run(capsys, "--home", home, "config", "get", "backup.target")
    assert (code, out) == (0, "backups\n")  # a new home backs up into <home>/backups
    code, _out, err = run(capsys, "--home", home, "config", "get", "backup.colour")
    assert code != 0
    assert "setting 'backup.colour' is not set" in err


def test_the_transaction_timeout_is_set_checked_and_used_by_the_engine(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run(capsys, "--home", home, "config", "set", "engine.transaction_timeout", "90")
    assert (code, out) == (0, "engine.transaction_timeout = 90\n")
    assert ServerHome.open(home).storage_group().policy.transaction_timeout == 90.0
    for bad in ("soon", "0", "-5", "inf"):
        code, _out, err = run(capsys, "--home", home, "config", "set", "--", "engine.transaction_timeout", bad)
        assert code == 3, bad
        assert "engine.transaction_timeout must be" in err
    assert ServerHome.open(home).storage_group().policy.transaction_timeout == 90.0  # unchanged


def test_set_answers_in_json_with_the_value_stored(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, value = run_json(capsys, "--home", home, "config", "set", "backup.lease_seconds", "120", "--json")
    assert (code, value) == (0, {"backup.lease_seconds": 120.0})
    code, value = run_json(capsys, "--home", home, "config", "set", "backup.max_rate", "auto", "--json")
    assert (code, value) == (0, {"backup.max_rate": "auto"})


def test_list_names_every_setting_with_its_value_or_none(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "--home", home, "config", "set", "vss.freeze_seconds", "20")
    code, rows = run_json(capsys, "--home", home, "config", "list", "--json")
    assert code == 0
    values = {row["key"]: row["value"] for row in rows}
    assert values["vss.freeze_seconds"] == 20.0
    assert values["backup.target"] == "backups"
    assert values["backup.lease_seconds"] is None
    assert all(row["meaning"] for row in rows)
    code, out, _err = run(capsys, "--home", home, "config", "list")
    assert code == 0
    assert "vss.freeze_seconds = 20.0\n" in out
    assert "backup.lease_seconds = (not set)\n    seconds a running backup's lease" in out
    assert "; takes a number of seconds from 1 to 86,400\n" in out  # the range `config set` holds it to
    takes = {row["key"]: row.get("takes") for row in rows}
    assert takes["backup.target"] is None
    assert takes["engine.transaction_timeout"] == "a number of seconds from 1 to 3,600"


@pytest.mark.parametrize(
    ("key", "bad", "allowed"),
    [
        ("backup.lease_seconds", "99999999999999999999", "a number of seconds from 1 to 86,400"),
        ("backup.lease_seconds", "1e300", "a number of seconds from 1 to 86,400"),
        ("backup.lease_seconds", "-1", "a number of seconds from 1 to 86,400"),
        ("engine.transaction_timeout", "3601", "a number of seconds from 1 to 3,600"),
        ("service.session_lease_seconds", "0.5", "a number of seconds from 1 to 3,600"),
        ("vss.freeze_seconds", "nan", "a number of seconds from 1 to 86,400"),
        ("vss.freeze_seconds", "100000", "a number of seconds from 1 to 86,400"),
    ],
)
def test_a_number_out_of_its_range_is_refused_naming_setting_value_and_range(
    home: str, capsys: pytest.CaptureFixture[str], key: str, bad: str, allowed: str
) -> None:
    before = Path(home, "shadowstore.toml").read_bytes()
    code, _out, err = run(capsys, "--home", home, "config", "set", "--", key, bad)
    assert code == 3
    assert f"error: [-1003 JET_errInvalidParameter] {key} must be {allowed}, not {bad!r}\n" in err
    assert "hint: for example " in err
    assert Path(home, "shadowstore.toml").read_bytes() == before  # nothing was stored


def test_the_ends_of_each_range_are_taken(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in (("backup.lease_seconds", "86400"), ("vss.freeze_seconds", "1"), ("backup.max_rate", "0")):
        code, stored = run_json(capsys, "--home", home, "config", "set", key, value, "--json")
        assert (code, stored) == (0, {key: float(value)})


def test_a_hand_edited_number_out_of_range_fails_the_next_command_naming_the_line(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = os.path.join(home, "shadowstore.toml")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("[backup]\n", "[backup]\nlease_seconds = 99999999999999999999\n"))
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--all", "--kind", "full", "--quiet")
    assert code == 3
    assert f"{path}: backup.lease_seconds must be a number of seconds from 1 to 86,400, not 99999999999999999999" in err
    assert f"hint: change lease_seconds in the [backup] table of {path}" in err
    assert "Traceback" not in err
    assert not os.path.exists(os.path.join(home, "backups"))  # refused before anything was written
