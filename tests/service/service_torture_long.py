"""The kill -9 torture of the Information Store service, for local runs: the service is killed with SIGKILL at
random moments while clients deliver mail and a backup program runs through it, then started again and checked
(tests/service/test_service_kills.py says what each round promises).

    python -m tests.service.service_torture_long [--rounds 50] [--seed 20261207] [--folder DIR]

It runs the rounds of test_the_service_killed_at_random_moments_loses_nothing_and_blocks_no_backup on one
server home, restoring into the Recovery Storage Group every few rounds and at the end, and prints one line per
round and then "50 of 50 rounds passed, 0 failures". Exits 1 on any failure, keeping the home and target;
otherwise removes them.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from shadowstore.home import ServerHome
from tests.service.test_service_kills import SEED, run_rounds

RESTORE_EVERY = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.service.service_torture_long", description=__doc__)
    parser.add_argument("--rounds", type=int, default=50, help="rounds of load, kill and restart")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--restore-every", type=int, default=RESTORE_EVERY, help="restore every N rounds")
    parser.add_argument("--folder", help="where the home and target go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    # why: a SIGTERM unwinds like Ctrl-C, so the round's finally stops the service it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # why a short default: the socket's path must fit in 108 bytes (else the service puts it elsewhere)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="ss-kills-"))
    home, target = folder / "home", folder / "target"
    ServerHome.init(str(home))
    started, passed = time.monotonic(), []

    def show(line: str) -> None:
        passed.append(line)
        print(f"{time.monotonic() - started:7.1f}s  {line}", flush=True)

    problems = run_rounds(str(home), str(target), args.rounds, args.seed, show, args.restore_every)
    print(
        f"{len(passed)} of {args.rounds} rounds passed, {'1 failure' if problems else '0 failures'} "
        f"(seed {args.seed}, {time.monotonic() - started:.0f}s)",
        flush=True,
    )
    if problems:
        print("\n".join(["FAILED:", *problems, f"(kept in {folder})"]), flush=True)
        return 1
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
