"""What ``status`` reports beyond the configured storage groups (issue 12, deliver 5 and 6): log streams and
stores on disk that the configuration does not name, an unfinished restore with the command that resumes it,
and never Python's ``None`` in its text."""

from __future__ import annotations

import os
import shlex
import signal
import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.backup.test_backup_run import paused_process
from tests.cli.clirun import run, run_json, worked_home

SG = "First Storage Group"
RSG = "Recovery Storage Group"


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    return worked_home(tmp_path, capsys, 30)


def config(home: str) -> Path:
    return Path(home, "shadowstore.toml")


def status(capsys: pytest.CaptureFixture[str], home: str) -> tuple[str, dict[str, object]]:
    code, out, err = run(capsys, "--home", home, "status")
    assert code == 0, err
    code, data = run_json(capsys, "--home", home, "status", "--json")
    assert code == 0, data
    return out, data


# --- found on disk, not in the configuration ------------------------------------------------------------------


def test_a_configuration_cut_down_to_its_version_reports_the_storage_group_on_disk(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config(home).write_text("format_version = 1\n")
    out, data = status(capsys, home)
    assert "names no storage group" in out
    assert f"log stream E00 in {home}/{SG} (E00.log, E00.chk) with the store files" in out
    assert "belongs to no storage group in the configuration" in out
    [found] = data["found_on_disk"]  # type: ignore[misc]
    assert found["kind"] == "log stream"
    assert [s["file"] for s in found["stores"]] == [f"{home}/{SG}/priv1.edb", f"{home}/{SG}/pub1.edb"]
    assert "add its entry back to shadowstore.toml" in found["hint"]
    # the suggested entry is one the administrator can paste back: with it the home is whole again
    config(home).write_text(f"format_version = 1\n\n{found['suggested_config']}")
    [entry] = tomllib.loads(config(home).read_text())["storage_group"]
    assert (entry["name"], entry["log_base"], entry["log_dir"]) == (SG, "E00", SG)
    assert [(s["name"], s["file"], s["dbid"]) for s in entry["store"]] == [
        ("Mailbox Store", "priv1.edb", 1),
        ("Public Folder Store", "pub1.edb", 2),
    ]
    code, out, err = run(capsys, "--home", home, "workload", "check", "--seed", "1", "--committed", "30", "--exact")
    assert code == 0, out + err
    assert status(capsys, home)[1]["found_on_disk"] == []


def test_the_previous_configuration_names_a_storage_group_that_was_cut_out(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--home", home, "sg", "create", "Second Storage Group")[0] == 0
    whole = config(home).read_text()
    assert run(capsys, "--home", home, "config", "set", "engine.transaction_timeout", "30")[0] == 0
    text = config(home).read_text()
    config(home).write_text(text[: text.index("[[storage_group]]")])  # every storage group cut out
    out, data = status(capsys, home)
    found = {f["folder"]: f for f in data["found_on_disk"]}  # type: ignore[attr-defined]
    second = found[f"{home}/Second Storage Group"]
    assert "shadowstore.toml.previous names it storage group 'Second Storage Group'" in second["hint"]
    [entry] = tomllib.loads(second["suggested_config"])["storage_group"]
    assert entry == next(g for g in tomllib.loads(whole)["storage_group"] if g["name"] == "Second Storage Group")
    assert "log stream E01 in" in out


def test_a_store_left_out_of_its_storage_group_is_named(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = tomllib.loads(config(home).read_text())
    data["storage_group"][0]["store"].pop()  # Public Folder Store, pub1.edb
    config(home).write_text(tomli_w.dumps(data))
    out, data = status(capsys, home)
    [found] = data["found_on_disk"]  # type: ignore[misc]
    assert found["kind"] == "store"
    assert found["file"] == f"{home}/{SG}/pub1.edb"
    assert f"belongs to the log stream of storage group '{SG}', but its configuration does not name it" in out
    assert "file = 'pub1.edb' and dbid = 2" in found["hint"]


def test_a_whole_home_reports_nothing_found(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")[0] == 0
    out, data = status(capsys, home)
    assert data["found_on_disk"] == []
    assert data["unfinished_restores"] == []
    assert "Found on disk" not in out
    assert "Unfinished" not in out


# --- no None -------------------------------------------------------------------------------------------------


def _move_aside(home: str, name: str) -> None:
    os.rename(os.path.join(home, SG, name), os.path.join(home, name + ".aside"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda home: config(home).write_text(config(home).read_text().replace('"E00"', '"E01"')),
        lambda home: _move_aside(home, "E00.log"),
        lambda home: _move_aside(home, "E00.chk"),
        lambda home: _move_aside(home, "priv1.edb"),
        lambda home: Path(home, SG, "pub1.edb").write_bytes(b"\0" * 65536),
    ],
    ids=["log-base-changed", "current-log-gone", "checkpoint-gone", "store-gone", "store-zeroed"],
)
def test_status_never_prints_none(home: str, capsys: pytest.CaptureFixture[str], damage: object) -> None:
    damage(home)  # type: ignore[operator]
    code, out, err = run(capsys, "--home", home, "status")
    assert code == 0, err
    assert "None" not in out
    assert f"{SG} [E0" in out


# --- unfinished restores -------------------------------------------------------------------------------------


@pytest.fixture
def backed_up(home: str, capsys: pytest.CaptureFixture[str]) -> str:
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")
    assert code == 0, err
    return home


def kill_restore(home: str, point: str, *args: str) -> None:
    proc = paused_process(point, "--home", home, "restore", "run", "--quiet", *args)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def resume(capsys: pytest.CaptureFixture[str], home: str, command: str) -> None:
    argv = shlex.split(command)
    assert argv[0] == "shadowstore"
    code, out, err = run(capsys, "--home", home, *argv[1:])
    assert code == 0, out + err


def test_a_killed_in_place_restore_is_shown_with_the_command_that_resumes_it(
    backed_up: str, capsys: pytest.CaptureFixture[str]
) -> None:
    home = backed_up
    kill_restore(home, "restore.fetch.file", "--in-place", "--yes")
    out, data = status(capsys, home)
    [r] = data["unfinished_restores"]  # type: ignore[misc]
    assert (r["sg"], r["source_sg"], r["into"], r["phase"]) == (SG, SG, "in-place", "fetch")
    assert r["resume"] == f"shadowstore restore run --sg '{SG}' --in-place --yes"
    assert r["journal"] == f"{home}/{SG}/restore/restore.json"
    assert r["running"] == ""
    assert "Unfinished restores:" in out
    assert f"! restore into '{SG}' (of '{SG}' in place)" in out
    assert "phase fetch: copying the backup files into the staging folder; the storage group is not changed" in out
    assert f"resume: shadowstore restore run --sg '{SG}' --in-place --yes" in out
    assert r["undo"] == f"shadowstore restore abort --sg '{SG}'"
    assert f"or undo it: shadowstore restore abort --sg '{SG}'" in out
    resume(capsys, home, r["resume"])
    assert status(capsys, home)[1]["unfinished_restores"] == []


def test_a_restore_killed_while_placing_files_is_shown_with_restore_finish(
    backed_up: str, capsys: pytest.CaptureFixture[str]
) -> None:
    home = backed_up
    kill_restore(home, "restore.place.store", "--into-recovery-group")
    out, data = status(capsys, home)
    [r] = data["unfinished_restores"]  # type: ignore[misc]
    assert (r["sg"], r["source_sg"], r["phase"]) == (RSG, SG, "place")
    assert r["resume"] == f"shadowstore restore finish --sg '{RSG}'"
    assert r["undo"] == ""  # finishing a restore into the recovery group is always safe
    assert "the storage group does not mount until the restore is finished" in out
    resume(capsys, home, r["resume"])
    assert status(capsys, home)[1]["unfinished_restores"] == []


def test_a_first_restore_into_the_recovery_group_is_found_before_the_configuration_names_it(
    backed_up: str, capsys: pytest.CaptureFixture[str]
) -> None:
    home = backed_up
    kill_restore(home, "restore.fetch.file", "--into-recovery-group")
    assert RSG not in config(home).read_text()
    out, data = status(capsys, home)
    [r] = data["unfinished_restores"]  # type: ignore[misc]
    assert (r["sg"], r["phase"]) == (RSG, "fetch")
    assert r["resume"] == f"shadowstore restore run --sg '{SG}' --into-recovery-group"
    assert data["found_on_disk"] == []  # the staging folder's copies are not storage groups
    resume(capsys, home, r["resume"])
    code, out, err = run(
        capsys, "--home", home, "workload", "check", "--sg", RSG, "--seed", "1", "--committed", "30", "--exact"
    )
    assert code == 0, out + err
