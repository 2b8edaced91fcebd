"""``shadowstore doctor --fix``: scenario 6 cured end to end through the CLI, without the service and through it,
and the cure killed with SIGKILL at each of its named crash points, then finished by running it again.

Cured means: doctor finds nothing more to warn about; every store is in Clean Shutdown (or mounted by the
service); a new full backup set verifies and the next incremental backup succeeds; every transaction the
killed workload had acknowledged is there; and no file was deleted: every file that existed before is still
in place or in the quarantine folder, byte for byte (the current log and the checkpoint, which soft recovery's
mount writes to, as doctor copied them before recovery).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.service.running import Service, start_service
from tests.tools.test_doctor import (
    KILLED_AFTER,
    SG,
    WORKLOAD,
    Broken,
    broken,  # noqa: F401  (fixture)
    cli,
    cli_json,
    codes,
    env,
    kill_at,
    snapshot,
    template,  # noqa: F401  (fixture)
)

ROOT = Path(__file__).resolve().parents[2]
CRASH_POINTS = [
    "doctor.after_journal",
    "doctor.dismount.before_record",
    "mount.after_attach_record",  # inside soft recovery's mount, in the recover step
    "doctor.recover.before_record",
    "doctor.quarantine.after_file",
    "doctor.quarantine.before_record",
    "doctor.clear.before_record",
    "doctor.mount.before_record",
    "backup.copy.database",  # inside the cure's full backup
    "doctor.backup.before_record",
]
WRITTEN_BY_RECOVERY = ("E00.log", "E00.chk")  # kept as found in quarantine/doctor-*/before-recovery/


def quarantined(home: Path) -> dict[str, set[str]]:
    """File name -> the digests of the files of that name in the doctor quarantine folders."""
    found: dict[str, set[str]] = {}
    for path, digest in snapshot(home).items():
        if "/quarantine/doctor-" in path:
            found.setdefault(os.path.basename(path), set()).add(digest)
    return found


def assert_nothing_deleted(
    before: dict[str, str], home: Path, *, by_name: tuple[str, ...] = (), not_doctors: tuple[str, ...] = ()
) -> None:
    """Every file of ``before`` is in place or in quarantine with the same bytes; stores in place (recovered);
    files named in ``by_name`` (written by another process before doctor ran) in quarantine by name; those in
    ``not_doctors`` another process replaced and removed before doctor ran."""
    after = snapshot(home)
    kept = quarantined(home)
    for path, digest in before.items():
        name = os.path.basename(path)
        if path.startswith(("events/", "reports/")) or name.endswith(".lock") or name in not_doctors:
            continue
        if name.endswith(".edb"):
            assert path in after, f"{path} is gone"
        elif name in by_name:
            assert name in kept, f"{path} is neither in place nor in quarantine"
        else:
            assert after.get(path) == digest or digest in kept.get(name, set()), f"{path} was lost or changed"


def assert_cured(home: Path, *, mounted: bool) -> dict[str, Any]:
    """Doctor finds nothing to warn about, the stores are clean (or mounted), the cure's full backup verifies and
    an incremental builds on it. Returns doctor's report."""
    report = cli_json(home, "doctor")
    assert report["healthy"], report["findings"]
    assert {f["severity"] for f in report["findings"]} <= {"info"}
    group = cli_json(home, "status")["storage_groups"][0]
    assert bool(group["mounted"]) == mounted, group
    if not mounted:
        assert {s["state"] for s in group["stores"]} == {"Clean Shutdown"}
    sets = [s for s in cli_json(home, "backup", "list") if s["state"] == "complete" and s["kind"] == "full"]
    newest = sets[-1]
    assert newest["stream"] != sets[0]["stream"], sets  # a set of the new log stream the cure started
    verified = cli(home, "backup", "verify", newest["id"])
    assert "ok" in verified.stdout.lower(), verified.stdout
    cli(home, "backup", "run", "--sg", SG, "--kind", "incremental")
    return report


def assert_transactions_kept(home: Path) -> None:
    cli(home, "workload", "check", "--committed", str(KILLED_AFTER), *WORKLOAD)


def events(home: Path, event_id: int) -> list[dict[str, Any]]:
    return list(cli_json(home, "events", "--id", str(event_id)))


# --- without the service --------------------------------------------------------------------------------------


