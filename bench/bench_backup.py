"""Full backup throughput against ``cp`` of the same files, and incremental backup time against database size.

Builds a storage group of at least ``--gib`` GiB (64 KiB values, dismounted clean), then, in ``--rounds``
interleaved rounds, with the page cache dropped before each copy (root only; otherwise it says so):

* ``cp`` of the same files (the stores and the logs a full backup copies) into a fresh folder, then ``sync``:
  a durable copy, as ours is;
* ``shadowstore backup run --kind full`` into a local folder, uncompressed (every page verified, SHA-256 of
  every file, fsync of every file), and again with zstd level 3.

Targets: uncompressed at least 0.8x the throughput of cp; zstd-3 at least 0.5x. Each round also times SHA-256
alone in memory: every file is hashed as one serial stream, so when cp outruns the hash no uncompressed backup
can reach cp, and the round says how close it could get. Then, for growing database
sizes, the time of an incremental backup after a fixed amount of new log (it should not grow with the
database).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import time

from common import Result, drop_caches, save, scratch
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.run import back_up
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.home import ServerHome

SG = "First Storage Group"
VALUE = 64 * 1024


def fill(home: ServerHome, gib: float, seed: int = 1) -> None:
    """Grow Mailbox Store by ``gib`` GiB of incompressible-ish 64 KiB values."""
    sg = home.storage_group()
    mounted_here = not sg.mounted
    if mounted_here:
        sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        if not tx.has_table("blobs"):
            tx.create_table("blobs")
    count = int(gib * (1 << 30)) // VALUE
    for start in range(0, count, 32):
        with store.transaction() as tx:
            for i in range(start, min(count, start + 32)):
                tx.put("blobs", b"%d-%010d" % (seed, i), os.urandom(VALUE))
    if mounted_here:
        sg.dismount()


def sha256_rate(megabytes: int = 512) -> float:
    """MB/s of SHA-256 on one core over data in memory: a full backup hashes each file as one serial stream,
    so an uncompressed backup of one big store can go no faster than this, however fast the disk."""
    block = os.urandom(8 << 20)
    sha = hashlib.sha256()
    started = time.perf_counter()
    for _ in range(megabytes // 8):
        sha.update(block)
    return megabytes * (1 << 20) / 1e6 / (time.perf_counter() - started)


def copy_with_cp(files: list[str], dest: str) -> float:
    os.makedirs(dest)
    drop_caches()
    started = time.perf_counter()
    subprocess.run(["cp", *files, dest], check=True)
    subprocess.run(["sync", "-f", dest], check=True)
    return time.perf_counter() - started


def copy_with_backup(home: ServerHome, dest: str, level: int | None) -> tuple[float, list[str]]:
    drop_caches()
    started = time.perf_counter()
    outcome = back_up(home, SG, "copy", LocalTarget(dest), level=level)
    elapsed = time.perf_counter() - started
    return elapsed, [f.source for f in outcome.files]


def full_backup(args: argparse.Namespace) -> list[Result]:
    """``args.rounds`` rounds of cp, ours uncompressed and ours with zstd-3, interleaved so that each round
    meets the same disk (a virtual disk's speed drifts by 2x over minutes); the ratio reported is the median
    of the rounds' ratios, with the median throughputs beside it."""
    with scratch("ss-bench-backup-") as d:
        home = ServerHome.init(os.path.join(d, "home"), policy=MaintenancePolicy())
        fill(home, args.gib)
        sg_dir = os.path.join(home.path, SG)
        rounds: list[tuple[float, float, float]] = []  # seconds: cp, uncompressed, zstd
        hashes: list[float] = []  # MB/s of SHA-256 alone, measured after each round
        size = 0
        for i in range(args.rounds):
            # A copy backup: the same work as a full one, but it leaves the logs for the next round.
            plain, sources = copy_with_backup(home, os.path.join(d, f"plain{i}"), None)
            files = [os.path.join(sg_dir, s) for s in sources]
            size = sum(os.path.getsize(f) for f in files)
            cp_seconds = copy_with_cp(files, os.path.join(d, f"cp{i}"))
            zstd, _ = copy_with_backup(home, os.path.join(d, f"zstd{i}"), 3)
            rounds.append((cp_seconds, plain, zstd))
            hashes.append(sha256_rate())
            print(
                f"round {i + 1}: cp {size / 1e6 / cp_seconds:,.0f} MB/s, uncompressed {size / 1e6 / plain:,.0f} "
                f"MB/s, zstd-3 {size / 1e6 / zstd:,.0f} MB/s; SHA-256 alone {hashes[-1]:,.0f} MB/s, so at best "
                f"{hashes[-1] * cp_seconds / (size / 1e6):.2f}x this cp uncompressed",
                flush=True,
            )
            for name in (f"plain{i}", f"cp{i}", f"zstd{i}"):
                shutil.rmtree(os.path.join(d, name))
        cache = "cold cache" if drop_caches() else "WARM cache (not root: could not drop caches)"
    mb = size / 1e6
    results = []
    for column, label, target in ((1, "uncompressed", 0.8), (2, "zstd level 3", 0.5)):
        ratios = [r[0] / r[column] for r in rounds]
        ratio = statistics.median(ratios)
        cp_rate = statistics.median(mb / r[0] for r in rounds)
        spread = ", ".join(f"{x:.2f}" for x in ratios)
        bound = statistics.median(h * r[0] / mb for h, r in zip(hashes, rounds, strict=True))
        ceiling = f"; SHA-256 alone allows {bound:.2f}x" if column == 1 else ""
        results.append(
            Result(
                f"full backup MB/s, {label} ({size / 2**30:.2f} GiB)",
                ratio * cp_rate,  # so that the printed ratio is the median ratio of the rounds
                cp_rate,
                "cp",
                "MB/s",
                target,
                f"({cache}; ratio per round {spread}{ceiling})",
            )
        )
    return results


def incremental_by_size(args: argparse.Namespace) -> list[tuple[float, float, int]]:
    """(database GiB, incremental seconds, log bytes copied) for growing databases, fixed new log volume."""
    rows = []
    with scratch("ss-bench-incr-") as d:
        home = ServerHome.init(os.path.join(d, "home"), policy=MaintenancePolicy())
        target = LocalTarget(os.path.join(d, "target"))
        total = 0.0
        for step in args.incremental_steps:
            fill(home, step - total, seed=int(step * 100))
            total = step
            back_up(home, SG, "full", target)
            fill(home, args.incremental_mib / 1024, seed=int(step * 100) + 1)
            drop_caches()
            started = time.perf_counter()
            outcome = back_up(home, SG, "incremental", target)
            rows.append((step, time.perf_counter() - started, outcome.bytes))
    return rows


def main() -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--incremental-steps", type=float, nargs="*", default=[0.25, 1.0, 2.0])
    parser.add_argument("--incremental-mib", type=float, default=32.0)
    args = parser.parse_args()
    results = full_backup(args)
    for r in results:
        print(r.line())
    rows = incremental_by_size(args)
    print(f"\nincremental backup after {args.incremental_mib:.0f} MiB of new log:")
    for gib, seconds, copied in rows:
        print(f"  database {gib:5.2f} GiB: {seconds:6.2f} s ({copied / 1e6:,.0f} MB of logs copied)")
    save("backup", results, {"incremental": [{"db_gib": g, "seconds": s, "bytes": b} for g, s, b in rows]})
    shutil.rmtree(os.path.join(os.path.dirname(__file__), "results", "tmp"), ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
