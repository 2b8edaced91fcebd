"""Restore throughput against ``cp`` of the same backup files, and the replay rate of hard recovery.

Restore throughput: builds a storage group of at least ``--gib`` GiB (64 KiB values, dismounted clean), takes
a full backup into a local folder (uncompressed), then, in ``--rounds`` interleaved rounds, with the page
cache dropped before each copy (root only; otherwise it says so):

* ``cp`` of the backup set's files that a restore reads (the stores and the logs) into a fresh folder, then
  ``sync``: a durable copy, as ours is;
* a restore of the latest state into the Recovery Storage Group (fetch with SHA-256 of every file, hard
  recovery, put in place with a new log stream; every file and folder fsynced).

Target: at least 0.8x the throughput of cp (median of the rounds' ratios).

Replay rate: a second storage group is backed up (full), then a child process commits small one-row and
mail-like transactions without any checkpoint until at least ``--log-mib`` MiB of log are written, and dies
without dismounting (as in bench_replay.py). The soft recovery of copies of that home is timed, then an
incremental backup is taken and the latest state restored into the Recovery Storage Group: MB of log per
second of hard-recovery replay. Target: at least 50 MB/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any

from bench_backup import SG, copy_with_cp, drop_caches, fill
from bench_replay import NO_CHECKPOINTS
from common import Result, save, scratch
from shadowstore.backup import catalog
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.manifest import set_folder
from shadowstore.backup.run import back_up
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.home import ServerHome
from shadowstore.restore.plan import RestorePlan, RestoreTarget, plan_restore
from shadowstore.restore.run import INTO_RECOVERY_GROUP, RECOVERY_SG, RestoreOutcome, run_restore

# name: (share of the log, puts per transaction, value bytes (0: one 4 KiB value and 60 B ones), committers)
REPLAY_MIX = {
    b"small": (0.5, 1, 100, 16),  # 1 x 100 B, as bench_replay.py's small transactions
    b"mail": (0.5, 4, 0, 4),  # 1 x 4 KiB + 3 x 60 B, as its mail-like ones
}

CHILD = textwrap.dedent(
    """
    import os, sys, threading
    sys.path.insert(0, {bench!r})
    from bench_replay import NO_CHECKPOINTS
    from shadowstore.home import ServerHome
    home = ServerHome.open({home!r}, policy=NO_CHECKPOINTS)
    sg = home.storage_group(); sg.mount(); store = sg.store("Mailbox Store")
    def work(name, goal, puts, size, tid, threads):
        n = tid
        while sg.log.bytes_appended < goal:
            with store.transaction() as tx:
                for i in range(puts):
                    value = b"m" * 4096 if size == 0 and i == 0 else b"i" * (size or 60)
                    tx.put("t", b"%s-%03d-%09d-%04d" % (name, tid, n, i), value)
            n += threads
    for name, goal, puts, size, threads in {phases!r}:
        ts = [threading.Thread(target=work, args=(name, goal, puts, size, t, threads)) for t in range(threads)]
        [t.start() for t in ts]; [t.join() for t in ts]
    sg.log.flush()
    os._exit(0)
    """
)


@dataclass
class Phases:
    """Timestamps taken from a restore's progress calls: when the last byte was fetched, when the last
    generation was replayed."""

    started: float
    fetch_end: float = 0.0
    replay_end: float = 0.0

    def __call__(self, what: str, done: int, total: int) -> None:
        if what == "fetch":
            self.fetch_end = time.perf_counter()
        elif what == "replay":
            self.replay_end = time.perf_counter()

    def split(self, outcome: RestoreOutcome, seconds: float) -> dict[str, float]:
        """Seconds of fetch, of opening and checking before replay, of replay, and of writing the stores,
        putting them in place and making the new log stream."""
        fetch = self.fetch_end - self.started
        return {
            "fetch": fetch,
            "open": self.replay_end - self.fetch_end - outcome.replay_seconds,
            "replay": outcome.replay_seconds,
            "write_place": self.started + seconds - self.replay_end,
        }


def restore_latest(home: ServerHome, target: LocalTarget) -> tuple[float, RestoreOutcome, dict[str, float]]:
    """Restore the latest state of SG into the Recovery Storage Group, cold cache; then delete what the
    restore quarantined (the previous round's files: scratch data)."""
    drop_caches()
    phases = Phases(time.perf_counter())
    plan = plan_restore(catalog.list_sets(target, SG), RestoreTarget.latest(), sg=SG)
    outcome = run_restore(home, target, plan, into=INTO_RECOVERY_GROUP, progress=phases)
    seconds = time.perf_counter() - phases.started
    shutil.rmtree(os.path.join(home.path, RECOVERY_SG, "quarantine"), ignore_errors=True)
    return seconds, outcome, phases.split(outcome, seconds)


def plan_files(target_dir: str, plan: RestorePlan) -> list[str]:
    """The files of the backup set that the restore reads: its stores and its logs."""
    sources = [(d.backup_id, d.entry.name) for d in plan.databases] + [(g.backup_id, g.entry.name) for g in plan.logs]
    return [os.path.join(target_dir, set_folder(plan.sg, backup_id), name) for backup_id, name in sources]


def describe(split: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in split.items())


def restore_throughput(args: argparse.Namespace) -> tuple[Result, list[dict[str, Any]]]:
    """``args.rounds`` rounds of cp and ours, interleaved so that each round meets the same disk; the ratio
    reported is the median of the rounds' ratios, with the median throughputs beside it."""
    with scratch("ss-bench-restore-") as d:
        home = ServerHome.init(os.path.join(d, "home"), policy=MaintenancePolicy())
        fill(home, args.gib)
        target_dir = os.path.join(d, "target")
        target = LocalTarget(target_dir)
        back_up(home, SG, "full", target)
        plan = plan_restore(catalog.list_sets(target, SG), RestoreTarget.latest(), sg=SG)
        files = plan_files(target_dir, plan)
        size = sum(os.path.getsize(f) for f in files)
        rounds: list[dict[str, Any]] = []
        for i in range(args.rounds):
            cp_seconds = copy_with_cp(files, os.path.join(d, f"cp{i}"))
            shutil.rmtree(os.path.join(d, f"cp{i}"))
            seconds, outcome, split = restore_latest(home, target)
            rounds.append({"cp": cp_seconds, "ours": seconds, "fetched": outcome.fetched_bytes, **split})
            print(
                f"round {i + 1}: cp {size / 1e6 / cp_seconds:,.0f} MB/s ({cp_seconds:.2f} s), restore "
                f"{size / 1e6 / seconds:,.0f} MB/s ({seconds:.2f} s; {describe(split)}; fetched "
                f"{outcome.fetched_bytes / 1e6:,.0f} MB at {outcome.fetched_bytes / 1e6 / split['fetch']:,.0f} "
                f"MB/s; {outcome.log_bytes / 1e6:,.1f} MB of log replayed), ratio {cp_seconds / seconds:.2f}",
                flush=True,
            )
        cache = "cold cache" if drop_caches() else "WARM cache (not root: could not drop caches)"
    mb = size / 1e6
    ratios = [r["cp"] / r["ours"] for r in rounds]
    cp_rate = statistics.median(mb / r["cp"] for r in rounds)
    ours_rate = statistics.median(mb / r["ours"] for r in rounds)
    spread = ", ".join(f"{x:.2f}" for x in ratios)
    result = Result(
        f"restore MB/s into the RSG ({size / 2**30:.2f} GiB)",
        statistics.median(ratios) * cp_rate,  # so that the printed ratio is the median ratio of the rounds
        cp_rate,
        "cp",
        "MB/s",
        0.8,
        f"({cache}; {len(files)} files; ratio per round {spread}; median ours {ours_rate:,.0f} MB/s)",
    )
    return result, rounds


def commit_log(home_dir: str, log_mib: float) -> None:
    """Commit the REPLAY_MIX in a child process until ``log_mib`` MiB of log, then die without dismounting."""
    goal, phases = 0.0, []
    for name, (share, puts, size, threads) in REPLAY_MIX.items():
        goal += share * log_mib * (1 << 20)
        phases.append((name, int(goal), puts, size, threads))
    code = CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), home=home_dir, phases=phases)
    subprocess.run([sys.executable, "-c", code], check=True)


