"""``restore abort`` undoes a restore in place killed at any instant: the storage group mounts again with the
data it had before, and nothing is deleted but the restore's own copies. ``quarantine list|purge`` show and,
only when asked, delete what restores set aside."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.backup.test_backup_run import shadowstore_process
from tests.cli.clirun import run, run_json
from tests.restore.test_restore_in_place import holds, workload

SG = "First Storage Group"


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """60 transactions of seed 1 in a full backup, then 90 of seed 2 only in the live logs."""
    path = str(tmp_path / "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "64K")[0] == 0
    workload(capsys, path, 1, 60)
    assert run(capsys, "--home", path, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")[0] == 0
    workload(capsys, path, 2, 90)
    return path


def killed_at(home: str, point: str) -> None:
    args = ["--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", "--stop-at-backup", "--quiet"]
    proc = shadowstore_process(*args, env={"SHADOWSTORE_PAUSE_AT": point})
    assert proc.stderr is not None
    seen = []
    while not seen or seen[-1].startswith("warning:"):  # the restore says what it discards first
        seen.append(proc.stderr.readline().strip())
        if not seen[-1] and proc.poll() is not None:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert seen[-1] == f"paused at {point}", seen


@pytest.mark.parametrize("point", ["restore.fetch.file", "restore.place.store", "restore.place.stream"])
def test_abort_undoes_a_killed_restore_in_place(home: str, capsys: pytest.CaptureFixture[str], point: str) -> None:
    killed_at(home, point)
    code, result = run_json(capsys, "--home", home, "restore", "abort", "--sg", SG, "--json")
    assert code == 0, result
    assert bool(result["moved_back"]) == (point != "restore.fetch.file")
    assert holds(capsys, home, 1, 60)
    assert holds(capsys, home, 2, 90), "the data committed after the backup is back"
    workload(capsys, home, 3, 10)
    assert holds(capsys, home, 3, 10)
    assert not os.path.exists(os.path.join(home, SG, "restore"))
    code, _out, err = run(capsys, "--home", home, "restore", "abort", "--sg", SG)
    assert code == 4
    assert "no restore into" in err
    if point != "restore.fetch.file":  # what the restore had placed is kept, not deleted
        kept = os.listdir(os.path.join(home, SG, "quarantine"))
        assert [name for name in kept if name.startswith("aborted-restore-")], kept
        assert not [name for name in kept if name.startswith("restore-")], "what was put back left no folder"


def test_a_restore_killed_once_every_file_was_placed_is_finished_not_undone(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    killed_at(home, "restore.done")
    code, _out, err = run(capsys, "--home", home, "restore", "abort", "--sg", SG)
    assert code == 23, err
    assert f"the restore into '{SG}' had finished: its stores are in place" in err
    assert f"hint: shadowstore restore finish --sg '{SG}' clears what it left behind" in err
    code, status = run_json(capsys, "--home", home, "status", "--json")
    (left,) = status["unfinished_restores"]  # its copies are still in the staging folder: said, not hidden
    assert (left["phase"], left["resume"], left["undo"]) == ("done", f"shadowstore restore finish --sg '{SG}'", "")
    assert os.listdir(os.path.join(home, SG, "restore"))

    code, out, err = run(capsys, "--home", home, "restore", "finish", "--sg", SG)
    assert code == 0, err
    assert out.startswith("Restored Mailbox Store, Public Folder Store of 'First Storage Group' in place (resumed).")
    assert not os.path.exists(os.path.join(home, SG, "restore"))
    code, status = run_json(capsys, "--home", home, "status", "--json")
    assert status["unfinished_restores"] == []
    code, ended = run_json(capsys, "--home", home, "events", "--id", "1040", "--json")
    assert ended, "where the restore stopped is logged once it is finished"
    assert holds(capsys, home, 1, 60)
    assert not holds(capsys, home, 2, 90), "the restore stopped at the backup, as it was asked to"


@pytest.mark.parametrize("point", ["restore.fetch.file", "restore.place.store"])
def test_doctor_gives_the_command_that_resumes_a_killed_restore_in_its_phase(
    home: str, capsys: pytest.CaptureFixture[str], point: str
) -> None:
    killed_at(home, point)
    code, report = run_json(capsys, "--home", home, "doctor", "--json")
    assert code != 0
    found = [f["hint"] for f in report["findings"] if f["code"] == "restore-unfinished"]
    assert len(found) == 1, report
    code, status = run_json(capsys, "--home", home, "status", "--json")
    resume = status["unfinished_restores"][0]["resume"]
    assert found[0].startswith(f"resume it ('{resume}')")
    assert ("restore finish" in resume) == (point != "restore.fetch.file")  # before placing: 'restore run' again
    assert f"or undo it ('shadowstore restore abort --sg '{SG}'')" in found[0]


def test_quarantine_is_listed_and_purged_only_when_asked(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", "--stop-at-backup", "--quiet")
    assert run(capsys, *args)[0] == 0
    code, listed = run_json(capsys, "--home", home, "quarantine", "list", "--json")
    assert code == 0
    assert len(listed) == 1
    assert listed[0]["sg"] == SG
    assert listed[0]["files"] >= 3
    assert listed[0]["bytes"] > 0
    code, dry = run_json(capsys, "--home", home, "quarantine", "purge", "--json")
    assert code == 0
    assert dry["dry_run"] is True
    assert os.path.exists(listed[0]["path"])
    code, kept = run_json(capsys, "--home", home, "quarantine", "purge", "--older-than", "1d", "--yes", "--json")
    assert (code, kept["folders"]) == (0, [])
    code, done = run_json(capsys, "--home", home, "quarantine", "purge", "--yes", "--json")
    assert code == 0
    assert done["freed_bytes"] == listed[0]["bytes"]
    assert not os.path.exists(listed[0]["path"])
    assert run_json(capsys, "--home", home, "quarantine", "list", "--json")[1] == []


def test_restore_plan_offers_to_resume_or_undo_an_interrupted_restore(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    killed_at(home, "restore.place.store")
    code, out, err = run(capsys, "--home", home, "restore", "plan", "--sg", SG)
    assert code == 0, err
    assert f"An interrupted restore into '{SG}'" in out
    assert f"shadowstore restore finish --sg '{SG}'" in out
    assert f"or undo it: shadowstore restore abort --sg '{SG}'" in out
    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--sg", SG, "--json")
    assert [(r["sg"], r["phase"]) for r in plan["unfinished"]] == [(SG, "place")]


def test_status_shows_what_the_quarantine_holds(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", "--stop-at-backup", "--quiet")
    assert run(capsys, *args)[0] == 0
    code, status = run_json(capsys, "--home", home, "status", "--json")
    assert code == 0
    [group] = status["storage_groups"]
    listed = run_json(capsys, "--home", home, "quarantine", "list", "--json")[1]
    assert group["quarantine"] == {"folders": 1, "bytes": listed[0]["bytes"]}
    code, out, _err = run(capsys, "--home", home, "status")
    assert f"quarantine:        1 folder(s), {listed[0]['bytes']:,} bytes" in out
