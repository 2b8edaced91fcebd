"""Restore end to end through the command line: DESIGN §11 scenarios 1 and 7, refusals, kill -9 and rerun.

The workload tool gives the model: seed s, transactions 1..n; ``workload check --exact`` proves a restored store
holds exactly transactions 1..n of a seed, transaction for transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal

import pytest

from shadowstore.format.common import crc32c, iso_time
from shadowstore.format.logfile import LOG_HEADER_SIZE, archived_log_name, unpack_log_header
from shadowstore.home import ServerHome
from tests.backup.test_backup_run import grow_logs_below_checkpoint, shadowstore_process
from tests.cli.clirun import run, run_json

SG = "First Storage Group"
RSG = "Recovery Storage Group"


@pytest.fixture
def home(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> str:
    path = os.path.join(tmp_path, "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "64K")[0] == 0
    return path


def workload(capsys: pytest.CaptureFixture[str], home: str, seed: int, txns: int) -> list[int]:
    """Commit ``txns`` transactions of ``seed``; returns their commit times (µs)."""
    code, out, err = run(
        capsys, "--home", home, "workload", "run", "--txns", str(txns), "--seed", str(seed), "--print-times"
    )
    assert code == 0, err
    times = [int(line.split()[2]) for line in out.splitlines() if line.startswith("committed ")]
    assert len(times) == txns
    return times


def backup(capsys: pytest.CaptureFixture[str], home: str, kind: str) -> dict[str, object]:
    code, data = run_json(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", kind, "--json")
    assert code == 0, data
    [one] = data["backups"]
    return one  # type: ignore[no-any-return]


def check(capsys: pytest.CaptureFixture[str], home: str, sg: str, expected: dict[int, int]) -> None:
    """Every seed holds exactly transactions 1..expected[seed]."""
    for seed, committed in expected.items():
        args = ["--home", home, "workload", "check", "--sg", sg, "--seed", str(seed), "--committed", str(committed)]
        code, out, err = run(capsys, *args, "--exact")
        assert code == 0, f"seed {seed} should hold exactly 1..{committed}: {out}{err}"


def restore(capsys: pytest.CaptureFixture[str], home: str, *args: str) -> dict[str, object]:
    code, out, err = run(capsys, "--home", home, "restore", "run", *args, "--json")
    assert code == 0, out + err
    return json.loads(out)  # type: ignore[no-any-return]


def digest_tree(folder: str) -> dict[str, str]:
    """Every file below ``folder`` with its SHA-256 (but the lock file, which names its last holder): what
    'nothing was written' is checked against."""
    result = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.endswith(".lock"):
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                result[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return result


def set_dir(home: str, backup_id: object) -> str:
    return os.path.join(home, "backups", ServerHome.open(home).home_id, SG, str(backup_id))


def rewrite_log_in_set(home: str, backup_id: object, generation: int, data: bytes) -> None:
    """Replace a log of a set and make its manifest agree, as a forger (or a confused admin) would."""
    folder = set_dir(home, backup_id)
    name = archived_log_name("E00", generation)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)
    manifest_path = os.path.join(folder, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    [entry] = [e for e in manifest["files"] if e["name"] == name]
    entry.update(
        size=len(data),
        stored_size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        stored_crc32c=f"{crc32c(data, 0):08x}",
    )
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)


# --- scenario 1 -------------------------------------------------------------------------------------------------


def test_scenario_1_the_full_backup_taken_after_logs_were_deleted_restores_the_committed_data(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workload(capsys, home, 1, 150)
    below = grow_logs_below_checkpoint(home)
    for gen in below[1:3]:
        os.unlink(os.path.join(home, SG, archived_log_name("E00", gen)))
    full = backup(capsys, home, "full")
    assert full["missing_when_truncating"] == below[1:3]
    workload(capsys, home, 2, 80)  # after the backup: in the live logs only
    result = restore(capsys, home, "--into-recovery-group")
    assert result["restore"]["destination_sg"] == RSG
    check(capsys, home, RSG, {1: 150, 2: 0})
    check(capsys, home, SG, {1: 150, 2: 80})  # the live storage group was not touched
    # the restored stores are read through the command line like any other
    code, tables = run_json(capsys, "--home", home, "store", "tables", RSG, "Mailbox Store", "--json")
    assert code == 0
    assert {"table": "t", "rows": 5} in tables
    code, rows = run_json(capsys, "--home", home, "store", "read", RSG, "Mailbox Store", "t", "--json")
    assert code == 0
    assert [(r["key"], r["value"]) for r in rows] == [(f"r{i}", "x" * 1000) for i in range(5)]
    # in place, rolled forward with the live logs, nothing committed is lost
    result = restore(capsys, home, "--in-place", "--yes", "--roll-forward-live")
    assert result["restore"]["new_log_stream"] is False
    check(capsys, home, SG, {1: 150, 2: 80})
    workload(capsys, home, 3, 20)  # and the storage group goes on with its own log stream
    check(capsys, home, SG, {1: 150, 2: 80, 3: 20})


# --- scenario 7 -------------------------------------------------------------------------------------------------


def test_scenario_7_full_and_incrementals_to_the_latest_state_a_time_and_a_generation(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workload(capsys, home, 1, 120)
    backup(capsys, home, "full")
    times2 = workload(capsys, home, 2, 120)
    inc1 = backup(capsys, home, "incremental")
    workload(capsys, home, 3, 120)
    backup(capsys, home, "incremental")
    times4 = workload(capsys, home, 4, 120)
    backup(capsys, home, "incremental")
    workload(capsys, home, 5, 50)  # never backed up

    restore(capsys, home, "--into-recovery-group")
    check(capsys, home, RSG, {1: 120, 2: 120, 3: 120, 4: 120, 5: 0})

    # a time between two commits: exactly the transactions committed at or before it
    for times, seed, n in ((times2, 2, 57), (times4, 4, 99)):
        assert times[n - 1] < times[n]
        at = times[n - 1] + (times[n] - times[n - 1]) // 2
        result = restore(capsys, home, "--into-recovery-group", "--until", str(iso_time(at)))
        expected = {s: (120 if s < seed else n if s == seed else 0) for s in range(1, 6)}
        check(capsys, home, RSG, expected)
        assert result["restore"]["last_commit"] == iso_time(times[n - 1])
    # the exact instant of a commit includes it
    result = restore(capsys, home, "--into-recovery-group", "--until", str(iso_time(times2[9])))
    check(capsys, home, RSG, {1: 120, 2: 10, 3: 0})

    # a generation: the end of the first incremental's logs is the end of seed 2
    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--until-gen", str(inc1["last_gen"]), "--json")
    assert code == 0
    assert [s["kind"] for s in plan["sets"]] == ["full", "incremental"]
    restore(capsys, home, "--into-recovery-group", "--until-gen", str(inc1["last_gen"]))
    check(capsys, home, RSG, {1: 120, 2: 120, 3: 0})
    check(capsys, home, SG, {1: 120, 2: 120, 3: 120, 4: 120, 5: 50})
    for event_id in (204, 205, 300, 302, 1040):
        code, found = run_json(capsys, "--home", home, "events", "--id", str(event_id), "--json")
        assert code == 0
        assert len(found) == 5, f"event {event_id} once per restore"
        if event_id == 204:
            assert "continue rolling forward logfiles in folder (none: this restore does not roll forward)" in str(
                found[-1]["description"]
            )


def test_scenario_7_full_and_differential(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    workload(capsys, home, 1, 100)
    backup(capsys, home, "full")
    workload(capsys, home, 2, 100)
    diff1 = backup(capsys, home, "differential")
    times = workload(capsys, home, 3, 100)
    diff2 = backup(capsys, home, "differential")
    workload(capsys, home, 4, 30)  # only in the live logs
    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--json")
    assert code == 0
    assert [s["kind"] for s in plan["sets"]] == ["full", "differential"]
    assert plan["sets"][1]["id"] == diff2["id"]
    restore(capsys, home, "--into-recovery-group")
    check(capsys, home, RSG, {1: 100, 2: 100, 3: 100})
    at = (times[40] + times[41]) // 2
    restore(capsys, home, "--into-recovery-group", "--until", str(iso_time(at)))
    check(capsys, home, RSG, {1: 100, 2: 100, 3: 41})
    # a generation inside the newest differential: the end of the first one's logs is the end of seed 2
    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--until-gen", str(diff1["last_gen"]), "--json")
    assert code == 0
    assert [s["id"] for s in plan["sets"]][1] == diff2["id"]
    assert plan["last_gen"] == diff1["last_gen"]
    restore(capsys, home, "--into-recovery-group", "--until-gen", str(diff1["last_gen"]))
    check(capsys, home, RSG, {1: 100, 2: 100, 3: 0})
    # and forward through the live logs, beside the live storage group, which is left as it is
    live = digest_tree(os.path.join(home, SG))
    result = restore(capsys, home, "--into-recovery-group", "--roll-forward-live")
    assert result["plan"]["live_from"] == diff2["last_gen"] + 1
    check(capsys, home, RSG, {1: 100, 2: 100, 3: 100, 4: 30})
    assert digest_tree(os.path.join(home, SG)) == live
    code, started = run_json(capsys, "--home", home, "events", "--id", "204", "--json")
    assert f"continue rolling forward logfiles in folder {os.path.join(home, SG)}." in str(started[-1]["description"])


# --- refusals: each named precisely, nothing written to the live storage group ----------------------------------


@pytest.fixture
def chain(home: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    """A full and two incrementals of seeds 1-3."""
    sets = []
    for seed, kind in ((1, "full"), (2, "incremental"), (3, "incremental")):
        workload(capsys, home, seed, 100)
        sets.append(backup(capsys, home, kind))
    return sets


def refused(capsys: pytest.CaptureFixture[str], home: str, *args: str) -> str:
    live = digest_tree(os.path.join(home, SG))
    code, out, err = run(capsys, "--home", home, "restore", "run", "--in-place", "--yes", *args)
    assert code != 0, out
    assert digest_tree(os.path.join(home, SG)) == live, "a refused restore changed the live storage group"
    check(capsys, home, SG, {1: 100, 2: 100, 3: 100})
    return err


def test_a_missing_incremental_is_named(
    home: str, chain: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    os.rename(set_dir(home, chain[1]["id"]), os.path.join(home, "elsewhere"))
    code, _out, err = run(capsys, "--home", home, "restore", "plan")
    assert code == 23
    assert f"builds on {chain[1]['id']}, which is not in the target" in err
    assert "-557" in err
    err = refused(capsys, home)
    assert f"incremental backup {chain[2]['id']} builds on {chain[1]['id']}" in err


def test_a_file_whose_hash_does_not_match_is_named(
    home: str, chain: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    gen = int(str(chain[2]["last_gen"]))
    path = os.path.join(set_dir(home, chain[2]["id"]), archived_log_name("E00", gen))
    with open(path, "r+b") as f:
        f.seek(5000)
        byte = f.read(1)
        f.seek(5000)
        f.write(bytes([byte[0] ^ 0x40]))
    err = refused(capsys, home)
    assert archived_log_name("E00", gen) in err
    assert "SHA-256" in err
    assert not os.path.exists(os.path.join(home, SG, "restore")), "the copies of a refused restore are removed"


def test_a_log_with_a_foreign_signature_is_named(
    home: str, chain: list[dict[str, object]], capsys: pytest.CaptureFixture[str], tmp_path: os.PathLike[str]
) -> None:
    gen = int(str(chain[1]["first_gen"]))
    other = os.path.join(tmp_path, "other")
    assert run(capsys, "--home", other, "init", "--log-file-size", "64K")[0] == 0
    while not os.path.exists(os.path.join(other, SG, archived_log_name("E00", gen))):
        workload(capsys, other, 9, 100)
    with open(os.path.join(other, SG, archived_log_name("E00", gen)), "rb") as f:
        rewrite_log_in_set(home, chain[1]["id"], gen, f.read())
    err = refused(capsys, home)
    assert "-530" in err
    assert archived_log_name("E00", gen) in err
    assert "belongs to another log stream" in err


def log_in_set(home: str, backup: dict[str, object], generation: int) -> bytes:
    with open(os.path.join(set_dir(home, backup["id"]), archived_log_name("E00", generation)), "rb") as f:
        return f.read()


def test_a_log_holding_another_generation_is_named(
    home: str, chain: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    gen = int(str(chain[2]["first_gen"]))
    rewrite_log_in_set(home, chain[2]["id"], gen, log_in_set(home, chain[1], gen - 1))
    err = refused(capsys, home)
    assert "-513" in err
    assert f"should hold generation {gen} but its header says {gen - 1}" in err


def test_a_log_that_does_not_follow_the_one_before_is_named(
    home: str, chain: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    gen = int(str(chain[2]["first_gen"]))
    data = log_in_set(home, chain[2], gen)
    header = unpack_log_header(data[:LOG_HEADER_SIZE])
    forged = header._replace(prev_created_us=header.prev_created_us + 1).pack()
    rewrite_log_in_set(home, chain[2]["id"], gen, forged + data[LOG_HEADER_SIZE:])
    err = refused(capsys, home)
    assert "-515" in err
    assert f"does not follow generation {gen - 1}" in err
    code, found = run_json(capsys, "--home", home, "events", "--id", "434", "--json")
    assert code == 0
    assert found


def test_a_gap_in_the_logs_is_named(
    home: str, chain: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    gen = int(str(chain[2]["first_gen"]))
    folder = set_dir(home, chain[2]["id"])
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    manifest["files"] = [e for e in manifest["files"] if e.get("generation") != gen]  # first_gen still claims it
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    err = refused(capsys, home)
    assert f"generation {gen} is in no backup" in err
    assert "-557" in err


def test_in_place_needs_a_dismounted_storage_group_and_a_yes(
    home: str, chain: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    from shadowstore.home import ServerHome

    code, _out, err = run(capsys, "--home", home, "restore", "run", "--in-place")
    assert code != 0
    assert "add --yes" in err
    h = ServerHome.open(home)
    h.storage_group().mount()
    try:
        code, _out, err = run(capsys, "--home", home, "restore", "run", "--in-place", "--yes")
    finally:
        h.storage_group().dismount()
    assert code == 23
    assert "is in use" in err
    assert "dismount it" in err
    assert not os.path.exists(os.path.join(home, SG, "restore"))  # refused before anything was copied
    check(capsys, home, SG, {1: 100, 2: 100, 3: 100})


# --- kill -9 and run again -------------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["restore.fetch.file", "restore.replay.log", "restore.place.store"])
def test_kill_9_during_a_restore_then_the_same_command_finishes_it(
    home: str, chain: list[dict[str, object]], capsys: pytest.CaptureFixture[str], point: str
) -> None:
    workload(capsys, home, 4, 60)  # not backed up: the in-place restore rolls forward through the live logs
    args = ["--home", home, "restore", "run", "--in-place", "--yes", "--quiet"]
    proc = shadowstore_process(*args, env={"SHADOWSTORE_PAUSE_AT": point})
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.strip() == f"paused at {point}", line + proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, out, err = run(capsys, *args)
    assert code == 0, out + err
    check(capsys, home, SG, {1: 100, 2: 100, 3: 100, 4: 60})
    assert not os.path.exists(os.path.join(home, SG, "restore"))


def test_a_restore_killed_while_placing_files_blocks_mounting_until_restore_finish(
    home: str, chain: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    proc = shadowstore_process(
        "--home", home, "restore", "run", "--in-place", "--yes", env={"SHADOWSTORE_PAUSE_AT": "restore.place.store"}
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().strip() == "paused at restore.place.store"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, _out, err = run(capsys, "--home", home, "workload", "check", "--seed", "1", "--committed", "100")
    assert code == 5
    assert "-506" in err
    assert "interrupted while putting its files in place" in err
    assert f"shadowstore restore finish --sg '{SG}'" in err
    os.rename(os.path.join(home, "backups"), os.path.join(home, "elsewhere"))  # not needed to finish
    code, data = run_json(capsys, "--home", home, "restore", "finish", "--sg", SG, "--json")
    assert code == 0, data
    assert data["finished"] is True
    check(capsys, home, SG, {1: 100, 2: 100, 3: 100})
    code, _out, err = run(capsys, "--home", home, "restore", "finish", "--sg", SG)
    assert code == 4
    assert "no restore into" in err