def soft_recovery(home_dir: str, scratch_dir: str, rounds: int) -> list[tuple[float, int]]:
    """(MB/s of replay, log bytes) of the mount of ``rounds`` fresh copies of the crashed home, cold cache."""
    rates = []
    for i in range(rounds):
        copy = os.path.join(scratch_dir, f"soft{i}")
        shutil.copytree(home_dir, copy)
        drop_caches()
        home = ServerHome.open(copy, policy=NO_CHECKPOINTS)
        report = home.storage_group().mount()
        home.storage_group().dismount()
        rates.append((report.log_bytes / 1e6 / report.replay_seconds, report.log_bytes))
        print(
            f"soft recovery {i + 1}: {rates[-1][0]:,.1f} MB/s ({report.log_bytes / 1e6:,.1f} MB of log, "
            f"{report.records:,} transactions, replay {report.replay_seconds:.2f} s, "
            f"write {report.write_seconds:.2f} s)",
            flush=True,
        )
        shutil.rmtree(copy)
    return rates


def replay_rate(args: argparse.Namespace) -> tuple[Result, dict[str, Any]]:
    """Hard-recovery replay rate (median of the rounds) of a full backup plus an incremental holding at least
    ``args.log_mib`` MiB of log, beside the soft-recovery rate of the same log."""
    with scratch("ss-bench-hardreplay-") as d:
        home_dir = os.path.join(d, "home")
        home = ServerHome.init(home_dir, policy=NO_CHECKPOINTS)
        sg = home.storage_group()
        sg.mount()
        with sg.store("Mailbox Store").transaction() as tx:
            tx.create_table("t")
        sg.dismount()
        target = LocalTarget(os.path.join(d, "target"))
        back_up(home, SG, "full", target)
        started = time.perf_counter()
        commit_log(home_dir, args.log_mib)
        print(f"workload committed in {time.perf_counter() - started:.1f} s", flush=True)
        soft = soft_recovery(home_dir, d, args.rounds)
        home = ServerHome.open(home_dir, policy=MaintenancePolicy())
        incremental = back_up(home, SG, "incremental", target)
        hard = []
        for i in range(args.rounds):
            seconds, outcome, split = restore_latest(home, target)
            hard.append((outcome.log_bytes / 1e6 / outcome.replay_seconds, outcome.log_bytes, seconds, split))
            print(
                f"hard recovery {i + 1}: {hard[-1][0]:,.1f} MB/s ({outcome.log_bytes / 1e6:,.1f} MB of log, "
                f"generations {outcome.generations[0]}-{outcome.generations[1]}; restore {seconds:.2f} s: "
                f"{describe(split)})",
                flush=True,
            )
    rate = statistics.median(h[0] for h in hard)
    soft_rate = statistics.median(s[0] for s in soft)
    result = Result(
        "hard-recovery replay MB/s, small + mail-like",
        rate,
        50.0,
        "target",
        "MB/s",
        1.0,
        f"({hard[0][1] / 1e6:,.0f} MB of log; soft recovery of the same log {soft_rate:,.1f} MB/s, "
        f"hard/soft {rate / soft_rate:.2f})",
    )
    extra = {
        "incremental_bytes": incremental.bytes,
        "soft": [{"mb_per_s": r, "log_bytes": b} for r, b in soft],
        "hard": [{"mb_per_s": r, "log_bytes": b, "seconds": s, **split} for r, b, s, split in hard],
    }
    return result, extra


def main() -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=None, help="size of the restored storage group (2)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3)")
    parser.add_argument("--log-mib", type=float, default=None, help="MiB of log for the replay rate (256)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 0.1 GiB, 1 round, 16 MiB of log")
    args = parser.parse_args()
    for name, full, quick in (("gib", 2.0, 0.1), ("rounds", 3, 1), ("log_mib", 256.0, 16.0)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    throughput, rounds = restore_throughput(args)
    print(throughput.line(), flush=True)
    replay, replay_extra = replay_rate(args)
    print(replay.line())
    results = [throughput, replay]
    print()
    for r in results:
        print(r.line())
    save("restore", results, {"throughput_rounds": rounds, "replay": replay_extra})
    return results


if __name__ == "__main__":
    main()
