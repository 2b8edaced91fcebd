"""A restore in place of a storage group whose log, system and data folders are on three file systems (the
standard Exchange layout): every file moves within its own file system, so placing never meets EXDEV, and the
space check looks at each file system that receives copies. Needs root to mount three tmpfs (CI is root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.clirun import run

SG = "Split Group"
MOUNT_SIZE = "64m"


@pytest.fixture
def volumes(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Three tmpfs file systems: logs, system, data."""
    if os.geteuid() != 0:
        pytest.skip("mounting three tmpfs needs root (mount(2) needs CAP_SYS_ADMIN)")
    made: dict[str, Path] = {}
    try:
        for name in ("logs", "system", "data"):
            point = tmp_path / name
            point.mkdir()
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={MOUNT_SIZE}", "tmpfs", str(point)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
            made[name] = point
        yield made
    finally:
        for point in made.values():
            subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def home(tmp_path: Path, volumes: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "64K")[0] == 0
    args = ["--log-dir", str(volumes["logs"]), "--system-dir", str(volumes["system"])]
    args += ["--data-dir", str(volumes["data"]), "--log-file-size", "64K"]
    code, _out, err = run(capsys, "--home", path, "sg", "create", SG, *args)
    assert code == 0, err
    assert run(capsys, "--home", path, "store", "create", SG, "Mailbox Store")[0] == 0
    assert len({os.stat(p).st_dev for p in volumes.values()}) == 3
    return path


def workload(capsys: pytest.CaptureFixture[str], home: str, seed: int, txns: int) -> None:
    code, _out, err = run(
        capsys, "--home", home, "workload", "run", "--sg", SG, "--txns", str(txns), "--seed", str(seed)
    )
    assert code == 0, err


def holds(capsys: pytest.CaptureFixture[str], home: str, seed: int, committed: int) -> bool:
    args = ("--sg", SG, "--seed", str(seed), "--committed", str(committed), "--exact")
    return run(capsys, "--home", home, "workload", "check", *args)[0] == 0


@pytest.mark.parametrize("stop", [[], ["--stop-at-backup"]], ids=["roll-forward", "stop-at-backup"])
def test_an_in_place_restore_across_three_file_systems_places_everything(
    home: str, volumes: dict[str, Path], capsys: pytest.CaptureFixture[str], stop: list[str]
) -> None:
    workload(capsys, home, 1, 80)
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")
    assert code == 0, err
    workload(capsys, home, 2, 120)
    code, out, err = run(capsys, "--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", *stop)
    assert code == 0, out + err
    assert holds(capsys, home, 1, 80)
    assert holds(capsys, home, 2, 120) == (not stop)
    workload(capsys, home, 3, 10)  # it mounts and commits again
    assert holds(capsys, home, 3, 10)
    for name, point in volumes.items():
        assert not (point / "restore").exists(), f"a staging folder was left on the {name} volume"
    if stop:  # what the restore displaced stayed on each file system it was on
        assert list((volumes["data"] / "quarantine").rglob("*.edb"))
        assert list((volumes["logs"] / "quarantine").rglob("*.log"))
        assert list((volumes["system"] / "quarantine").rglob("*.chk"))


def test_the_room_is_checked_on_the_data_volume_before_anything_moves(
    home: str, volumes: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    workload(capsys, home, 1, 80)
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")
    assert code == 0, err
    free = os.statvfs(volumes["data"]).f_bavail * os.statvfs(volumes["data"]).f_frsize
    (volumes["data"] / "filler").write_bytes(bytes(free - (4 << 20)))  # 4 MiB left: less than the margin
    args = ("--home", home, "restore", "run", "--sg", SG, "--in-place", "--yes", "--quiet")
    code, _out, err = run(capsys, *args)
    assert code == 14, err
    assert f"in {volumes['data'] / 'restore' / 'db'}" in err
    assert "on that file system" in err
    assert not (volumes["data"] / "quarantine").exists(), "nothing was moved"
    assert holds(capsys, home, 1, 80)
