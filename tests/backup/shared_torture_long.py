"""The acceptance run of the shared-target torture: two server homes backing up into one local target and one
S3 (moto) target, prunes running between and during their backups, random kill -9 of backups and prunes.

    python -m tests.backup.shared_torture_long [--rounds 50] [--targets local,s3] [--seed 20261207]
        [--older-restores 1] [--preload-mb 4] [--folder DIR]

For each target it runs tests/backup/shared_torture.py for ``--rounds`` rounds (each home first commits about
``--preload-mb`` MB of big values, so that copying a store takes a while), printing one line per round and then
a summary line; for s3 it starts a moto server on a free local port first (the AWS variables and
SHADOWSTORE_S3_ENDPOINT point at it, for this process and the ones it starts). Exits 1 on any problem, keeping
the folder (homes, local target, transcript.txt); otherwise removes it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3

from shadowstore.backup.fsspectarget import ENDPOINT_VARIABLE
from tests.backup.shared_torture import SEED, run_shared_torture
from tests.s3server import AWS_VARIABLES, BUCKET, STALE_VARIABLES, running_moto


@contextmanager
def moto_bucket(folder: Path) -> Iterator[str]:
    """A new moto server with bucket BUCKET; the AWS variables of this process point at it while it runs."""
    with running_moto(folder / "moto.log") as endpoint:
        for name in STALE_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update({**AWS_VARIABLES, ENDPOINT_VARIABLE: endpoint})
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield f"s3://{BUCKET}"


@contextmanager
def target_url(kind: str, folder: Path) -> Iterator[str]:
    """A fresh target of ``kind``: a folder in ``folder``, or a prefix in the bucket of a new moto server."""
    if kind == "local":
        yield str(folder / "target")
        return
    with moto_bucket(folder) as bucket:
        yield f"{bucket}/{uuid.uuid4().hex}/target"


def run_one(kind: str, folder: Path, args: argparse.Namespace) -> bool:
    """The torture on one target type; prints its rounds and summary. Returns whether it passed."""
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        print(f"{time.monotonic() - started:7.1f}s  {line}", flush=True)

    with target_url(kind, folder) as url:
        summary = run_shared_torture(
            folder, url, args.rounds, args.seed, say=say, older_restores=args.older_restores, preload_mb=args.preload_mb
        )
    passed = not summary.problems and summary.rounds == args.rounds
    print(f"SUMMARY {summary.line(time.monotonic() - started)}", flush=True)
    for problem in summary.problems:
        print(f"  PROBLEM {problem}", flush=True)
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.backup.shared_torture_long", description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--targets", default="local,s3", help="comma-separated: local, s3")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--older-restores", type=int, default=1, help="older sets restored per home and round")
    parser.add_argument("--preload-mb", type=float, default=4.0, help="big values each home commits first")
    parser.add_argument("--folder", help="where homes, targets and transcripts go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    kinds = args.targets.split(",")
    if not set(kinds) <= {"local", "s3"}:
        parser.error(f"--targets {args.targets}: choose from local, s3")
    folder = Path(args.folder or tempfile.mkdtemp(prefix="shadowstore-shared-torture-"))
    failed = [kind for kind in kinds if not run_one(kind, folder / kind, args)]
    if failed:
        print(f"FAILED on {', '.join(failed)}; homes, targets and transcripts kept in {folder}", flush=True)
        return 1
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
