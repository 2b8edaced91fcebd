"""A restore in place keeps what the logs hold: it rolls forward through the live logs that continue the
backups, as ESE's hard recovery does, and stopping earlier needs a stop option. Before acting, the plan and the
run say what a restore that stops earlier would discard. With a local target and an S3 one (moto)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from shadowstore.engine.logstream import LogSet
from shadowstore.io.fs import OsFileSystem
from tests.cli.clirun import run, run_json

SG = "First Storage Group"


@pytest.fixture(params=["local", "s3"])
def home(request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A home with 50 transactions of seed 1 in a full backup, and 300 of seed 2 committed after it."""
    path = str(tmp_path / "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "64K")[0] == 0
    if request.param == "s3":
        server: Any = request.getfixturevalue("s3_server")
        url = f"s3://{server.bucket}/r-{uuid.uuid4().hex}"
        assert run(capsys, "--home", path, "config", "set", "backup.target", url)[0] == 0
    workload(capsys, path, 1, 50)
    code, _out, err = run(capsys, "--home", path, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")
    assert code == 0, err
    workload(capsys, path, 2, 300)
    return path


def workload(capsys: pytest.CaptureFixture[str], home: str, seed: int, txns: int) -> None:
    code, _out, err = run(capsys, "--home", home, "workload", "run", "--txns", str(txns), "--seed", str(seed))
    assert code == 0, err


def holds(capsys: pytest.CaptureFixture[str], home: str, seed: int, committed: int) -> bool:
    args = ("--home", home, "workload", "check", "--seed", str(seed), "--committed", str(committed), "--exact")
    return run(capsys, *args)[0] == 0


def test_an_in_place_restore_keeps_the_transactions_committed_after_the_backup(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run(capsys, "--home", home, "restore", "plan", "--sg", SG, "--in-place")
    assert code == 0
    assert "then the live logs from generation" in out
    assert "In place, this restore discards no committed transaction." in out
    code, out, err = run(capsys, "--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes")
    assert code == 0, err
    assert "the live current log" in out
    assert holds(capsys, home, 1, 50)
    assert holds(capsys, home, 2, 300)


def test_stopping_at_the_backup_says_what_it_discards_and_keeps_it_in_the_quarantine(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--home", home, "restore", "plan", "--sg", SG, "--in-place", "--stop-at-backup")
    code, plan = run_json(capsys, *args, "--json")
    assert code == 0
    discards = plan["discards"]
    assert discards["transactions"] == 300
    assert discards["other_stream"] is False
    assert discards["generations"][0] == plan["last_gen"] + 1
    assert discards["quarantine"] == os.path.join(home, SG, "quarantine")
    code, out, _err = run(capsys, *args)
    assert "In place, this restore would discard: 300 committed transaction(s) in generations" in out
    code, _out, err = run(
        capsys, "--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", "--stop-at-backup", "--quiet"
    )
    assert code == 0, err
    assert "warning: this restore discards 300 committed transaction(s)" in err
    assert holds(capsys, home, 1, 50)
    assert not holds(capsys, home, 2, 300)
    kept = [p for p in Path(home, SG, "quarantine").rglob("*.log")]
    assert kept, "the discarded logs are kept"


def test_live_logs_that_cannot_continue_the_backups_are_not_thrown_away_without_a_stop_option(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = LogSet.scan(OsFileSystem(), os.path.join(home, SG), "E00")
    newest_archived = max(logs.archived)
    os.unlink(logs.archived[newest_archived])  # a generation after the backup, deleted by hand
    code, _out, err = run(capsys, "--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes")
    assert code != 0
    assert f"generation {newest_archived} is missing from the live log folder" in err
    assert "would discard committed data" in err
    assert "--stop-at-backup" in err
    assert holds(capsys, home, 2, 300), "the refusal changed nothing"


def refused_unless_told(capsys: pytest.CaptureFixture[str], home: str, seed: int) -> None:
    """An in-place restore without a stop option is refused for what it would discard, and changes nothing:
    seed ``seed``'s 300 transactions are still there."""
    code, _out, err = run(capsys, "--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes")
    assert code == 23
    assert "would discard committed data" in err
    assert holds(capsys, home, seed, 300), "the refusal changed nothing"


def plan_after_two_fulls_to(capsys: pytest.CaptureFixture[str], home: str, later: str) -> dict[str, Any]:
    """The in-place plan (from the fixture's target) once two full backups into ``later`` truncated every log
    that holds the live stores' newest changes."""
    for _ in range(2):
        code, _out, err = run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--to", later)
        assert code == 0, err
    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--sg", SG, "--in-place", "--json")
    assert code == 0
    return dict(plan)


def test_changes_whose_logs_a_later_backup_truncated_are_not_thrown_away_without_a_stop_option(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two full backups to another target truncate the generations that hold seed 2: its transactions are then
    # in the live stores and that target, and in no live log. The set of the fixture's target stops before them.
    later = str(tmp_path / "later")
    plan = plan_after_two_fulls_to(capsys, home, later)
    args = ("--home", home, "restore", "plan", "--sg", SG, "--in-place")
    missing, reached = plan["discards"]["unlogged"]
    assert missing == plan["last_gen"] + 1
    assert reached > missing
    assert plan["discards"]["transactions"] == 0  # the live logs left hold none of seed 2
    code, out, _err = run(capsys, *args)
    assert code == 0
    assert f"the live stores' changes after generation {missing - 1}, how many unknown" in out

    refused_unless_told(capsys, home, 2)
    code, _out, err = run(capsys, "--home", home, "restore", "run", "--from", later, "--sg", SG, "--in-place", "--yes")
    assert code == 0, err
    assert holds(capsys, home, 2, 300)


def test_a_restore_in_place_over_a_newer_log_stream_needs_a_stop_option(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = ("--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", "--stop-at-backup", "--quiet")
    assert run(capsys, *first)[0] == 0  # a new stream begins: seed 2 goes to the quarantine
    workload(capsys, home, 3, 40)
    code, _out, err = run(capsys, "--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes")
    assert code != 0
    assert "another log stream" in err
    assert "40 committed transaction(s)" in err
    assert holds(capsys, home, 3, 40)


def test_a_newer_streams_changes_whose_logs_its_backups_truncated_are_not_thrown_away_without_a_stop_option(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A restore in place begins a new stream; its changes (seed 3) are backed up twice to another target, which
    # truncates every log that holds them. Restoring the fixture target's older stream in place discards them.
    first = ("--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", "--stop-at-backup", "--quiet")
    assert run(capsys, *first)[0] == 0
    workload(capsys, home, 3, 300)
    later = str(tmp_path / "later")
    plan = plan_after_two_fulls_to(capsys, home, later)
    args = ("--home", home, "restore", "plan", "--sg", SG, "--in-place")
    assert plan["discards"]["other_stream"]
    assert plan["discards"]["transactions"] == 0  # the live logs left hold none of seed 3
    before, reached = plan["discards"]["unlogged"]
    assert before == plan["discards"]["generations"][0] - 1
    assert reached >= before
    code, out, _err = run(capsys, *args)
    assert code == 0
    assert f"the live stores' changes from the live stream's generations up to {before}, how many unknown" in out

    refused_unless_told(capsys, home, 3)


def test_a_store_outside_the_backup_in_dirty_shutdown_stops_the_restore_before_anything_moves(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--home", home, "store", "create", SG, "Extra Store")[0] == 0
    writer = subprocess.Popen(
        [sys.executable, "-c", DIRTY_WRITER, home], stdout=subprocess.PIPE, text=True
    )  # fmt: skip
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "ready"
    writer.send_signal(signal.SIGKILL)  # the store is left in Dirty Shutdown, its data only in the logs
    writer.wait()
    args = ("--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", "--stop-at-backup", "--quiet")
    code, _out, err = run(capsys, *args)
    assert code != 0
    assert "'Extra Store'" in err
    assert "Dirty Shutdown" in err
    assert f"shadowstore store tables '{SG}' 'Extra Store'" in err
    assert not os.path.exists(os.path.join(home, SG, "quarantine")), "nothing was moved"
    code, _out, err = run(capsys, "--home", home, "store", "tables", SG, "Extra Store", "--json")
    assert code == 0, err
    code, _out, err = run(capsys, *args)
    assert code == 0, err
    code, tables = run_json(capsys, "--home", home, "store", "tables", SG, "Extra Store", "--json")
    assert code == 0, tables
    assert tables == [{"table": "kept", "rows": 1}]


DIRTY_WRITER = """
import sys, time
from shadowstore.home import ServerHome
home = ServerHome.open(sys.argv[1])
sg = home.storage_group("First Storage Group")
sg.mount()
with sg.store("Extra Store").transaction() as tx:
    tx.create_table("kept")
    tx.put("kept", b"key", b"committed after the backup")
print("ready", flush=True)
time.sleep(120)
"""


def test_the_latest_state_is_the_newest_log_streams_even_where_its_generations_number_lower(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The log disk is lost after a chain that reached a high generation; the restore in place to an earlier
    # generation begins a new stream numbered from there, below the old one's end. Its backups are the latest.
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init", "--log-file-size", "64K")[0] == 0
    workload(capsys, home, 1, 100)
    assert run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")[0] == 0
    workload(capsys, home, 2, 2000)
    assert run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "incremental", "--quiet")[0] == 0
    for name in os.listdir(os.path.join(home, SG)):
        if name.startswith("E00") and name.endswith((".log", ".chk")):
            os.unlink(os.path.join(home, SG, name))
    args = ("--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", "--until-gen", "3", "--quiet")
    assert run(capsys, *args)[0] == 0
    workload(capsys, home, 5, 300)
    assert run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")[0] == 0
    workload(capsys, home, 6, 300)
    assert run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "incremental", "--quiet")[0] == 0
    code, sets = run_json(capsys, "--home", home, "backup", "list", "--json")
    assert code == 0
    assert len({s["stream"] for s in sets}) == 2
    assert max(s["last_gen"] for s in sets[2:]) < sets[1]["last_gen"]  # the new stream ends lower

    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--json")
    assert code == 0
    assert [s["id"] for s in plan["sets"]] == [sets[2]["id"], sets[3]["id"]]
    assert run(capsys, "--home", home, "restore", "run", "--into-recovery-group", "--quiet")[0] == 0
    for seed, committed in ((5, 300), (6, 300)):
        args = ("--home", home, "workload", "check", "--sg", "Recovery Storage Group", "--seed", str(seed))
        assert run(capsys, *args, "--committed", str(committed))[0] == 0, f"seed {seed} missing from the restore"


def test_a_stream_begun_while_the_clock_is_behind_still_holds_the_newest_backups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The log disk is lost and the restore in place runs on a machine whose clock is a day behind (a new
    # server, a clock stepped back): the stream it begins must still be the newest, or prune deletes its backups
    # and the latest-state restore brings back the old stream's data.
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init", "--log-file-size", "64K")[0] == 0
    workload(capsys, home, 1, 200)
    assert run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")[0] == 0
    code, (first,) = run_json(capsys, "--home", home, "backup", "list", "--json")
    assert code == 0
    for name in os.listdir(os.path.join(home, SG)):
        if name.startswith("E00") and name.endswith((".log", ".chk")):
            os.unlink(os.path.join(home, SG, name))
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() - 86_400 * 10**9)
    assert run(capsys, "--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", "--quiet")[0] == 0
    workload(capsys, home, 2, 200)
    assert run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")[0] == 0
    code, sets = run_json(capsys, "--home", home, "backup", "list", "--json")
    assert code == 0
    assert len({s["stream"] for s in sets}) == 2
    (oldest,) = [s["id"] for s in sets if s["stream"] == first["stream"]]
    (newest,) = [s["id"] for s in sets if s["stream"] != first["stream"]]

    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--json")
    assert code == 0
    assert [s["id"] for s in plan["sets"]] == [newest]
    prune = ("backup", "prune", "--to", os.path.join(home, "backups"), "--keep-full", "1", "--yes", "--json")
    code, pruned = run_json(capsys, "--home", home, *prune)
    assert code == 0
    assert {s["id"]: s["action"] for s in pruned["sets"]} == {oldest: "delete", newest: "keep"}
    assert run(capsys, "--home", home, "restore", "run", "--into-recovery-group", "--quiet")[0] == 0
    args = ("--home", home, "workload", "check", "--sg", "Recovery Storage Group")
    assert run(capsys, *args, "--seed", "2", "--committed", "200")[0] == 0


def test_a_latest_state_cut_short_by_a_damaged_set_says_which_generations_it_leaves_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init", "--log-file-size", "64K")[0] == 0
    for seed, kind in ((1, "full"), (2, "incremental"), (3, "full"), (4, "incremental")):
        workload(capsys, home, seed, 300)
        assert run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", kind, "--quiet")[0] == 0
    code, sets = run_json(capsys, "--home", home, "backup", "list", "--json")
    assert code == 0
    newest_full = next(Path(home, "backups").rglob(f"{sets[2]['id']}/priv1.edb"))
    data = bytearray(newest_full.read_bytes())
    data[20000] ^= 0xFF  # the newer full's store copy is damaged; the logs it truncated are in no other set
    newest_full.write_bytes(bytes(data))
    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--verify", "--json")
    assert code == 0
    assert plan["last_gen"] < sets[3]["last_gen"]
    # the newer full truncated the generations between the incremental's end and its own start: past that gap
    # the backups hold more of the stream, which no restore from these sets reaches
    expected = f"generations {sets[2]['first_gen']}-{sets[3]['last_gen']} of this log stream, which backups hold past "
    expected += f"a gap: generation {plan['last_gen'] + 1} is in no backup set"
    assert any(why.startswith(expected) for why in plan["ignored"]), plan["ignored"]
