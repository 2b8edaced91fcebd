"""Snapshot backups end to end on the file systems the providers are for: ``init`` on btrfs makes the home and
its storage group subvolumes and ``auto`` then takes the btrfs provider; on XFS it takes reflink. The sets verify
and nothing of the shadow copies is left."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from shadowstore.cli.main import main
from tests.vss.loopfs import LoopFs, btrfs_fs, xfs_fs  # noqa: F401 (fixtures)

SG = "First Storage Group"


def _snapshot_backup(home: str, target: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    args = ["--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--method", "snapshot", "--to", target]
    assert main([*args, "--json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


@pytest.mark.parametrize(("fs_name", "provider"), [("btrfs_fs", "btrfs"), ("xfs_fs", "reflink")])
def test_auto_takes_the_provider_of_the_file_system_and_the_set_verifies(
    request: pytest.FixtureRequest, fs_name: str, provider: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fs: LoopFs = request.getfixturevalue(fs_name)
    home = os.path.join(fs.mountpoint, f"home-{provider}")
    target = os.path.join(fs.mountpoint, f"backups-{provider}")
    assert main(["--home", home, "init"]) == 0
    said = capsys.readouterr().out
    if provider == "btrfs":
        assert "are subvolumes" in said
        for path in (home, os.path.join(home, SG)):
            shown = subprocess.run(["btrfs", "subvolume", "show", path], capture_output=True, text=True)
            assert shown.returncode == 0, shown.stderr
    assert main(["--home", home, "workload", "run", "--txns", "50", "--seed", "3"]) == 0
    capsys.readouterr()
    done = _snapshot_backup(home, target, capsys)
    snapshot = done["snapshot"]
    assert isinstance(snapshot, dict)
    assert snapshot["provider"] == provider, snapshot["why"]
    backup_id = done["backups"][0]["id"]  # type: ignore[index]
    assert main(["--home", home, "backup", "verify", "--to", target, backup_id]) == 0
    leftovers = [
        root for root, dirs, _ in os.walk(fs.mountpoint) for d in dirs if d.startswith(".shadowstore-snapshots")
    ]
    assert all(not os.listdir(os.path.join(root, ".shadowstore-snapshots")) for root in leftovers)
