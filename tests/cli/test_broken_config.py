"""A configuration you cannot silently break (issue 12, deliver 6): ``events`` and ``eseutil`` work without it,
the previous configuration is kept when it is rewritten, and a storage group whose log base or folders were
edited while it has logs is refused with the value to put back, instead of starting a second log stream."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from shadowstore.errors import ExitCode
from tests.cli.clirun import run, run_json, worked_home

SG = "First Storage Group"


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    return worked_home(tmp_path, capsys, 20)


def config(home: str) -> Path:
    return Path(home, "shadowstore.toml")


def edit(home: str, old: str, new: str) -> None:
    text = config(home).read_text()
    assert old in text
    config(home).write_text(text.replace(old, new))


def workload(capsys: pytest.CaptureFixture[str], home: str) -> tuple[int, str, str]:
    return run(capsys, "--home", home, "workload", "run", "--txns", "5", "--seed", "2")


# --- events and eseutil need no configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    [
        "format_version = 1\n[backup\n",  # not TOML
        'format_version = 1\n[[storage_group]]\nname = "First Storage Group"\n',  # a table cut short
        "format_version = 7\n",  # a version this program does not read
    ],
)
def test_events_are_read_when_the_configuration_is_broken(
    home: str, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    config(home).write_text(broken)
    code, _out, err = run(capsys, "--home", home, "status")
    assert code == ExitCode.USAGE
    assert "'shadowstore events' and 'shadowstore eseutil' work without it" in err
    code, events = run_json(capsys, "--home", home, "events", "--id", "1000", "--json")
    assert code == 0
    assert [e["sg"] for e in events] == [SG]
    code, out, err = run(capsys, "--home", home, "events", "--limit", "1")
    assert code == 0, err
    assert "Event ID:\t1001" in out  # the dismount at the end of the workload


def test_events_of_a_folder_that_is_no_home_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--home", str(tmp_path / "nothing"), "events")
    assert code == ExitCode.NOT_FOUND
    assert "is not a ShadowStore server home (no shadowstore.toml, no events folder)" in err
    assert not (tmp_path / "nothing").exists()


def test_eseutil_on_a_file_needs_no_home(home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config(home).write_text("not toml [\n")
    store = os.path.join(home, SG, "priv1.edb")
    for where in (home, str(tmp_path / "no-such-home")):
        code, out, err = run(capsys, "--home", where, "eseutil", "/mh", store)
        assert code == 0, err
        assert "State: Clean Shutdown" in out
    code, out, err = run(capsys, "--home", home, "eseutil", "/ml", os.path.join(home, SG))
    assert code == 0, err


# --- the previous configuration is kept ----------------------------------------------------------------------


def test_a_rewritten_configuration_keeps_the_previous_one_beside_it(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = config(home).read_text()
    assert run(capsys, "--home", home, "config", "set", "engine.transaction_timeout", "30")[0] == 0
    previous = Path(home, "shadowstore.toml.previous")
    assert previous.read_text() == before
    assert "transaction_timeout = 30" in config(home).read_text()
    assert not [n for n in os.listdir(home) if ".tmp-" in n]  # written through temporary files, none left
    after = config(home).read_text()
    assert run(capsys, "--home", home, "sg", "create", "Second Storage Group")[0] == 0
    assert previous.read_text() == after


def test_the_error_for_a_broken_configuration_names_the_previous_one(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--home", home, "config", "set", "backup.lease_seconds", "900")[0] == 0
    config(home).write_text(config(home).read_text().replace("[backup]", "[backup"))
    code, _out, err = run(capsys, "--home", home, "backup", "list")
    assert code == ExitCode.USAGE
    assert "is not valid TOML" in err
    assert f"compare it with {home}/shadowstore.toml.previous" in err


# --- a changed log base or folder is refused -------------------------------------------------------------------


def test_a_changed_log_base_is_refused_not_started_as_a_second_stream(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(home, 'log_base = "E00"', 'log_base = "E01"')
    code, _out, err = workload(capsys, home)
    assert code == ExitCode.CONFIG_MISMATCH
    assert "the configuration says log base E01" in err
    assert "holds no E01 log and the log stream of E00 (E00.log" in err
    assert 'hint: put log_base = "E00" back' in err
    assert not [n for n in os.listdir(os.path.join(home, SG)) if n.startswith("E01")]
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full")
    assert code == ExitCode.CONFIG_MISMATCH
    code, data = run_json(capsys, "--home", home, "status", "--json")
    assert code == 0
    [mismatch] = data["storage_groups"][0]["config_mismatches"]
    assert 'put log_base = "E00" back' in mismatch["hint"]
    assert data["found_on_disk"] == []  # the mismatch names the E00 stream already, with the right hint
    edit(home, 'log_base = "E01"', 'log_base = "E00"')
    assert workload(capsys, home)[0] == 0
    code, out, err = run(capsys, "--home", home, "workload", "check", "--seed", "1", "--committed", "20", "--exact")
    assert code == 0, out + err


def test_a_changed_log_folder_is_refused_naming_where_the_logs_are(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(home, f'log_dir = "{SG}"', 'log_dir = "logs"')
    code, _out, err = workload(capsys, home)
    assert code == ExitCode.CONFIG_MISMATCH
    assert f"the configuration says its log folder is {home}/logs, which holds no E00 log" in err
    assert f"the log stream its stores belong to is in {home}/{SG}" in err
    assert f'hint: put log_dir = "{SG}" back' in err
    assert not os.path.exists(os.path.join(home, "logs", "E00.log"))


def test_a_changed_system_folder_is_refused(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    edit(home, f'system_dir = "{SG}"', 'system_dir = "system"')
    code, _out, err = workload(capsys, home)
    assert code == ExitCode.CONFIG_MISMATCH
    assert f"the checkpoint of its log stream is {home}/{SG}/E00.chk" in err
    assert f'put system_dir = "{SG}" back' in err


def test_a_changed_data_folder_is_refused_instead_of_a_missing_store(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(home, f'data_dir = "{SG}"', 'data_dir = "data"')
    code, _out, err = workload(capsys, home)
    assert code == ExitCode.CONFIG_MISMATCH, err
    assert f"store 'Mailbox Store' of storage group '{SG}'" in err
    assert f"the store file of this storage group's log stream is {home}/{SG}/priv1.edb" in err
    assert f'put data_dir = "{SG}" back' in err
    assert "restore it from a backup" not in err


def test_logs_moved_out_of_the_home_by_hand_still_start_a_new_stream(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # why: the documented manual cure (stores in Clean Shutdown, every log and the checkpoint moved away) must
    # keep working; only a stream the configuration lost track of inside the home's folders is refused
    aside = tmp_path / "aside"
    aside.mkdir()
    folder = Path(home, SG)
    for name in os.listdir(folder):
        if name.startswith("E00"):
            shutil.move(folder / name, aside / name)
    code, _out, err = workload(capsys, home)
    assert code == 0, err
