"""``shadowstore doctor``: scenario 6's home (a store in Dirty Shutdown after commits, a log moved away by hand,
a log of another home copied in, a backup killed in its session) reported finding by finding through the CLI;
``--dry-run`` changing nothing; a store whose logs are gone refused, not made clean; an ``sg move`` killed before
and after its switch, reported, refused by ``--fix`` and finished by the command its finding names; a move journal
that cannot be read; and the cure's plan, a pure function, on its own.

Homes are made by real ``shadowstore`` processes (tests/tools/test_torture.py and tests/service/running.py do the
same): a workload killed with SIGKILL after its commits, a backup or a move killed at a crash point
(SHADOWSTORE_PAUSE_AT, io/fs.py). The broken home is made once per module and copied for each test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shadowstore.config import SgConfig
from shadowstore.errors import StorageGroupBusyError
from shadowstore.service.client import TOKEN_VARIABLE, URL_VARIABLE
from shadowstore.tools.doctor import CLEARED, CURED, Diagnosis, Finding, GroupFacts, StoreFacts
from shadowstore.tools.doctorplan import STEPS, plan_cure, refusal, remaining_steps

SG = "First Storage Group"
SHADOWSTORE = os.path.join(os.path.dirname(sys.executable), "shadowstore")
WORKLOAD = ("--seed", "2", "--value-size", "700")
KILLED_AFTER = 400  # workload commits acknowledged before the SIGKILL


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in (URL_VARIABLE, TOKEN_VARIABLE, "SHADOWSTORE_PAUSE_AT")}
    return {**clean, **extra}


def cli(home: Path, *args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``shadowstore --home HOME ARGS`` in a new process."""
    done = subprocess.run(
        [SHADOWSTORE, "--home", str(home), *args], capture_output=True, text=True, env=env(), timeout=timeout
    )
    if ok and done.returncode != 0:
        raise AssertionError(f"shadowstore {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def cli_json(home: Path, *args: str, ok: bool = True) -> Any:
    return json.loads(cli(home, *args, "--json", ok=ok).stdout)


def kill_at(home: Path, point: str, *args: str) -> str:
    """Run ``shadowstore ARGS`` until it pauses at crash point ``point``, then SIGKILL it; its stderr so far."""
    proc = subprocess.Popen(
        [SHADOWSTORE, "--home", str(home), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(SHADOWSTORE_PAUSE_AT=point),
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.strip() == f"paused at {point}":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"it never paused at {point}:\n{''.join(seen)}"
    return "".join(seen)


def kill_after_commits(home: Path, commits: int) -> None:
    proc = subprocess.Popen(
        [SHADOWSTORE, "--home", str(home), "workload", "run", "--txns", "100000", *WORKLOAD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if int(line.split()[1]) >= commits:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""


def log_name(generation: int) -> str:
    return f"E00{generation:05X}.log"


@dataclass
class Broken:
    """Scenario 6's home: what was done to it."""

    home: Path
    folder: Path  # the storage group's folder (logs, checkpoint and stores together)
    gap: int  # the generation moved away by hand
    foreign: int  # the generation of the log copied in from another home
    replay_from: int  # the lowest generation the stores in Dirty Shutdown need


def build_broken(root: Path) -> Broken:
    """A home whose storage group has every trouble of scenario 6, made by real processes."""
    home, other = root / "home", root / "other"
    folder = home / SG
    cli(home, "init", "--log-file-size", "64K")
    cli(home, "workload", "run", "--txns", "300", "--seed", "1", "--value-size", "700")
    cli(home, "backup", "run", "--sg", SG, "--kind", "full")
    # a backup killed in its session: a set without a manifest whose lease is dead, a session description
    kill_at(home, "backup.copy.database", "backup", "run", "--sg", SG, "--kind", "full")
    kill_after_commits(home, KILLED_AFTER)  # the stores in Dirty Shutdown, with commits to replay
    replay_from = min(
        cli_json(home, "eseutil", "/mh", str(folder / f))["replay_start"]["generation"]
        for f in ("priv1.edb", "pub1.edb")
    )
    archived = sorted(int(p.name[3:8], 16) for p in folder.glob("E00?????.log"))
    below = [g for g in archived if archived[0] < g < replay_from]
    assert below, f"no generation between {archived[0]} and the replay start {replay_from} to move away: {archived}"
    gap = below[len(below) // 2]
    (root / "moved-by-hand").mkdir()
    shutil.move(folder / log_name(gap), root / "moved-by-hand" / log_name(gap))  # the famous failure
    cli(other, "init", "--log-file-size", "64K")
    cli(other, "workload", "run", "--txns", "200", "--seed", "3", "--value-size", "700")
    foreign = 2
    assert foreign < archived[0]
    shutil.copy2(other / SG / log_name(foreign), folder / log_name(foreign))
    return Broken(home, folder, gap, foreign, replay_from)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Broken:
    return build_broken(tmp_path_factory.mktemp("doctor-template"))


@pytest.fixture
def broken(template: Broken, tmp_path: Path) -> Broken:
    """A copy of the module's broken home of its own (same folders relative to it)."""
    home = tmp_path / "home"
    shutil.copytree(template.home, home, symlinks=True)
    return Broken(home, home / SG, template.gap, template.foreign, template.replay_from)


def snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root``: relative path -> sha256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def codes(findings: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for f in findings:
        by.setdefault(f["code"], []).append(f)
    return by


# --- reporting ------------------------------------------------------------------------------------------------


def test_doctor_reports_each_trouble_of_scenario_6(broken: Broken) -> None:
    done = cli(broken.home, "doctor", "--json", ok=False)
    assert done.returncode == 1, done.stderr  # warnings: everything here is curable
    report = json.loads(done.stdout)
    assert report["healthy"] is False
    found = codes(report["findings"])
    dirty = {f["where"] for f in found["store-dirty"]}
    assert dirty == {str(broken.folder / "priv1.edb"), str(broken.folder / "pub1.edb")}
    assert all("Log Required" in f["what"] and f["severity"] == "warning" for f in found["store-dirty"])
    (gap,) = found["log-gap"]
    assert gap["where"] == str(broken.folder / log_name(broken.gap))
    assert f"generation {broken.gap} ({log_name(broken.gap)})" in gap["what"]
    (foreign,) = found["log-foreign"]
    assert foreign["where"] == str(broken.folder / log_name(broken.foreign))
    assert "another log stream" in foreign["what"]
    (stale,) = found["session-stale"]
    assert stale["where"] == str(broken.folder / "E00.backup.json")
    assert "shadowstore backup run (pid" in stale["what"]
    (lease,) = found["lease-stale"]
    assert lease["severity"] == "info"
    assert "lease is dead" in lease["what"]
    assert "backup prune" in lease["hint"]
    assert found["lock-stale"][0]["severity"] == "info"
    for finding in report["findings"]:
        assert finding["hint"], finding
        assert set(finding) == {"severity", "code", "what", "where", "hint", "sg", "fixable"}
    assert all(f["fixable"] for f in report["findings"] if f["severity"] == "warning")
    assert "store-unrecoverable" not in found  # the gap is below what the dirty stores replay


def test_doctor_prints_what_where_and_what_to_do(broken: Broken) -> None:
    done = cli(broken.home, "doctor", ok=False)
    assert done.returncode == 1
    assert f"warning log-gap: generation {broken.gap} ({log_name(broken.gap)}) missing" in done.stdout
    assert f"where: {broken.folder / log_name(broken.gap)}" in done.stdout
    assert "do:    put the file(s) back" in done.stdout
    assert "shadowstore doctor --fix --dry-run" in done.stdout


def test_a_healthy_home_exits_0(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli(home, "init", "--log-file-size", "64K")
    cli(home, "workload", "run", "--txns", "20", "--seed", "1")
    done = cli(home, "doctor")
    assert "healthy, nothing found" in done.stdout
    assert cli_json(home, "doctor") == {"home": str(home), "healthy": True, "findings": []}
    fixed = cli(home, "doctor", "--fix")
    assert "Nothing for doctor --fix to do." in fixed.stdout
    assert not (home / "doctor").exists()


def test_a_folder_that_is_gone_is_named_and_its_stores_are_not_called_lost(tmp_path: Path) -> None:
    # as a disk not mounted at boot leaves it: the folder of a storage group's files is not there
    home, folder = tmp_path / "home", tmp_path / "disk2" / "sg2"
    cli(home, "init", "--log-file-size", "64K")
    cli(home, "sg", "create", "Second Storage Group", "--log-dir", str(folder))
    cli(home, "store", "create", "Second Storage Group", "Archive")
    folder.rename(tmp_path / "disk2" / "elsewhere")
    found = cli_json(home, "doctor", ok=False)["findings"]
    assert [(f["code"], f["where"]) for f in found] == [("folder-missing", str(folder))]
    assert "if its disk is not mounted, mount it" in found[0]["hint"]
    (tmp_path / "disk2" / "elsewhere").rename(folder)
    assert cli_json(home, "doctor")["healthy"] is True


def test_dry_run_changes_nothing(broken: Broken) -> None:
    before = snapshot(broken.home)
    done = cli(broken.home, "doctor", "--fix", "--dry-run", "--json", ok=False)
    plan = json.loads(done.stdout)["plan"]
    assert plan["dry_run"] is True
    assert [s["step"] for s in plan["steps"]] == list(STEPS)
    assert "Mailbox Store (replays generations" in plan["steps"][1]["text"]
    text = cli(broken.home, "doctor", "--fix", "--dry-run", ok=False).stdout
    assert "Would do (dry run, nothing changed):" in text
    assert snapshot(broken.home) == before


def test_a_store_whose_logs_are_gone_is_refused_not_made_clean(broken: Broken) -> None:
    needed = broken.folder / log_name(broken.replay_from)
    shutil.move(needed, broken.home.parent / needed.name)
    found = codes(cli_json(broken.home, "doctor", ok=False)["findings"])
    unrecoverable = found["store-unrecoverable"]
    assert {f["severity"] for f in unrecoverable} == {"error"}
    assert f"{log_name(broken.replay_from)} (missing)" in unrecoverable[0]["what"]
    assert "restore" in unrecoverable[0]["hint"]
    before = snapshot(broken.home)
    done = cli(broken.home, "doctor", "--fix", ok=False)
    assert done.returncode == 10, done.stderr  # -543, exit code LOG_MISSING
    assert (
        "error: [-543 JET_errRequiredLogFilesMissing] doctor --fix does not cure 'First Storage Group'" in done.stderr
    )
    assert "hint: put the missing logs back" in done.stderr
    after = snapshot(broken.home)
    changed = {k for k in before if before[k] != after.get(k)} | (after.keys() - before.keys())
    assert {k for k in changed if not k.startswith(("events/", "reports/"))} == set()
    states = {s["name"]: s["state"] for s in cli_json(broken.home, "status")["storage_groups"][0]["stores"]}
    assert set(states.values()) == {"Dirty Shutdown"}


# --- a storage group move cut short -------------------------------------------------------------------------


def home_with_work(root: Path) -> Path:
    home = root / "home"
    cli(home, "init", "--log-file-size", "64K")
    cli(home, "workload", "run", "--txns", "50", "--seed", "1")
    return home


def the_move_finding(home: Path) -> dict[str, Any]:
    """Doctor's only finding, which must be an unfinished move's; exit 2, no traceback."""
    done = cli(home, "doctor", "--json", ok=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (finding,) = json.loads(done.stdout)["findings"]
    assert finding["code"] == "move-unfinished", finding
    assert finding["severity"] == "error"
    assert finding["fixable"] is False
    assert finding["where"] == str(home / "moves" / "E00.json")
    return finding


def files_below(*roots: Path) -> dict[str, str]:
    return {f"{root}/{path}": digest for root in roots if root.exists() for path, digest in snapshot(root).items()}


def fix_refuses_and_changes_nothing(home: Path, dest: Path) -> None:
    before = files_below(home, dest)
    done = cli(home, "doctor", "--fix", ok=False)
    assert done.returncode == 5, done.stderr  # StorageGroupBusyError, as 'sg move' refuses another move meanwhile
    assert f"doctor --fix does not cure {SG!r}: a move of {SG!r}" in done.stderr
    after = files_below(home, dest)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {k for k in changed if "/events/" not in k and "/reports/" not in k} == set()


def run_the_command_in_the_hint(home: Path, finding: dict[str, Any]) -> None:
    """Run, word for word, the command the finding says finishes the move; then doctor finds nothing."""
    command = finding["hint"].split("finish it with: ", 1)[1].split(" (", 1)[0]
    words = shlex.split(command)
    assert words[:3] == ["shadowstore", "--home", str(home)], command
    done = subprocess.run([SHADOWSTORE, *words[1:]], capture_output=True, text=True, env=env(), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "finishing an interrupted move" in done.stdout
    assert json.loads((home / "moves" / "E00.json").read_text())["phase"] == "done"
    assert cli_json(home, "doctor") == {"home": str(home), "healthy": True, "findings": []}  # a done move: nothing
    cli(home, "workload", "check", "--committed", "50", "--seed", "1")


def test_sg_move_killed_after_its_first_copy_is_reported_before_the_switch(tmp_path: Path) -> None:
    home, dest = home_with_work(tmp_path), tmp_path / "disk2" / "sg"
    kill_at(home, "move.copy.after_file", "sg", "move", SG, "--to", str(dest))
    planned = len(json.loads((home / "moves" / "E00.json").read_text())["targets"])
    finding = the_move_finding(home)
    assert finding["what"] == (
        f"a move of {SG!r} (log, system and data folders {home / SG} -> {dest}) is unfinished, before the switch: "
        "the configuration still names the old folders, which the storage group mounts from; the journal records "
        f"1 of its {planned} files copied"
    )
    command = f"shadowstore --home {home} sg move '{SG}' --resume"
    text = cli(home, "doctor", ok=False).stdout
    assert f"error move-unfinished: a move of {SG!r}" in text
    assert f"do:    finish it with: {command} (it refuses while the storage group is mounted)" in text
    fix_refuses_and_changes_nothing(home, dest)
    run_the_command_in_the_hint(home, finding)


def test_sg_move_killed_right_after_the_switch_is_reported_after_it(tmp_path: Path) -> None:
    home, dest = home_with_work(tmp_path), tmp_path / "disk2" / "data"
    kill_at(home, "move.after_switch", "sg", "move", SG, "--data-dir", str(dest))
    finding = the_move_finding(home)
    assert finding["what"] == (
        f"a move of {SG!r} (data folder {home / SG} -> {dest}) is unfinished, after the switch: the configuration "
        "names the new folders already, which hold all its files (2 copied); 2 old file(s) are still in the old "
        "folders, not yet set aside"
    )
    fix_refuses_and_changes_nothing(home, dest)
    run_the_command_in_the_hint(home, finding)
    assert {p.name for p in (home / SG / "quarantine").glob("move-*/*.edb")} == {"priv1.edb", "pub1.edb"}


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ('{"format": "shadowstore-move", "sg": "First St', "the move journal {journal} is damaged"),
        ("[]", "{journal} is not a ShadowStore move journal"),
        (
            '{"format": "shadowstore-move", "phase": "copy"}',
            "the move journal {journal} is damaged: it lacks what a move records (KeyError: 'copied')",
        ),
    ],
    ids=["truncated", "not-a-journal", "fields-missing"],
)
def test_a_move_journal_that_cannot_be_read_is_a_finding_not_a_traceback(
    tmp_path: Path, content: str, what: str
) -> None:
    home = home_with_work(tmp_path)
    journal = home / "moves" / "E00.json"
    journal.parent.mkdir()
    journal.write_text(content)
    done = cli(home, "doctor", "--json", ok=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (finding,) = json.loads(done.stdout)["findings"]
    assert (finding["code"], finding["severity"], finding["where"]) == ("move-journal-damaged", "error", str(journal))
    assert finding["what"] == what.format(journal=journal)
    assert "if no move" in finding["hint"], finding["hint"]
    fix = cli(home, "doctor", "--fix", ok=False)
    assert fix.returncode == 3, fix.stderr  # refused as 'sg move' refuses it: nothing cured on a guess
    assert "Traceback" not in fix.stderr
    assert journal.read_text() == content


# --- the plan, a pure function ----------------------------------------------------------------------------------


def _group(name: str, *found: tuple[str, str]) -> GroupFacts:
    config = SgConfig(name, "E00", "/h/sg", "/h/sg", "/h/sg", 65536, 8192, False, [])
    group = GroupFacts(
        name, config, None, 21, [StoreFacts("Mailbox Store", "/h/sg/priv1.edb", "Dirty Shutdown", True, (18, 21))]
    )
    group.findings = [Finding(severity, code, code, "/h/sg", "hint", name) for severity, code in found]
    return group


def test_the_plan_cures_refuses_and_clears_per_storage_group() -> None:
    diagnosis = Diagnosis(
        "/h",
        [
            _group("A", ("warning", "store-dirty"), ("warning", "log-gap"), ("info", "lock-stale")),
            _group("B", ("warning", "log-foreign"), ("error", "store-unrecoverable")),
            _group("C", ("warning", "session-stale")),
            _group("D", ("info", "lock-stale")),
        ],
    )
    plan = plan_cure(diagnosis, {}, service=False, target="/t")
    assert plan.steps_of("A") == list(STEPS)
    assert plan.steps_of("B") == []
    assert [(sg, [f.code for f in found]) for sg, found in plan.refused] == [("B", ["store-unrecoverable"])]
    assert plan.steps_of("C") == ["clear"]
    assert plan.groups == ["A", "C"]
    assert "replays generations 18-21" in plan.steps[1].text
    with_service = plan_cure(diagnosis, {}, service=True, target="/t")
    assert "through the Information Store service" in with_service.steps[0].text


def test_an_unfinished_move_stops_the_cure_of_its_storage_group_only() -> None:
    diagnosis = Diagnosis(
        "/h",
        [
            _group("A", ("error", "move-unfinished"), ("warning", "store-dirty")),
            _group("B", ("error", "move-journal-damaged")),
            _group("C", ("warning", "store-dirty")),
        ],
    )
    plan = plan_cure(diagnosis, {}, service=False, target="/t")
    assert [(sg, [f.code for f in found]) for sg, found in plan.refused] == [
        ("A", ["move-unfinished"]),
        ("B", ["move-journal-damaged"]),
    ]
    assert plan.groups == ["C"]
    error = refusal(plan)
    assert isinstance(error, StorageGroupBusyError)
    assert error.message == "doctor --fix does not cure 'A': move-unfinished"
    assert error.hint == "hint"


def test_a_pending_journal_is_finished_first_and_dismounts_again_when_needed() -> None:
    diagnosis = Diagnosis("/h", [_group("A", ("error", "store-missing"))])
    journal = {"steps": list(STEPS), "done": ["dismount", "recover"]}
    plan = plan_cure(diagnosis, {"A": journal}, service=True, target="/t")
    assert plan.resumed == ["A"]
    assert plan.steps_of("A") == ["dismount", "quarantine", "clear", "mount", "backup"]
    assert remaining_steps({"steps": list(STEPS), "done": list(STEPS[:4])}) == ["mount", "backup"]
    assert remaining_steps({"steps": ["clear"], "done": []}) == ["clear"]


def test_every_cured_code_is_a_warning_kind_and_none_is_also_blocking() -> None:
    from shadowstore.tools.doctor import BLOCKING

    assert not (CURED | CLEARED) & BLOCKING


def test_a_checkpoint_of_another_stream_or_one_naming_a_log_that_is_gone_is_reported(tmp_path: Path) -> None:
    home, other = tmp_path / "home", tmp_path / "other"
    for each in (home, other):
        cli(each, "init", "--log-file-size", "64K")
    chk = home / SG / "E00.chk"
    first = chk.read_bytes()  # names generation 1
    cli(home, "workload", "run", "--txns", "300", "--seed", "1", "--value-size", "700")
    cli(other, "workload", "run", "--txns", "20", "--seed", "3")
    cli(home, "backup", "run", "--sg", SG, "--kind", "full")  # truncates the logs the stores no longer need
    assert not (home / SG / log_name(1)).exists()
    assert cli(home, "doctor").returncode == 0

    chk.write_bytes((other / SG / "E00.chk").read_bytes())
    found = codes(cli_json(home, "doctor", ok=False)["findings"])
    assert list(found) == ["checkpoint-foreign"], found
    assert "belongs to another log stream" in found["checkpoint-foreign"][0]["what"]

    chk.write_bytes(first)
    found = codes(cli_json(home, "doctor", ok=False)["findings"])
    assert list(found) == ["checkpoint-mismatch"], found
    assert "names generation 1, which is" in found["checkpoint-mismatch"][0]["what"]
    assert found["checkpoint-mismatch"][0]["fixable"] is True


def test_a_shadow_copy_left_by_a_killed_snapshot_backup_is_reported_and_not_deleted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli(home, "init")
    cli(home, "workload", "run", "--txns", "20", "--seed", "1")
    kill_at(home, "vss.provider.after_commit", "backup", "run", "--sg", SG, "--kind", "full", "--method",
            "snapshot", "--provider", "copy", "--to", str(tmp_path / "backups"))  # fmt: skip
    found = codes(cli_json(home, "doctor", ok=False)["findings"])
    assert "snapshot-leftover" in found, found
    leftover = Path(found["snapshot-leftover"][0]["where"])
    assert leftover.is_dir()
    assert "the next shadow-copy backup removes it" in found["snapshot-leftover"][0]["hint"]
    before = snapshot(leftover)
    assert before, "the shadow copy holds the storage group's files"
    cli(home, "doctor", "--fix", ok=False)
    assert snapshot(leftover) == before, "doctor deletes nothing, not even a leftover shadow copy"