def test_fix_cures_scenario_6_without_the_service(broken: Broken) -> None:  # noqa: F811
    before = snapshot(broken.home)
    done = cli(broken.home, "doctor", "--fix", "--json")
    result = json.loads(done.stdout)
    (cured,) = result["cured"]
    assert [s["step"] for s in cured["steps"]] == ["dismount", "recover", "quarantine", "clear", "mount", "backup"]
    assert "soft recovery replayed" in cured["steps"][1]["detail"]
    (folder,) = cured["quarantine"]
    assert Path(folder).parent == broken.folder / "quarantine"
    assert (Path(folder) / f"E00{broken.foreign:05X}.log").is_file()
    assert not (broken.folder / f"E00{broken.foreign:05X}.log").exists()
    assert {f["severity"] for f in result["after"]} <= {"info"}
    report = assert_cured(broken.home, mounted=False)
    assert "lease-stale" in codes(report["findings"])  # doctor deletes nothing: prune removes that set
    assert_nothing_deleted(before, broken.home)
    assert_transactions_kept(broken.home)
    assert len(events(broken.home, 1071)) == 6
    assert events(broken.home, 1072)
    assert events(broken.home, 1074)
    listed = cli_json(broken.home, "quarantine", "list")
    assert folder in {q["path"] for q in listed}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_fix_killed_at_each_step_finishes_when_run_again(broken: Broken, point: str) -> None:  # noqa: F811
    before = snapshot(broken.home)
    kill_at(broken.home, point, "doctor", "--fix")
    journal = broken.home / "doctor" / "E00.json"
    assert journal.is_file()
    status = cli(broken.home, "doctor", ok=False)
    assert status.returncode in (0, 1, 2), status.stderr  # it reads whatever state the kill left
    again = json.loads(cli(broken.home, "doctor", "--fix", "--json").stdout)
    assert [c["resumed"] for c in again["cured"]] == [True]
    assert '"phase": "done"' in journal.read_text()
    assert_cured(broken.home, mounted=False)
    assert_nothing_deleted(before, broken.home)
    assert_transactions_kept(broken.home)


# --- through the service --------------------------------------------------------------------------------------


def orphan_a_session(service: Service, target: Path) -> None:
    """A backup program of the service killed with SIGKILL in its first copy: its session stays until its lease
    lapses (30 s) or the next backup begins (which ends it, its owner being gone), or doctor --fix ends it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.service.stalled_backup", service.home, str(target), "full"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("copying"), line
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_fix_cures_scenario_6_through_the_service(broken: Broken) -> None:  # noqa: F811
    before = snapshot(broken.home)
    service = start_service(str(broken.home))
    try:
        orphan_a_session(service, broken.home / "backups")
        found = codes(cli_json(broken.home, "doctor", ok=False)["findings"])
        assert {"session-orphaned", "log-gap", "log-foreign", "mounted"} <= found.keys(), found.keys()
        done = cli(broken.home, "doctor", "--fix")
        assert "Cured 'First Storage Group'." in done.stdout
        assert "[First Storage Group] step 1/6 dismount: dismounted by the Information Store service" in done.stderr
        assert_cured(broken.home, mounted=True)
        stores = service.client.get("/v1/status")["storage_groups"][0]["stores"]
        assert all(s["mounted"] for s in stores), stores
    finally:
        service.stop()
    # the service mounted the stores at start (soft recovery in its own process) and rolled the log for the
    # killed backup: those files are kept by name. The service also replaced the stale session description with
    # its own session's and removed that when the dismount ended the session (engine/backupslot.py).
    kept_by_name = (*WRITTEN_BY_RECOVERY, "E00tmp.log")
    assert_nothing_deleted(before, broken.home, by_name=kept_by_name, not_doctors=("E00.backup.json",))
    assert_transactions_kept(broken.home)


@pytest.mark.parametrize("point", ["doctor.quarantine.after_file", "doctor.mount.before_record"])
def test_fix_through_the_service_killed_finishes_when_run_again(broken: Broken, point: str) -> None:  # noqa: F811
    service = start_service(str(broken.home))
    try:
        kill_at(broken.home, point, "doctor", "--fix")
        again = cli(broken.home, "doctor", "--fix")
        assert "finished an interrupted cure" in again.stdout
        assert_cured(broken.home, mounted=True)
    finally:
        service.stop()
    assert_transactions_kept(broken.home)


def test_fix_takes_its_full_backup_to_the_target_named(broken: Broken, tmp_path: Path) -> None:  # noqa: F811
    elsewhere = tmp_path / "elsewhere"
    default_sets = len(cli_json(broken.home, "backup", "list"))
    done = json.loads(cli(broken.home, "doctor", "--fix", "--to", str(elsewhere), "--json").stdout)
    (cured,) = done["cured"]
    assert cured["steps"][-1]["step"] == "backup"
    there = cli_json(broken.home, "backup", "list", "--to", str(elsewhere))
    assert [(s["kind"], s["state"]) for s in there] == [("full", "complete")]
    assert len(cli_json(broken.home, "backup", "list")) == default_sets, "nothing went to the default target"
    assert "ok" in cli(broken.home, "backup", "verify", there[0]["id"], "--to", str(elsewhere)).stdout.lower()
