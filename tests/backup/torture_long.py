"""The acceptance check of the backup torture, for local runs: full backups taken while a writer commits and
checkpoints run by themselves, each one verified, restored into the recovery storage group and compared with
the transactions acknowledged before it.

    python -m tests.backup.torture_long [--fulls 100] [--kill-rounds 0] [--seed 20261206] [--folder DIR]

It runs tests/backup/torture_driver.py as test_full_backups_while_checkpoints_run does (production
maintenance defaults, a slow target, one writer), in runs of 10 backups on one server home, and prints one line
per set and then "100 full backups, 100 restored, 0 failures". With ``--kill-rounds N`` it then runs N rounds of
the kill -9 torture (test_backups_killed_at_random_moments) on a second home. Exits 1 on any failure, keeping
the homes and targets; otherwise removes them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.backup.test_backup_torture import SEED, SetResult, run_full_backups, run_kill_rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.backup.torture_long", description=__doc__)
    parser.add_argument("--fulls", type=int, default=100, help="full backups to take and restore")
    parser.add_argument("--kill-rounds", type=int, default=0, help="rounds of the kill -9 torture afterwards")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--folder", help="where the homes and targets go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="shadowstore-torture-"))
    started = time.monotonic()

    def show(result: SetResult) -> None:
        print(f"{time.monotonic() - started:7.1f}s  {result}", flush=True)

    results = run_full_backups(folder / "fulls", args.fulls, args.seed, show) if args.fulls else []
    sets = [r for r in results if r.kind == "full"]
    failures = [r for r in results if r.problems]
    print(
        f"{len(sets)} full backups, {sum(r.restored for r in sets)} restored, {len(failures)} failures "
        f"(seed {args.seed}, {time.monotonic() - started:.0f}s)",
        flush=True,
    )
    problems = [str(r) for r in failures]
    if args.kill_rounds:
        killed = run_kill_rounds(folder / "kills", args.kill_rounds, args.seed, lambda line: print(line, flush=True))
        print(f"{args.kill_rounds} kill -9 rounds: {'0 failures' if not killed else 'FAILED'}", flush=True)
        problems += killed
    if problems or len(sets) < args.fulls:
        print("\n".join(["FAILED:", *problems, f"(kept in {folder})"]), flush=True)
        return 1
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
