"""The freeze window of shadow-copy backups (how long commits are held), per provider and store size, beside a
raw ``btrfs subvolume snapshot -r`` of the same subvolume in the same run; and commit latency p50/p99 while a
snapshot backup runs, against the same workload without one.

Needs root (loop-mounted btrfs and XFS). Targets (issue 14): median freeze window <= 50 ms with btrfs and
reflink at every size; p99 commit latency during the backup <= 2x the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from common import Result, running_service, save
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.pace import AdaptivePace
from shadowstore.backup.report import BackupReport
from shadowstore.backup.snapshotrun import back_up_snapshot
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.home import ServerHome
from shadowstore.service.client import ServiceClient
from shadowstore.service.remotemail import RemoteMail
from shadowstore.vss.providers import make_subvolume

SG = "First Storage Group"
VALUE = 4 << 20  # bytes per transaction while filling a store


@contextmanager
def loop_fs(kind: str, size_gib: int) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix=f"ss-bench-{kind}-") as work:
        image, mount = os.path.join(work, "fs.img"), os.path.join(work, "mnt")
        os.mkdir(mount)
        subprocess.run(["truncate", "-s", f"{size_gib}G", image], check=True)
        device = subprocess.run(["losetup", "--find", "--show", image], check=True, capture_output=True, text=True)
        loop = device.stdout.strip()
        try:
            mkfs = (
                ["mkfs.btrfs", "-q", "-f", loop]
                if kind == "btrfs"
                else ["mkfs.xfs", "-q", "-f", "-m", "reflink=1", loop]
            )
            subprocess.run(mkfs, check=True, capture_output=True)
            subprocess.run(["mount", loop, mount], check=True)
            try:
                yield mount
            finally:
                subprocess.run(["umount", mount], check=False)
        finally:
            subprocess.run(["losetup", "-d", loop], check=False)


def filled_home(root: str, mib: int) -> ServerHome:
    path = os.path.join(root, "home")
    make_subvolume(path)  # False on XFS: a plain folder there
    home = ServerHome.init(path, policy=MaintenancePolicy())
    sg = home.storage_group(SG)
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
    for n in range(max(1, (mib << 20) // VALUE)):
        with store.transaction() as tx:
            tx.put("t", b"%08d" % n, os.urandom(VALUE))
    sg.checkpoint()
    return home


def freeze_window(home: ServerHome, provider: str, target: str, runs: int) -> tuple[float, float]:
    """Median freeze window and provider commit (seconds) of ``runs`` snapshot full backups."""
    windows, commits = [], []
    for _ in range(runs):
        run = back_up_snapshot(home, [SG], "full", LocalTarget(target), provider=provider,
                               report=BackupReport(home.fs, home.path))  # fmt: skip
        assert run.job is not None
        assert not run.failures
        windows.append(run.job.freeze_seconds)
        commits.append(run.job.commit_seconds)
    return statistics.median(windows), statistics.median(commits)


def raw_btrfs_snapshot(subvolume: str, runs: int) -> float:
    times = []
    for n in range(runs):
        dest = os.path.join(os.path.dirname(subvolume), f"raw-{n}")
        started = time.perf_counter()
        subprocess.run(["btrfs", "subvolume", "snapshot", "-r", subvolume, dest], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
        subprocess.run(["btrfs", "subvolume", "delete", dest], check=True, capture_output=True)
    return statistics.median(times)


def commit_latencies(home: ServerHome, seconds: float, during: bool, provider: str, target: str) -> list[float]:
    store = home.storage_group(SG).store("Mailbox Store")
    latencies: list[float] = []
    stop = threading.Event()

    def commit() -> None:
        n = 0
        while not stop.is_set():
            started = time.perf_counter()
            with store.transaction() as tx:
                tx.put("t", b"lat-%08d" % n, b"x" * 100)
            latencies.append(time.perf_counter() - started)
            n += 1

    thread = threading.Thread(target=commit)
    thread.start()
    ends = time.monotonic() + seconds
    try:
        while time.monotonic() < ends:
            if during:  # paced as the CLI paces by default (--max-rate auto), on this process's commits
                pace = AdaptivePace(home.flush_waits.reading)
                back_up_snapshot(home, [SG], "full", LocalTarget(target), provider=provider,
                                 report=BackupReport(home.fs, home.path), pace=pace)  # fmt: skip
            else:
                time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    return latencies


def service_commit_latencies(
    home: str, seconds: float, during: bool, provider: str, target: str, max_rate: str = "auto"
) -> list[float]:
    """Latencies of one-message deliveries (each a durable commit) through ``shadowstore serve`` on ``home``,
    from a client thread of this process, while snapshot full backups run back to back as separate backup
    programs (``backup run --method snapshot --max-rate MAX_RATE``, the requestor) or while nothing else runs.
    As deployed: the writers freeze in the service; the backup program copies the shadow copy in its own
    process."""
    shadowstore = [sys.executable, "-c", "from shadowstore.cli.main import entry; entry()", "--home", home]
    with running_service(home) as socket:
        client = ServiceClient(socket=socket)
        mail = RemoteMail(client)
        mail.create_mailbox("latency")
        message = b"From: a@example.com\r\nSubject: latency\r\n\r\n" + b"x" * 1000 + b"\r\n"
        latencies: list[float] = []
        stop = threading.Event()

        def deliver() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                mail.add("latency", "INBOX", [message], [{}])
                latencies.append(time.perf_counter() - started)

        thread = threading.Thread(target=deliver)
        thread.start()
        ends, backups = time.monotonic() + seconds, 0
        try:
            while time.monotonic() < ends:
                if during:
                    run = [*shadowstore, "backup", "run", "--sg", SG, "--kind", "full", "--to", target, "--quiet",
                           "--method", "snapshot", "--provider", provider, "--max-rate", max_rate]  # fmt: skip
                    subprocess.run(run, check=True, stdout=subprocess.DEVNULL)
                    backups += 1
                else:
                    time.sleep(0.05)
        finally:
            stop.set()
            thread.join()
            client.close()
        if during and backups == 0:
            raise RuntimeError("no snapshot backup ran during the measurement")
        return latencies


def _percentiles(base: list[float], under: list[float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """((p50 base, p50 under), (p99 base, p99 under))."""
    p99 = (statistics.quantiles(base, n=100)[98], statistics.quantiles(under, n=100)[98])
    return (statistics.median(base), statistics.median(under)), p99


def main() -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1024", help="store sizes in MiB")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--filesystems", default="btrfs,xfs", help="btrfs, xfs or both")
    parser.add_argument("--latency-size", type=int, default=100, help="store size (MiB) of the latency runs; 0: none")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each latency measurement")
    parser.add_argument("--rates", default="auto,0,40",
                        help="--max-rate of each service latency run (auto: the default; 0: none)")  # fmt: skip
    args = parser.parse_args()
    results: list[Result] = []
    table: list[str] = []
    for kind, providers in (("btrfs", ("btrfs", "reflink", "copy")), ("xfs", ("reflink", "copy"))):
        if kind not in args.filesystems.split(","):
            continue
        for mib in (int(s) for s in args.sizes.split(",")):
            with loop_fs(kind, max(4, 3 * mib // 1024 + 3)) as mount, tempfile.TemporaryDirectory() as target_dir:
                home = filled_home(mount, mib)
                raw = raw_btrfs_snapshot(os.path.join(mount, "home"), args.runs) if kind == "btrfs" else None
                for provider in providers:
                    window, commit = freeze_window(home, provider, target_dir, args.runs)
                    line = (f"{kind:5} {mib:5} MiB {provider:8} freeze window {window * 1e3:8.1f} ms "
                            f"(provider commit {commit * 1e3:7.1f} ms)")  # fmt: skip
                    if raw is not None:
                        line += f"; raw btrfs snapshot {raw * 1e3:.1f} ms"
                    table.append(line)
                    print(line, flush=True)
                    if provider in ("btrfs", "reflink"):
                        results.append(Result(f"freeze window, {provider} on {kind}, {mib} MiB", 0.050,
                                              window, "target 50 ms", "s (target/ours)", 1.0))  # fmt: skip
                if kind == "xfs" and mib == args.latency_size:
                    base = commit_latencies(home, args.seconds, False, "reflink", target_dir)
                    under = commit_latencies(home, args.seconds, True, "reflink", target_dir)
                    p50, p99 = _percentiles(base, under)
                    line = (f"one process: commit latency p50 {p50[1] * 1e3:.2f} ms vs {p50[0] * 1e3:.2f} ms, "
                            f"p99 {p99[1] * 1e3:.2f} ms vs {p99[0] * 1e3:.2f} ms without a backup")  # fmt: skip
                    table.append(line)
                    print(line, flush=True)
                    results.append(Result("p99 commit latency during snapshot backups (reflink, XFS, one process)",
                                          p99[0] * 2, p99[1], "2x baseline p99", "s (2x base/ours)", 1.0))  # fmt: skip
                    home.close()
                    base = service_commit_latencies(home.path, args.seconds, False, "reflink", target_dir)
                    for rate in args.rates.split(","):
                        under = service_commit_latencies(home.path, args.seconds, True, "reflink", target_dir, rate)
                        p50, p99 = _percentiles(base, under)
                        paced = {"0": "unpaced", "auto": "--max-rate auto, the default"}.get(rate, f"--max-rate {rate}")
                        line = (f"through the service, {paced}: delivery latency p50 {p50[1] * 1e3:.2f} ms vs "
                                f"{p50[0] * 1e3:.2f} ms, p99 {p99[1] * 1e3:.2f} ms vs {p99[0] * 1e3:.2f} ms "
                                f"without a backup ({len(under)} and {len(base)} deliveries)")  # fmt: skip
                        table.append(line)
                        print(line, flush=True)
                        results.append(Result(f"p99 commit latency during snapshot backups (reflink, XFS, service, "
                                              f"{paced})", p99[0] * 2, p99[1], "2x baseline p99",
                                              "s (2x base/ours)", 1.0))  # fmt: skip
                    continue
                home.close()
    print("saved", save("snapshot", results, {"lines": table}))
    return results


if __name__ == "__main__":
    main()
