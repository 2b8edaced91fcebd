"""Soft-recovery replay rate in MB of log per second.

A child process fills a storage group without any checkpoint and then dies without dismounting (os._exit),
leaving the stores in Dirty Shutdown; the parent times the mount, which replays the log and writes the
recovered stores. Reported per workload: MB of log read per second of replay, and of the whole recovery
(replay plus writing the pages and the Clean Shutdown headers). Target: at least 50 MB/s of log.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import textwrap

from common import Result, save, scratch
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.home import ServerHome

NO_CHECKPOINTS = MaintenancePolicy(checkpoint_generations=1 << 30, checkpoint_bytes=1 << 60, checkpoint_seconds=1e9)

WORKLOADS = {
    # name: (transactions, puts per transaction, value bytes, threads committing)
    "small transactions (1 x 100 B, 16 committers)": (200_000, 1, 100, 16),
    "mail-like transactions (1 x 4 KiB + 3 x 60 B)": (16_000, 4, 0, 4),
    "bulk transactions (2,000 x 100 B each)": (200, 2000, 100, 1),
}

CHILD = textwrap.dedent(
    """
    import os, sys, threading
    sys.path.insert(0, {bench!r})
    from bench_replay import NO_CHECKPOINTS
    from shadowstore.home import ServerHome
    home = ServerHome.open({home!r}, policy=NO_CHECKPOINTS)
    sg = home.storage_group(); sg.mount(); store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
    txns, puts, size, threads = {shape!r}
    def work(tid):
        for n in range(tid, txns, threads):
            with store.transaction() as tx:
                for i in range(puts):
                    value = b"m" * 4096 if size == 0 and i == 0 else b"i" * (size or 60)
                    tx.put("t", b"%03d-%09d-%04d" % (tid, n, i), value)
    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    [t.start() for t in ts]; [t.join() for t in ts]
    sg.log.flush()
    os._exit(0)
    """
)


def measure(shape: tuple[int, int, int, int], runs: int) -> tuple[float, float, int, int]:
    """Best of ``runs`` recoveries of the same crashed home (each from a fresh copy of it)."""
    best: tuple[float, float, int, int] = (0.0, 0.0, 0, 0)
    with scratch("ss-replay-") as d:
        home_dir = os.path.join(d, "home")
        ServerHome.init(home_dir, policy=NO_CHECKPOINTS)
        code = CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), home=home_dir, shape=shape)
        subprocess.run([sys.executable, "-c", code], check=True)
        for run in range(runs):
            copy = os.path.join(d, f"copy{run}")
            shutil.copytree(home_dir, copy)
            home = ServerHome.open(copy, policy=NO_CHECKPOINTS)
            report = home.storage_group().mount()
            home.storage_group().dismount()
            mb = report.log_bytes / 1e6
            replay, whole = mb / report.replay_seconds, mb / (report.replay_seconds + report.write_seconds)
            if replay > best[0]:
                best = (replay, whole, report.log_bytes, report.records)
            shutil.rmtree(copy)
        return best


def main() -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for name, shape in WORKLOADS.items():
        replay, whole, log_bytes, records = measure(shape, args.runs)
        results.append(
            Result(
                f"replay MB/s, {name}",
                replay,
                50.0,
                "target",
                "MB/s",
                1.0,
                f"({log_bytes / 1e6:,.0f} MB of log, {records:,} transactions; whole recovery {whole:,.1f} MB/s)",
            )
        )
        print(results[-1].line())
    save("replay", results)
    return results


if __name__ == "__main__":
    main()
