"""Helpers shared by the benchmarks: scratch directories, timing, and a results table with ratios."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")


@dataclass
class Result:
    name: str
    ours: float
    peer: float
    peer_name: str
    unit: str
    target_ratio: float
    detail: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("inf")

    @property
    def met(self) -> bool:
        return self.ratio >= self.target_ratio

    def line(self) -> str:
        verdict = "met" if self.met else "NOT met"
        return (
            f"{self.name:<44} ours {self.ours:>12,.1f} {self.unit:<8} {self.peer_name} {self.peer:>12,.1f}  "
            f"ratio {self.ratio:5.2f} (target >= {self.target_ratio}: {verdict}) {self.detail}"
        )


@contextmanager
def scratch(prefix: str) -> Iterator[str]:
    base = os.environ.get("SHADOWSTORE_BENCH_DIR") or None
    path = tempfile.mkdtemp(prefix=prefix, dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_of(runs: int, fn: Callable[[], float]) -> float:
    """The best (highest) rate of ``runs`` runs: the least disturbed by the rest of the machine."""
    return max(fn() for _ in range(runs))


def save(name: str, results: list[Result], extra: dict[str, Any] | None = None) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    data = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "results": [asdict(r) | {"ratio": r.ratio, "met": r.met} for r in results],
        **(extra or {}),
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    return path


def drop_caches() -> bool:
    """Write back and drop the page cache, so the next read comes from the disk; False when not allowed (not
    root)."""
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


@contextmanager
def running_service(home: str) -> Iterator[str]:
    """``shadowstore serve`` on ``home`` in its own process, for the body of the ``with``; yields the path of its
    socket once it answers. The service is stopped with SIGTERM (every store left in Clean Shutdown)."""
    from shadowstore.service.client import ServiceClient, socket_of

    process = subprocess.Popen(
        [sys.executable, "-c", "from shadowstore.cli.main import entry; entry()", "--home", home, "serve"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited {process.returncode}")
            path = socket_of(home)
            if path is not None:
                with ServiceClient(socket=path) as client:
                    try:
                        client.get("/v1/health")
                        break
                    except Exception:
                        pass
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not answer within 30 s")
            time.sleep(0.05)
        yield path
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
