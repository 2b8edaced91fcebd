"""The shared-target torture in short (tests/backup/shared_torture.py): two server homes back up into one target,
prunes run between and during their backups, and backups and prunes are killed with SIGKILL at random moments;
after each round every home's newest set and an older one restore into its recovery storage group with its own
data only, and one home is restored in place. A few rounds on a local target and on S3 (the moto server); the
acceptance run of 50 rounds on each is ``python -m tests.backup.shared_torture_long``. SHADOWSTORE_TORTURE_SEED
replays a printed seed; SHADOWSTORE_SHARED_TORTURE_ROUNDS sets the number of rounds.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.backup.shared_torture import IN_PLACE_EVERY, SEED, run_shared_torture
from tests.s3server import S3Server

ROUNDS = int(os.environ.get("SHADOWSTORE_SHARED_TORTURE_ROUNDS", 2 * IN_PLACE_EVERY))  # each home restored in place


def torture_seed() -> int:
    return int(os.environ.get("SHADOWSTORE_TORTURE_SEED", SEED))


def run_and_assert(folder: Path, url: str) -> None:
    lines: list[str] = []
    summary = run_shared_torture(folder, url, ROUNDS, torture_seed(), say=lines.append)
    report = "\n".join([*lines, *summary.problems, f"(homes and transcript.txt in {folder})"])
    assert not summary.problems, report
    assert summary.rounds == ROUNDS, report
    assert summary.restores >= 2 * ROUNDS, report
    assert summary.in_place == ROUNDS // IN_PLACE_EVERY, report
    assert summary.kills, report  # why: the seeded draws kill in 3/4 of the rounds; none means none was aimed


@pytest.mark.slow
def test_two_homes_share_a_local_target_while_prunes_and_kills_run(tmp_path: Path) -> None:
    run_and_assert(tmp_path, str(tmp_path / "target"))


@pytest.mark.slow
def test_two_homes_share_an_s3_target_while_prunes_and_kills_run(tmp_path: Path, s3_server: S3Server) -> None:
    run_and_assert(tmp_path, f"s3://{s3_server.bucket}/{uuid.uuid4().hex}/target")
