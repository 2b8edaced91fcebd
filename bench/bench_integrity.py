"""eseutil /k (page checksums) and /g (integrity) throughput, against ``sha256sum`` of the same store file.

Builds a store of about ``--size`` bytes (default 1 GiB): mostly 64 KiB values stored out of line (blob pages),
plus ``--rows`` small rows in a table of their own so that /g has B+tree pages to decode and walk. Then, in
``--rounds`` interleaved rounds, each with the page cache dropped first (root only; otherwise it says so):
``sha256sum`` of the store file, ``eseutil /k`` of it (tools/checksums.check_file) and ``eseutil /g``
(tools/integrity.check_integrity). MB/s are the file's size over the time taken.

Target: /k at least 0.5x the throughput of sha256sum. /g has no target (it decodes every tree page in Python);
its ratio is printed for the record.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable

from common import Result, drop_caches, save, scratch
from shadowstore.config import parse_size
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.home import DEFAULT_SG, ServerHome
from shadowstore.tools.checksums import check_file
from shadowstore.tools.eseutil import Report
from shadowstore.tools.integrity import check_integrity

VALUE = 64 * 1024


def build(home_path: str, size: int, rows: int) -> str:
    """A dismounted home whose Mailbox Store holds about ``size`` bytes; returns the store's path."""
    home = ServerHome.init(home_path, policy=MaintenancePolicy())
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("rows")
        tx.create_table("blobs")
        for i in range(rows):  # one bulk transaction, as bench_bulk.py loads
            tx.put("rows", b"row-%09d" % i, b"%0100d" % i)
    count = max(0, size - rows * 130) // VALUE
    block = os.urandom(VALUE + 4096)
    for start in range(0, count, 64):
        with store.transaction() as tx:
            for i in range(start, min(count, start + 64)):
                offset = i % 4096
                tx.put("blobs", b"blob-%09d" % i, block[offset : offset + VALUE])
    sg.dismount()
    home.close()
    return os.path.join(home_path, DEFAULT_SG, "priv1.edb")


def timed_sha256sum(path: str) -> float:
    drop_caches()
    started = time.perf_counter()
    subprocess.run(["sha256sum", path], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def timed_check(check: Callable[[str], Report], mode: str, path: str) -> float:
    """Seconds ``check`` (eseutil ``mode``) takes over ``path`` from a cold cache; it must find nothing."""
    drop_caches()
    started = time.perf_counter()
    dump = check(path)
    elapsed = time.perf_counter() - started
    if not dump.ok:
        raise SystemExit(f"{mode} found problems in a fresh store: {dump.errors[:3]}")
    return elapsed


def main() -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=parse_size, default=1 << 30, help="store size (1G, 256M, ...)")
    parser.add_argument("--rows", type=int, default=300_000, help="small rows in their own table")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch("ss-bench-integrity-") as d:
        started = time.perf_counter()
        path = build(os.path.join(d, "home"), args.size, args.rows)
        size = os.path.getsize(path)
        print(f"built {path}: {size / 2**30:.2f} GiB in {time.perf_counter() - started:.0f} s", flush=True)
        rounds = []
        for i in range(args.rounds):
            sha, k, g = (
                timed_sha256sum(path),
                timed_check(check_file, "/k", path),
                timed_check(check_integrity, "/g", path),
            )
            rounds.append((sha, k, g))
            mb = size / 1e6
            print(
                f"round {i + 1}: sha256sum {mb / sha:,.0f} MB/s, /k {mb / k:,.0f} MB/s, /g {mb / g:,.0f} MB/s",
                flush=True,
            )
        cache = "cold cache" if drop_caches() else "WARM cache (not root: could not drop caches)"
    mb = size / 1e6
    sha_rate = statistics.median(mb / r[0] for r in rounds)
    results = []
    for column, name, target in ((1, "eseutil /k", 0.5), (2, "eseutil /g", 0.0)):
        ratios = [r[0] / r[column] for r in rounds]
        spread = ", ".join(f"{x:.2f}" for x in ratios)
        results.append(
            Result(
                f"{name} MB/s ({size / 2**30:.2f} GiB store)",
                statistics.median(ratios) * sha_rate,  # so that the printed ratio is the median ratio
                sha_rate,
                "sha256sum",
                "MB/s",
                target,
                f"({cache}; ratio per round {spread})",
            )
        )
    for r in results:
        print(r.line())
    save("integrity", results, {"size": size, "rows": args.rows, "rounds": [list(r) for r in rounds]})
    return results


if __name__ == "__main__":
    main()
