"""Backups into every kind of target: s3:// (a real local S3 server, restored from too), memory://, and a full
local disk."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from shadowstore.backup import catalog
from shadowstore.backup.fsspectarget import FsspecTarget
from shadowstore.backup.run import back_up
from shadowstore.engine.logstream import LogSet
from shadowstore.errors import BackupTargetFullError
from shadowstore.home import ServerHome
from shadowstore.tools import workload
from tests.cli.clirun import run, run_json
from tests.s3server import S3Server

SG = "First Storage Group"


@pytest.fixture
def home(tmp_path: os.PathLike[str]) -> ServerHome:
    h = ServerHome.init(os.path.join(tmp_path, "home"), log_file_size=64 * 1024)
    sg = h.storage_group()
    sg.mount()
    workload.run(sg.store("Mailbox Store"), txns=300, seed=1, value_size=300)
    sg.dismount()
    return h


def test_full_and_incremental_into_s3(
    home: ServerHome, s3_server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{s3_server.bucket}/backups-{uuid.uuid4().hex}"
    code, data = run_json(
        capsys,
        "--home",
        home.path,
        "backup",
        "run",
        "--sg",
        SG,
        "--kind",
        "full",
        "--to",
        url,
        "--compress",
        "zstd",
        "--json",
    )
    assert code == 0, data
    sg = home.storage_group()
    sg.mount()
    workload.run(sg.store("Mailbox Store"), txns=100, seed=2)
    sg.dismount()
    code, data = run_json(
        capsys, "--home", home.path, "backup", "run", "--sg", SG, "--kind", "incremental", "--to", url, "--json"
    )
    assert code == 0, data
    code, sets = run_json(capsys, "--home", home.path, "backup", "list", "--to", url, "--json")
    assert [(s["kind"], s["complete"]) for s in sets] == [("full", True), ("incremental", True)]
    keys = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=url.split("/", 3)[3])["Contents"]
    assert any(k["Key"].endswith("/manifest.json") for k in keys)
    # and the sets restore from there: the compressed full and the incremental, every hash checked
    code, out, err = run(capsys, "--home", home.path, "restore", "run", "--from", url, "--into-recovery-group")
    assert code == 0, out + err
    for seed, txns, value_size in ((1, 300, 300), (2, 100, 100)):
        args = ["--sg", "Recovery Storage Group", "--seed", str(seed), "--committed", str(txns)]
        code, out, err = run(
            capsys, "--home", home.path, "workload", "check", *args, "--value-size", str(value_size), "--exact"
        )
        assert code == 0, out + err


def test_backup_into_memory_target(home: ServerHome) -> None:
    target = FsspecTarget(f"memory://bk-{uuid.uuid4().hex}")
    outcome = back_up(home, SG, "full", target, level=3)
    [info] = catalog.list_sets(target, SG, home=home.home_id)
    assert info.complete
    assert info.backup_id == outcome.backup_id
    assert info.manifest is not None
    assert {f.role for f in info.manifest.files} == {"db", "log", "chk"}


def test_full_target_disk_fails_cleanly_and_the_next_backup_works(
    home: ServerHome, small_ext4: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The target is a small ext4 file system on a loop device, nearly full: ENOSPC for real."""
    ballast = os.path.join(small_ext4, "ballast")
    with open(ballast, "wb") as f:
        f.write(b"\0" * (shutil.disk_usage(small_ext4).free - 64 * 1024))
        f.flush()
        os.fsync(f.fileno())
    sg = home.storage_group()
    logs_before = sorted(LogSet.scan(home.fs, sg.config.log_dir, "E00").archived)
    target_dir = os.path.join(small_ext4, "backups")
    code, _out, err = run(
        capsys, "--home", home.path, "backup", "run", "--sg", SG, "--kind", "full", "--to", target_dir
    )
    assert code == BackupTargetFullError.exit_code, err
    assert "no space" in err.lower() or "full" in err.lower()
    assert sorted(LogSet.scan(home.fs, sg.config.log_dir, "E00").archived) == logs_before, "nothing truncated"
    code, status = run_json(capsys, "--home", home.path, "backup", "status", "--json")
    assert status == []
    leftovers = [n for _d, _s, files in os.walk(target_dir) for n in files]
    assert not any(n.endswith("manifest.json") for n in leftovers)
    os.unlink(ballast)
    code, _out, err = run(
        capsys, "--home", home.path, "backup", "run", "--sg", SG, "--kind", "full", "--to", target_dir
    )
    assert code == 0, err
    sets = catalog.list_sets(
        __import__("shadowstore.backup.localtarget", fromlist=["LocalTarget"]).LocalTarget(target_dir),
        SG,
        home=home.home_id,
    )
    assert [s.complete for s in sets][-1] is True
