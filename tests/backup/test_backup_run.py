"""The backup program end to end through the command line: DESIGN §11 scenarios 1 and 2, kill -9 at fixed
instants, and bad input (unwritable and full targets, a damaged page)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shadowstore.backup import catalog
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.run import back_up
from shadowstore.engine.checkpointfile import read_checkpoint
from shadowstore.engine.logstream import LogSet
from shadowstore.format.common import now_us
from shadowstore.format.logfile import archived_log_name
from shadowstore.home import ServerHome
from tests.cli.clirun import run, run_json

SG = "First Storage Group"


def shadowstore_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    code = "import sys; from shadowstore.cli.main import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def paused_process(point: str, *args: str) -> subprocess.Popen[str]:
    """``shadowstore ARGS`` in another process, returned once it has stopped at crash point ``point``."""
    proc = shadowstore_process(*args, env={"SHADOWSTORE_PAUSE_AT": point})
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.strip() == f"paused at {point}", line
    return proc


@pytest.fixture
def home_dir(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> Iterator[str]:
    path = os.path.join(tmp_path, "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "64K")[0] == 0
    return path


def workload(capsys: pytest.CaptureFixture[str], home: str, seed: int, txns: int = 200) -> None:
    code, _out, err = run(capsys, "--home", home, "workload", "run", "--txns", str(txns), "--seed", str(seed))
    assert code == 0, err


def log_generations(home: str) -> list[int]:
    return sorted(LogSet.scan(_fs(), os.path.join(home, SG), "E00").archived)


def _fs():  # type: ignore[no-untyped-def]
    from shadowstore.io.fs import OsFileSystem

    return OsFileSystem()


def events(capsys: pytest.CaptureFixture[str], home: str, event_id: int) -> list[dict[str, object]]:
    code, data = run_json(capsys, "--home", home, "events", "--id", str(event_id), "--json")
    assert code == 0
    return data  # type: ignore[no-any-return]


def grow_logs_below_checkpoint(home: str, rolls: int = 5) -> list[int]:
    """Mount in-process, commit across several generations, checkpoint; returns generations below it."""
    h = ServerHome.open(home)
    sg = h.storage_group()
    sg.mount()
    for r in range(rolls):
        with sg.store("Mailbox Store").transaction() as tx:
            if not tx.has_table("t"):
                tx.create_table("t")
            tx.put("t", b"r%d" % r, b"x" * 1000)
        sg.log.roll()
        sg.log.flush()
    sg.checkpoint()
    below = [g for g in sorted(LogSet.scan(h.fs, sg.config.log_dir, "E00").archived) if g < sg.checkpoint_position.gen]
    sg.dismount()
    return below


def test_scenario_1_logs_deleted_by_hand_do_not_fail_the_full_backup(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workload(capsys, home_dir, 1)
    below = grow_logs_below_checkpoint(home_dir)
    deleted = below[1:3]
    for gen in deleted:
        os.unlink(os.path.join(home_dir, SG, archived_log_name("E00", gen)))
    code, data = run_json(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full", "--json")
    assert code == 0, data
    [backup] = data["backups"]
    assert backup["missing_when_truncating"] == deleted
    assert set(backup["truncated"]) == set(below) - set(deleted)
    assert not set(below) & set(log_generations(home_dir))
    [event] = events(capsys, home_dir, 227)
    assert "There were 2 log file(s) not found" in str(event["description"])
    with open(data["report"]) as f:
        report = f.read()
    assert "Logs already missing when truncating (not an error): " in report
    assert "Backup completed on" in report
    code, header = run_json(
        capsys, "--home", home_dir, "eseutil", "/mh", os.path.join(home_dir, SG, "priv1.edb"), "--json"
    )
    assert code == 0
    assert header["backups"]["full_prev"] is not None
    code, out, err = run(capsys, "--home", home_dir, "backup", "verify", backup["id"])
    assert code == 0, out + err
    code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")
    assert code == 0, err


def test_scenario_2_needed_logs_deleted_then_full_then_incremental(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workload(capsys, home_dir, 1)
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")[0] == 0
    workload(capsys, home_dir, 2, txns=600)
    code, header = run_json(
        capsys, "--home", home_dir, "eseutil", "/mh", os.path.join(home_dir, SG, "priv1.edb"), "--json"
    )
    needed = header["backups"]["full_prev"]["gen_high"] + 1
    victims = [needed, needed + 1]
    assert set(victims) <= set(log_generations(home_dir))
    for gen in victims:
        os.unlink(os.path.join(home_dir, SG, archived_log_name("E00", gen)))
    code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "incremental")
    assert code == 20
    assert "-569 JET_errMissingFileToBackup" in err
    assert f"{archived_log_name('E00', victims[0])} (generation {victims[0]})" in err
    assert "take a full backup" in err
    code, status = run_json(capsys, "--home", home_dir, "backup", "status", "--json")
    assert status == [], "the failed backup left no session behind"
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")[0] == 0
    workload(capsys, home_dir, 3)
    code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "incremental")
    assert code == 0, err


def test_kinds_and_the_catalog(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    workload(capsys, home_dir, 1)
    for kind, seed in (("full", 2), ("incremental", 3), ("differential", 4), ("copy", 5), ("incremental", 6)):
        workload(capsys, home_dir, seed, txns=50)
        code, _out, err = run(
            capsys, "--home", home_dir, "backup", "run", "--all", "--kind", kind, "--compress", "zstd:5", "--quiet"
        )
        assert code == 0, err
    code, sets = run_json(capsys, "--home", home_dir, "backup", "list", "--json")
    assert [s["kind"] for s in sets] == ["full", "incremental", "differential", "copy", "incremental"]
    assert all(s["complete"] for s in sets)
    assert sets[1]["based_on"] == sets[0]["id"]
    assert sets[2]["based_on"] == sets[0]["id"]
    assert sets[4]["based_on"] == sets[1]["id"]
    assert sets[1]["first_gen"] == sets[0]["last_gen"] + 1
    assert sets[4]["first_gen"] == sets[1]["last_gen"] + 1
    code, out, _ = run(capsys, "--home", home_dir, "backup", "show", sets[0]["id"])
    assert code == 0
    assert "priv1.edb" in out
    assert "full, complete" in out
    # the text list: a header, then one row per set with its columns aligned; an unfinished set says so
    home_id = ServerHome.open(home_dir).home_id
    unfinished = os.path.join(home_dir, "backups", home_id, SG, "20991231T000000.000000Z-full-000000")
    os.makedirs(unfinished)
    with open(os.path.join(unfinished, "priv1.edb"), "wb") as f:
        f.write(b"cut short")
    code, out, _ = run(capsys, "--home", home_dir, "backup", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["HOME", "STORAGE", "GROUP", "ID", "KIND", "STREAM", "LOGS", "BYTES", "STATE"]
    assert all(line.startswith(f"{home_id} (this home) ") for line in lines[1:])
    id_column, state_column = lines[0].index("ID"), lines[0].index("STATE")
    assert [line[id_column:].split()[0] for line in lines[1:]] == [s["id"] for s in sets] + [
        "20991231T000000.000000Z-full-000000"
    ]
    assert len({line.index(SG) for line in lines[1:]}) == 1, "the storage group column is aligned"
    assert f"{sets[0]['first_gen']}-{sets[0]['last_gen']}" in lines[1]
    assert f"{sets[0]['bytes']:,}" in lines[1]
    assert [line[state_column:].split()[0] for line in lines[1:]] == ["complete"] * len(sets) + ["incomplete"]
    assert lines[-1].endswith("incomplete: no manifest: no lease: the backup did not finish")


def test_unwritable_target_fails_cleanly(home_dir: str, capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    workload(capsys, home_dir, 1)
    blocker = os.path.join(str(tmp_path), "a-file")
    with open(blocker, "w") as f:
        f.write("not a directory")
    before = log_generations(home_dir)
    code, _out, err = run(
        capsys,
        "--home",
        home_dir,
        "backup",
        "run",
        "--sg",
        SG,
        "--kind",
        "full",
        "--to",
        os.path.join(blocker, "backups"),
    )
    assert code in (21, 14), err
    assert "a-file" in err
    assert log_generations(home_dir) == before, "nothing was truncated"
    assert run_json(capsys, "--home", home_dir, "backup", "status", "--json")[1] == []
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")[0] == 0


def test_a_damaged_page_fails_the_backup_and_truncates_nothing(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workload(capsys, home_dir, 1, txns=400)
    h = ServerHome.open(home_dir)
    sg = h.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    assert store.header is not None
    used = store.space_map_of(store.header)
    meta_pages = {
        p
        for ref in (store.header.catalog, store.header.space_map)
        for p in range(ref.first_page, ref.first_page + ref.page_count)
    }
    victim = max(p for p in range(2, store.header.page_count) if used[p] and p not in meta_pages)
    sg.dismount()
    with open(store.path, "r+b") as f:
        f.seek(victim * store.page_size + 200)
        byte = f.read(1)
        f.seek(victim * store.page_size + 200)
        f.write(bytes([byte[0] ^ 0xFF]))
    before = log_generations(home_dir)
    code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")
    assert code == 12, err
    assert f"page {victim} at offset {victim * store.page_size}" in err
    report = sorted(os.listdir(os.path.join(home_dir, "reports")))[-1]
    with open(os.path.join(home_dir, "reports", report)) as f:
        text = f.read()
    assert "The 'Information Store' returned '" in text
    assert "from a call to 'read_database()' additional data '-1018 JET_errReadVerifyFailure'" in text
    assert "Backup failed with 1 error(s)" in text
    assert log_generations(home_dir) == before
    assert events(capsys, home_dir, 217)
    code, sets = run_json(capsys, "--home", home_dir, "backup", "list", "--json")
    assert not any(s["complete"] for s in sets), "the failed backup left no complete set"


@pytest.mark.parametrize(
    "point",
    ["backup.copy.database", "backup.copy.log", "backup.before_manifest", "backup.truncate.after_delete"],
)
def test_kill_9_of_backup_run_at_a_fixed_instant(home_dir: str, capsys: pytest.CaptureFixture[str], point: str) -> None:
    workload(capsys, home_dir, 1, txns=300)
    grow_logs_below_checkpoint(home_dir)
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")[0] == 0
    workload(capsys, home_dir, 2, txns=300)
    grow_logs_below_checkpoint(home_dir)
    proc = paused_process(point, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")
    code, status = run_json(capsys, "--home", home_dir, "backup", "status", "--json")
    assert [s["alive"] for s in status] == [True]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    target = LocalTarget(os.path.join(home_dir, "backups"))
    home_id = ServerHome.open(home_dir).home_id
    killed = [s for s in catalog.list_sets(target, SG, home=home_id) if not s.complete]
    if point == "backup.truncate.after_delete":  # the manifest was written: that set is complete
        assert killed == []
    else:  # listed even when its only file is the one being written when it was killed
        assert len(killed) == 1
        partial = killed[0].partial  # the file it was writing when it was killed
        if point == "backup.copy.database":
            assert partial == ["priv1.edb"]
        elif point == "backup.copy.log":
            assert [re.fullmatch(r"E00[0-9A-F]{5}\.log", name) is not None for name in partial] == [True]
        else:
            assert partial == []  # killed between files
    # The next backup succeeds, no partial set is complete, and the newest complete set can roll forward.
    code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "incremental")
    if code != 0:  # a killed full may have truncated logs an incremental needed: it says so; a full works
        assert code == 20
        assert "take a full backup" in err
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")[0] == 0
    sets = catalog.list_sets(target, SG, home=home_id)
    for info in sets:
        if info.complete:
            code, out, err = run(capsys, "--home", home_dir, "backup", "verify", info.backup_id)
            assert code == 0, f"complete set {info.backup_id} does not verify: {out}{err}"
        else:
            assert info.problem
    newest = [s for s in sets if s.complete][-1]
    assert newest.manifest is not None
    on_disk = log_generations(home_dir)
    current = max(on_disk, default=newest.manifest.last_gen) + 1
    assert all(g in on_disk for g in range(newest.manifest.last_gen + 1, current)), "a needed log was deleted"
    assert json.loads(target.read_bytes(f"{newest.folder}/manifest.json"))["kind"] == "full"
    # Prune removes the killed backup, the partial file it was writing included: nothing is left on disk.
    code, out, err = run(capsys, "--home", home_dir, "backup", "prune", "--to", target.url, "--keep-full", "1", "--yes")
    assert code == 0, out + err
    assert all(s.complete for s in catalog.list_sets(target, SG, home=home_id))
    assert not [f for _d, _s, files in os.walk(target.url) for f in files if ".tmp-" in f]
    assert run(capsys, "--home", home_dir, "backup", "verify", newest.backup_id)[0] == 0


def test_an_incremental_after_a_full_killed_once_its_set_was_written_says_what_happened(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workload(capsys, home_dir, 1)
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")[0] == 0
    workload(capsys, home_dir, 2)
    proc = paused_process("backup.after_manifest", "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")
    proc.send_signal(signal.SIGKILL)  # the set is whole in the target; the storage group never recorded it
    proc.wait()
    workload(capsys, home_dir, 3)
    code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "incremental")
    assert code == 20, err
    assert "the storage group never recorded that backup: either its program ended after writing the set" in err
    assert "another target" not in err  # not the guess for a chain broken elsewhere
    assert "take a full backup" in err
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")[0] == 0
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "incremental")[0] == 0


def test_an_incremental_after_a_copy_of_the_home_backed_up_into_the_same_target_names_that_cause(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = str(tmp_path / "shared")
    workload(capsys, home_dir, 1)
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full", "--to", target)[0] == 0
    clone = str(tmp_path / "clone")
    shutil.copytree(home_dir, clone, symlinks=True)  # the same home id, log stream and backup history
    workload(capsys, clone, 2)
    assert run(capsys, "--home", clone, "backup", "run", "--sg", SG, "--kind", "incremental", "--to", target)[0] == 0
    workload(capsys, home_dir, 3)
    code, _out, err = run(
        capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "incremental", "--to", target
    )
    assert code == 20, err
    home_id = ServerHome.open(home_dir).home_id
    assert f"or another copy of this home (home id {home_id}, its folder copied whole) backs up into this target" in err
    assert "take a full backup" in err


def test_full_backups_of_two_copies_of_a_home_into_one_target_are_not_mixed(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both copies go on with the same home id, log stream and generation numbers: their sets would mix, and the
    # latest-state restore of one would take the other's furthest set. The second is refused, and the copy given
    # an id of its own backs up and restores its own data.
    target = str(tmp_path / "shared")
    workload(capsys, home_dir, 1, txns=100)
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full", "--to", target)[0] == 0
    clone = str(tmp_path / "clone")
    shutil.copytree(home_dir, clone, symlinks=True)
    workload(capsys, home_dir, 2, txns=100)
    workload(capsys, clone, 3, txns=100)
    assert run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full", "--to", target)[0] == 0
    before = log_generations(clone)
    code, _out, err = run(capsys, "--home", clone, "backup", "run", "--sg", SG, "--kind", "full", "--to", target)
    assert code == 20, err
    assert "with other bytes" in err
    assert "two copies of this home back up into one target, or this machine was rolled back" in err
    assert "hint: give this home an id of its own ('shadowstore config new-home-id --yes'" in err
    assert set(before) <= set(log_generations(clone)), "no log was truncated"

    code, out, _err = run(capsys, "--home", clone, "config", "new-home-id")
    assert code == 0
    assert "Nothing changed" in out
    code, changed = run_json(capsys, "--home", clone, "config", "new-home-id", "--yes", "--json")
    assert code == 0
    assert changed["old"] == ServerHome.open(home_dir).home_id != changed["new"] == ServerHome.open(clone).home_id
    assert run(capsys, "--home", clone, "backup", "run", "--sg", SG, "--kind", "full", "--to", target)[0] == 0
    for home, own, other in ((home_dir, 2, 3), (clone, 3, 2)):
        args = ("--home", home, "restore", "run", "--from", target, "--into-recovery-group", "--quiet")
        assert run(capsys, *args)[0] == 0
        check = ("--home", home, "workload", "check", "--sg", "Recovery Storage Group", "--committed", "100")
        assert run(capsys, *check, "--seed", str(own))[0] == 0
        assert run(capsys, *check, "--seed", str(other))[0] != 0, "the other copy's data came back"


def test_status_and_abort_of_a_backup_running_in_another_process(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workload(capsys, home_dir, 1, txns=300)
    proc = paused_process("backup.copy.database", "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")
    try:
        code, out, _ = run(capsys, "--home", home_dir, "backup", "status")
        assert code == 0
        assert "full backup, running" in out
        assert f"pid {proc.pid}" in out
        # a second backup is told what runs, not just that something holds the storage group
        code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "incremental")
        assert code == 5, err
        assert "[-505 JET_errBackupInProgress] a backup session is already running" in err
        assert f"pid {proc.pid}" in err
        assert "full backup, started " in err
        assert "backup abort" in err  # the hint says how to end it
        code, result = run_json(capsys, "--home", home_dir, "backup", "abort", "--sg", SG, "--json")
        assert code == 0
        assert result["ended"] is True
        assert any("ended by shadowstore backup abort" in str(e["description"]) for e in events(capsys, home_dir, 215))
        code, status = run_json(capsys, "--home", home_dir, "backup", "status", "--json")
        assert status == []
        code, _out, err = run(capsys, "--home", home_dir, "backup", "abort", "--sg", SG)
        assert code == 20
        assert "-520" in err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")
    assert code == 0, err


def test_a_storage_group_another_process_has_mounted_is_refused_naming_that_process(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = paused_process("log.flush.after_sync", "--home", home_dir, "workload", "run", "--txns", "10", "--seed", "1")
    try:
        code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")
        assert code == 5, err
        assert f"is locked by pid {proc.pid}" in err
        assert "workload run" in err
        assert "-505" not in err  # that process is not backing it up
        code, status = run_json(capsys, "--home", home_dir, "backup", "status", "--json")
        assert status == []  # the refused backup left nothing behind
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full")
    assert code == 0, err


def test_a_forged_manifest_in_the_target_is_never_used(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    workload(capsys, home_dir, 1)
    code, data = run_json(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full", "--json")
    assert code == 0
    target = os.path.join(home_dir, "backups", ServerHome.open(home_dir).home_id, SG)
    [good] = os.listdir(target)
    forged_id = good + "0"  # a well-formed id that sorts after the real one
    os.makedirs(os.path.join(target, forged_id))
    with open(os.path.join(target, good, "manifest.json")) as f:
        manifest = json.load(f)
    manifest["backup_id"] = forged_id
    manifest["files"][0]["name"] = "../../../etc/passwd"
    with open(os.path.join(target, forged_id, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    code, sets = run_json(capsys, "--home", home_dir, "backup", "list", "--json")
    forged = [s for s in sets if s["id"] == forged_id]
    assert forged[0]["complete"] is False
    assert "would leave the backup set" in forged[0]["problem"]
    code, out, err = run(capsys, "--home", home_dir, "backup", "verify", forged_id)
    assert code == 22
    assert "would leave the backup set" in out + err
    workload(capsys, home_dir, 2, txns=50)
    before = log_generations(home_dir)
    code, _out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "incremental")
    assert code == 0, err  # builds on the real full set, not on the forged one
    code, sets = run_json(capsys, "--home", home_dir, "backup", "list", "--json")
    assert sets[-1]["based_on"] == data["backups"][0]["id"]
    assert run_json(capsys, "--home", home_dir, "backup", "status", "--json")[1] == []
    assert set(log_generations(home_dir)) <= set(before) | {max(before, default=0) + 1, max(before, default=0) + 2}


def test_scenario_2_logs_above_the_checkpoint_deleted_while_running(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real workload process; a log recovery needs is deleted under it; the engine notices (events), advances
    the checkpoint; kill -9 right after; every acknowledged transaction is still there."""
    proc = shadowstore_process(
        "--home", home_dir, "workload", "run", "--txns", "10000000", "--seed", "9", "--value-size", "2000"
    )
    committed: set[int] = set()
    reader = threading.Thread(
        target=lambda: [committed.add(int(line.split()[1])) for line in proc.stdout or []], daemon=True
    )
    reader.start()
    try:
        chk = os.path.join(home_dir, SG, "E00.chk")
        deadline = time.monotonic() + 60
        advanced = None
        while advanced is None and time.monotonic() < deadline:
            # The newest closed generation: the checkpoint may still pass it before the engine looks, and
            # then the engine rightly says recovery did not need it; another victim is taken.
            checkpoint_gen = read_checkpoint(_fs(), chk)[0].checkpoint.gen
            above = [g for g in log_generations(home_dir) if g >= checkpoint_gen]
            if not above:
                time.sleep(0.05)  # the workload is still writing its first generations
                continue
            victim = above[-1]
            os.unlink(os.path.join(home_dir, SG, archived_log_name("E00", victim)))
            noticed = []
            while not noticed and time.monotonic() < deadline:
                noticed = [
                    e for e in events(capsys, home_dir, 1011) if f"generation {victim})" in str(e["description"])
                ]
                if not noticed:
                    time.sleep(0.1)  # polled with a deadline: the engine checks every half second
            if not noticed or "Crash recovery needed it" not in str(noticed[0]["description"]):
                continue
            while advanced is None and time.monotonic() < deadline:
                found = [e for e in events(capsys, home_dir, 1012) if f"-{victim}" in str(e["description"])]
                advanced = found[0] if found else None
                if advanced is None:
                    time.sleep(0.1)
        assert advanced is not None, "the engine did not advance the checkpoint past a deleted log it needed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(timeout=10)
    n = 0
    while n + 1 in committed:
        n += 1
    assert n > 0
    code, out, err = run(
        capsys, "--home", home_dir, "workload", "check", "--seed", "9", "--committed", str(n), "--value-size", "2000"
    )
    assert code == 0, out + err


def test_a_set_records_how_new_its_copies_are_and_when_its_logs_end(home_dir: str) -> None:
    """What a restore to a point in time relies on: every commit in a copy is at or before max_commit_us, and
    every commit before logs_end_us is in the set's logs (or an earlier set's)."""
    before = now_us()
    h = ServerHome.open(home_dir)
    sg = h.storage_group()
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.create_table("t")
        tx.put("t", b"k", b"v")
    back_up(h, SG, "full", LocalTarget(os.path.join(home_dir, "backups")))
    sg.dismount()
    after = now_us()
    [info] = catalog.list_sets(LocalTarget(os.path.join(home_dir, "backups")))
    assert info.manifest is not None
    ends = info.manifest.logs_end_us
    copies = [d.max_commit_us for d in info.manifest.databases]
    assert ends is not None
    assert all(c is not None and before <= c <= ends for c in copies)
    assert ends <= after
