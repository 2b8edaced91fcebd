"""``make demo``: create a server home, run a workload, dismount, show the store header in Clean Shutdown."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from shadowstore.cli.main import main as cli_main

MARKER = ".shadowstore-demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", default=os.path.abspath("demo-home"))
    parser.add_argument("--txns", type=int, default=2000)
    args = parser.parse_args(argv)
    home = os.path.abspath(args.home)
    if Path(home).exists():
        if not Path(home, MARKER).exists():
            print(f"{home} exists and was not made by the demo; pass another --home", file=sys.stderr)
            return 3
        shutil.rmtree(home)
    steps = [
        ["--home", home, "init", "--log-file-size", "256K"],
        ["--home", home, "workload", "run", "--txns", str(args.txns), "--seed", "7", "--threads", "4"],
        ["--home", home, "workload", "check", "--seed", "7", "--committed", str(args.txns)],
        ["--home", home, "status"],
        ["--home", home, "eseutil", "/mh", os.path.join(home, "First Storage Group", "priv1.edb")],
    ]
    for step in steps:
        print(f"\n$ shadowstore {' '.join(step)}", flush=True)
        code = _quiet_run(step) if step[2:4] == ["workload", "run"] else cli_main(step)
        if code != 0:
            return code
        if step[2] == "init":
            Path(home, MARKER).touch()
    return 0


def _quiet_run(step: list[str]) -> int:
    """The workload prints a line per commit; the demo shows the count instead."""
    real = sys.stdout
    count = 0

    class Counter:
        def write(self, text: str) -> int:
            nonlocal count
            count += text.count("committed ")
            return len(text)

        def flush(self) -> None:
            pass

    sys.stdout = Counter()
    try:
        code = cli_main(step)
    finally:
        sys.stdout = real
    print(f"{count} transactions committed durably")
    return code


if __name__ == "__main__":
    sys.exit(main())
