"""Edges of shadow-copy jobs found by probing them as an administrator would: command hooks that take their
time (a pause that outlasts the freeze deadline or the job's lease must not fail or silently spoil the job),
with the writers in the backup program and in the service."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.report import BackupReport
from shadowstore.backup.snapshotrun import back_up_snapshot
from shadowstore.config import save
from shadowstore.home import ServerHome
from shadowstore.vss.hookwriter import hook_writers
from tests.service.running import running_service

SG = "First Storage Group"


def _slow_hook(log: Path, pause_seconds: float) -> dict[str, object]:
    """A hook whose pre_freeze takes ``pause_seconds`` and notes when it began and ended, as does post_thaw."""
    pause = f"echo pause >> {log}; sleep {pause_seconds}; echo paused >> {log}"
    return {
        "name": "slow app",
        "pre_freeze": f"sh -c {shlex.quote(pause)}",
        "post_thaw": f"sh -c {shlex.quote(f'echo resume >> {log}')}",
        "timeout": 30,
    }


def test_a_slow_pre_freeze_does_not_count_against_the_store_freeze_without_the_service(tmp_path: Path) -> None:
    """The hooks pause before the store freezes and resume after it thaws, in the backup program as in the
    service: a pre_freeze that takes longer than vss.freeze_seconds (within its own timeout) holds no commit and
    does not time the store's freeze out (-2402)."""
    log = tmp_path / "hook.log"
    home = ServerHome.init(str(tmp_path / "home"))
    home.config.settings["vss"] = {"freeze_seconds": 1, "hook": [_slow_hook(log, 2)]}
    save(home.fs, home.path, home.config)
    home = ServerHome.open(home.path)
    writers = tuple(hook_writers(home.config.settings))
    run = back_up_snapshot(home, [SG], "full", LocalTarget(str(tmp_path / "b")), provider="copy",
                           report=BackupReport(home.fs, home.path), writers=writers, freeze_seconds=1)  # fmt: skip
    assert not run.failures
    assert [o.sg for o in run.outcomes] == [SG]
    assert log.read_text().split() == ["pause", "paused", "resume"]


def test_a_freeze_step_longer_than_the_lease_does_not_end_the_job_in_the_service(tmp_path: Path) -> None:
    """A requestor that waits for the service's freeze step (hooks pausing) is not a requestor that stopped
    calling: the job must not be ended by its lease meanwhile, nor the hooks resumed before the shadow copy."""
    log = tmp_path / "hook.log"
    home = ServerHome.init(str(tmp_path / "home"))
    home.config.settings["vss"] = {"freeze_seconds": 2, "hook": [_slow_hook(log, 3)]}
    home.config.settings["service"] = {"session_lease_seconds": 2}
    save(home.fs, home.path, home.config)
    target = str(tmp_path / "backups")
    with running_service(home.path) as service:
        done = service.cli("backup", "run", "--sg", SG, "--kind", "full", "--method", "snapshot", "--provider",
                           "copy", "--to", target, "--json", check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert [b["sg"] for b in json.loads(done.stdout)["backups"]] == [SG]
        assert not service.client.get("/v1/events", event_id=1062)  # no lease lapsed
    assert log.read_text().split() == ["pause", "paused", "resume"]
