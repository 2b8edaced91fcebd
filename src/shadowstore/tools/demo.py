"""``make demo``: the main job of ShadowStore on a built-in default, step by step, as shell commands.

A server home takes a workload; then an administrator deletes log files by hand, the step that wedged every
later backup of the original system. Here the full backup still succeeds (it reports the missing
generations), more work follows, an incremental backup, a verify of it, a restore of the latest state into the
Recovery Storage Group, a check that the restored stores hold every committed transaction, and the store
header with its backup stamps.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from shadowstore.backup.catalog import list_sets
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.cli.main import main as cli_main
from shadowstore.home import ServerHome

MARKER = ".shadowstore-demo"
SG = "First Storage Group"
RSG = "Recovery Storage Group"
_ARCHIVED_LOG = re.compile(r"E00[0-9A-F]{5}\.log")


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
    first, more = args.txns, max(1, args.txns // 4)
    steps: list[list[str] | str] = [
        "A server home with one storage group of two stores, and a workload committed from 4 threads.",
        ["init", "--log-file-size", "64K"],
        ["workload", "run", "--txns", str(first), "--seed", "7", "--threads", "4"],
        "An administrator deletes the old log files by hand to free space ...",
        "rm",
        "... and the full backup still succeeds: it names the missing generations and truncates the rest.",
        ["backup", "run", "--sg", SG, "--kind", "full"],
        ["workload", "run", "--txns", str(more), "--seed", "8"],
        ["backup", "run", "--sg", SG, "--kind", "incremental"],
        ["backup", "list"],
        "verify",
        "A restore of the latest state beside the live storage group, and a check of every transaction in it.",
        ["restore", "run", "--into-recovery-group"],
        ["workload", "check", "--sg", RSG, "--seed", "7", "--committed", str(first)],
        ["workload", "check", "--sg", RSG, "--seed", "8", "--committed", str(more)],
        ["status"],
        ["eseutil", "/mh", os.path.join(home, SG, "priv1.edb")],
    ]
    for step in steps:
        if step == "rm":
            _delete_old_logs(os.path.join(home, SG))
            continue
        if step == "verify":
            step = ["backup", "verify", _newest_set(home)]
        if isinstance(step, str):
            print(f"\n# {step}", flush=True)
            continue
        argv_ = ["--home", home, *step]
        print(f"\n$ shadowstore {' '.join(_quote(a) for a in argv_)}", flush=True)
        code = _quiet_run(argv_) if step[:2] == ["workload", "run"] else cli_main(argv_)
        if code != 0:
            return code
        if step[0] == "init":
            Path(home, MARKER).touch()
    return 0


def _delete_old_logs(folder: str) -> None:
    """What the administrator did: remove archived log files, all but the oldest (E00.log stays)."""
    logs = sorted(path for path in Path(folder).iterdir() if _ARCHIVED_LOG.fullmatch(path.name))[1:]
    names = [path.name for path in logs]
    shown = names if len(names) <= 4 else [*names[:2], "...", names[-1]]
    print(f"\n$ rm {' '.join(shown)}    # {len(names)} files, in {folder}", flush=True)
    for path in logs:
        path.unlink()


def _newest_set(home: str) -> str:
    home_id = ServerHome.open(home).home_id
    return list_sets(LocalTarget(os.path.join(home, "backups")), SG, home=home_id)[-1].backup_id


def _quote(arg: str) -> str:
    return f"'{arg}'" if " " in arg else arg


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
