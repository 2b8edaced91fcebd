"""``shadowstore sg move``: the way back from a full disk with ShadowStore commands only (issue 12, deliver 3).

The acceptance test fills a real, small tmpfs that holds a storage group's logs and stores until a commit fails
with -529, sees the full backup the old hint advised fail with -1808, moves the storage group to the normal
disk, and then mounts, backs up and finds every acknowledged transaction, with every old file kept in the
quarantine. Then: refusals (mounted by another process, a destination without room) and kill -9 of the move at
each of its instants, after which the storage group mounts and the same command finishes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from shadowstore.errors import LogDiskFullError, ShadowStoreError
from shadowstore.home import ServerHome
from shadowstore.tools import workload
from tests.cli.clirun import run, run_json

SG = "First Storage Group"
FULL_SG = "Full SG"
SG_FILES = (".log", ".chk", ".edb")


@pytest.fixture
def home_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "64K")[0] == 0
    return path


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], str]]:
    """``mount(name, size)``: a tmpfs of ``size`` (``4m``) mounted at ``tmp_path/name`` for the test (needs root;
    skipped, saying why, when it cannot be mounted); unmounted at the end."""
    mounted: list[str] = []

    def mount(name: str, size: str) -> str:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root (mount(2) needs CAP_SYS_ADMIN)")
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(str(point))
        return str(point)

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", point], check=True)


def shadowstore_paused_at(point: str, *args: str) -> subprocess.Popen[str]:
    """``shadowstore ARGS`` in another process, returned once it has stopped at crash point ``point``."""
    code = "import sys; from shadowstore.cli.main import main; sys.exit(main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SHADOWSTORE_PAUSE_AT": point},
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.strip() == f"paused at {point}", line + proc.stderr.read()
    return proc


def kill_9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def sg_files(folder: str) -> set[str]:
    """The storage group files directly in ``folder`` (logs, checkpoint, stores)."""
    return {n for n in os.listdir(folder) if n.endswith(SG_FILES)}


def quarantined(folder: str) -> set[str]:
    root = Path(folder) / "quarantine"
    return {p.name for p in root.glob("move-*/*")} if root.exists() else set()


def configured_log_dir(capsys: pytest.CaptureFixture[str], home: str, name: str) -> str:
    code, status = run_json(capsys, "--home", home, "status", "--json")
    assert code == 0
    return str(next(g for g in status["storage_groups"] if g["name"] == name)["log_dir"])


def fill_until_529(home: str) -> int:
    """Commit the workload (seed 3, 2000-byte values) in this process until a commit fails with -529; returns
    how many were acknowledged. The hint of that -529 must name the command that works."""
    acknowledged: list[int] = []
    server = ServerHome.open(home)
    sg = server.storage_group(FULL_SG)
    sg.mount()
    try:
        with pytest.raises(LogDiskFullError) as refused:
            workload.run(
                sg.store("Mailbox Store"),
                txns=1_000_000,
                seed=3,
                value_size=2000,
                on_commit=lambda n, _t: acknowledged.append(n),
            )
    finally:
        with suppress(ShadowStoreError):  # why: on a full disk the dismount may leave the store dirty (-1808)
            sg.dismount()
    assert refused.value.code == -529
    assert "shadowstore sg move '<storage group>' --to <folder>" in refused.value.hint
    assert acknowledged == list(range(1, len(acknowledged) + 1))
    return len(acknowledged)


# --- the acceptance test ----------------------------------------------------------------------------------------


@pytest.mark.root
def test_a_storage_group_on_a_full_volume_moves_off_it_and_mounts_and_backs_up(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], tmpfs: Callable[[str, str], str]
) -> None:
    full = os.path.join(tmpfs("full", "4m"), "sg")
    code, _out, err = run(
        capsys, "--home", home_dir, "sg", "create", FULL_SG, "--log-dir", full, "--log-file-size", "64K"
    )
    assert code == 0, err
    assert run(capsys, "--home", home_dir, "store", "create", FULL_SG, "Mailbox Store")[0] == 0
    committed = fill_until_529(home_dir)
    assert committed > 50
    target = str(tmp_path / "backups")

    # The way the old hint advised fails: the mount a backup needs cannot grow the store on the full disk.
    code, _out, err = run(
        capsys, "--home", home_dir, "backup", "run", "--sg", FULL_SG, "--kind", "full", "--to", target
    )
    assert code == 14, err
    assert "-1808" in err or "-529" in err
    assert "hint:" in err
    assert "shadowstore sg move" in err
    old_files = sg_files(full)
    assert {"E01.log", "E01.chk", "mailbox_store.edb"} <= old_files

    # The way out, with ShadowStore commands only.
    roomy = str(tmp_path / "roomy" / "sg")
    code, out, err = run(capsys, "--home", home_dir, "sg", "move", FULL_SG, "--to", roomy)
    assert code == 0, err
    assert f"Moved storage group '{FULL_SG}'" in out
    assert f"log folder:     {full} -> {roomy}" in out
    assert configured_log_dir(capsys, home_dir, FULL_SG) == roomy

    code, out, err = run(capsys, "--home", home_dir, "backup", "run", "--sg", FULL_SG, "--kind", "full", "--to", target)
    assert code == 0, err
    code, out, err = run(
        capsys, "--home", home_dir, "workload", "check", "--sg", FULL_SG, "--seed", "3", "--value-size", "2000",
        "--committed", str(committed),
    )  # fmt: skip
    assert code == 0, out + err

    # No file was deleted: every old one is in the quarantine beside where it was.
    assert sg_files(full) == set()
    assert quarantined(full) == old_files
    code, found = run_json(capsys, "--home", home_dir, "events", "--id", "1050", "--json")
    assert code == 0
    assert len(found) == 1
    assert roomy in found[0]["description"]


# --- refusals ---------------------------------------------------------------------------------------------------


def test_a_storage_group_another_process_has_mounted_is_not_moved(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = str(tmp_path / "dest")
    proc = shadowstore_paused_at(
        "log.flush.after_sync", "--home", home_dir, "workload", "run", "--txns", "10", "--seed", "1"
    )
    try:
        code, _out, err = run(capsys, "--home", home_dir, "sg", "move", SG, "--to", dest)
        assert code == 5, err
        assert f"is mounted or in use: {home_dir}/{SG}/E00.lock is locked by pid {proc.pid}" in err
        assert "nothing was copied" in err
        assert not os.path.exists(dest)
    finally:
        kill_9(proc)
    assert configured_log_dir(capsys, home_dir, SG) == os.path.join(home_dir, SG)
    code, _out, err = run(capsys, "--home", home_dir, "sg", "move", SG, "--to", dest)
    assert code == 0, err


@pytest.mark.root
def test_a_destination_without_room_is_refused_before_anything_is_copied(
    home_dir: str, capsys: pytest.CaptureFixture[str], tmpfs: Callable[[str, str], str]
) -> None:
    small = tmpfs("small", "256k")
    code, _out, err = run(capsys, "--home", home_dir, "sg", "move", SG, "--to", os.path.join(small, "sg"))
    assert code == 14, err
    assert "-1808" in err
    assert f"moving the files to {small}/sg needs" in err
    assert "nothing was copied, the storage group still uses its old folders" in err
    assert os.listdir(small) == []
    assert configured_log_dir(capsys, home_dir, SG) == os.path.join(home_dir, SG)
    code, _out, err = run(capsys, "--home", home_dir, "workload", "check", "--seed", "1", "--committed", "0")
    assert code == 0, err


def test_a_dry_run_prints_the_plan_and_moves_nothing(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = str(tmp_path / "dest")
    code, data = run_json(capsys, "--home", home_dir, "sg", "move", SG, "--data-dir", dest, "--dry-run", "--json")
    assert code == 0
    assert data["dry_run"] is True
    assert data["folders"] == {"data_dir": {"from": SG, "to": dest}}
    assert sorted(os.path.basename(f["to"]) for f in data["files"]) == ["priv1.edb", "pub1.edb"]
    assert not os.path.exists(dest)


def test_the_quarantines_of_folders_a_group_moved_away_from_are_still_listed_and_purged(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = os.path.join(home_dir, SG)
    earlier = Path(old, "quarantine", "restore-20261201T000000.000000Z")  # as an earlier restore in place left it
    earlier.mkdir(parents=True)
    (earlier / "E00.chk").write_bytes(b"x" * 100)
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    assert run(capsys, "--home", home_dir, "sg", "move", SG, "--to", first)[0] == 0
    assert run(capsys, "--home", home_dir, "sg", "move", SG, "--to", second)[0] == 0

    code, listed = run_json(capsys, "--home", home_dir, "quarantine", "list", "--sg", SG, "--json")
    assert code == 0
    places = {os.path.relpath(os.path.dirname(os.path.dirname(f["path"])), tmp_path) for f in listed}
    assert places == {os.path.relpath(old, tmp_path), "first"}
    names = sorted(os.path.basename(f["path"]).split("-")[0] for f in listed)
    assert names == ["move", "move", "restore"]
    assert sum(f["files"] for f in listed) == len(quarantined(old)) + len(quarantined(first)) + 1

    code, _out, err = run(capsys, "--home", home_dir, "quarantine", "purge", "--sg", SG, "--yes")
    assert code == 0, err
    assert quarantined(old) == quarantined(first) == set()
    assert not earlier.exists()
    code, listed = run_json(capsys, "--home", home_dir, "quarantine", "list", "--json")
    assert (code, listed) == (0, [])


# --- kill -9 at each instant ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "point",
    [
        "move.copy.before_record",
        "move.copy.after_file",
        "move.before_switch",
        "move.after_switch",
        "move.quarantine.after_file",
    ],
)
def test_kill_9_of_sg_move_leaves_a_mountable_storage_group_that_the_same_command_finishes(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], point: str
) -> None:
    old = os.path.join(home_dir, SG)
    dest = str(tmp_path / "disk2" / "sg")
    assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "200", "--seed", "1")[0] == 0
    before = sg_files(old)
    kill_9(shadowstore_paused_at(point, "--home", home_dir, "sg", "move", SG, "--to", dest))

    switched = point in ("move.after_switch", "move.quarantine.after_file")
    assert configured_log_dir(capsys, home_dir, SG) == (dest if switched else old)
    code, out, err = run(capsys, "--home", home_dir, "workload", "check", "--seed", "1", "--committed", "200")
    assert code == 0, out + err  # it mounts where the configuration says
    seeds = [("1", "200")]
    if not switched:  # work in the old folders before the move is finished: new logs, a truncation
        assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "100", "--seed", "2")[0] == 0
        code, _out, err = run(
            capsys, "--home", home_dir, "backup", "run", "--sg", SG, "--kind", "full", "--to", str(tmp_path / "bk")
        )
        assert code == 0, err
        seeds.append(("2", "100"))
        before = sg_files(old)

    code, data = run_json(capsys, "--home", home_dir, "sg", "move", SG, "--to", dest, "--json")
    assert code == 0, data
    assert data["resumed"] is True
    if point == "move.before_switch":
        assert data["kept_from_earlier_run"] >= 2  # the reserve logs did not change: not copied again
        # every file was copied before the kill; the backup then truncated logs in the old folder: their copies
        # are kept, not deleted (one deleted there by hand would have no other)
        assert data["set_aside"]
        for path in data["set_aside"]:
            assert Path(path).parent.parent == Path(dest) / "quarantine"
            assert re.fullmatch(r"E00[0-9A-F]{5}\.log", Path(path).name)
            assert Path(path).is_file()
    assert configured_log_dir(capsys, home_dir, SG) == dest
    assert sg_files(old) == set()
    assert quarantined(old) >= before
    assert sg_files(dest) >= {n for n in before if n != "E00tmp.log"}
    for seed, count in seeds:
        code, out, err = run(capsys, "--home", home_dir, "workload", "check", "--seed", seed, "--committed", count)
        assert code == 0, out + err
    code, _out, err = run(capsys, "--home", home_dir, "sg", "move", SG, "--resume")
    assert code == 4
    assert "no unfinished move" in err
