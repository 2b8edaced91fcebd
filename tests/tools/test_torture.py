"""kill -9 torture: a real ``shadowstore workload run`` process killed at random instants, then checked.

Every iteration uses its own fixed seed (printed on failure): the killer picks either a number of
acknowledged commits to wait for or a moment during start-up and mount, sends SIGKILL, and then
``shadowstore workload check`` must find every acknowledged transaction intact and none in part. All
iterations share one server home, so later ones also recover after earlier kills and accumulate logs.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading

import pytest

from shadowstore.home import ServerHome

ITERATIONS = int(os.environ.get("SHADOWSTORE_TORTURE_ITERATIONS", "50"))


def shadowstore(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from shadowstore.cli.main import main; sys.exit(main())", *args]


def contiguous(committed: set[int]) -> int:
    n = 0
    while n + 1 in committed:
        n += 1
    return n


def run_and_kill(home: str, seed: int, rng: random.Random) -> tuple[int, int]:
    """Start a workload, kill it at a random instant; returns (N, value size): 1..N were acknowledged."""
    threads = rng.choice([1, 1, 2, 4])
    value_size = rng.choice([10, 100, 700, 3000])
    proc = subprocess.Popen(
        shadowstore(
            "--home",
            home,
            "workload",
            "run",
            "--txns",
            "100000",
            "--seed",
            str(seed),
            "--threads",
            str(threads),
            "--value-size",
            str(value_size),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed: set[int] = set()
    if rng.random() < 0.15:
        # Kill during start-up, mount or recovery: a timer, not a wait for something to happen.
        timer = threading.Timer(rng.uniform(0.0, 0.4), proc.send_signal, args=(signal.SIGKILL,))
        timer.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            committed.add(int(line.split()[1]))
        timer.cancel()
    else:
        target = rng.randint(1, 400)
        assert proc.stdout is not None
        for line in proc.stdout:
            committed.add(int(line.split()[1]))
            if len(committed) >= target:
                proc.send_signal(signal.SIGKILL)
                break
        proc.stdout.read()
    proc.wait()
    assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read() if proc.stderr else ""
    return contiguous(committed), value_size


@pytest.mark.slow
def test_kill_minus_nine_torture(tmp_path: os.PathLike[str]) -> None:
    home = os.path.join(tmp_path, "home")
    ServerHome.init(home, log_file_size=64 * 1024)
    for iteration in range(ITERATIONS):
        seed = 1000 + iteration
        rng = random.Random(seed)
        committed, value_size = run_and_kill(home, seed, rng)
        check = subprocess.run(
            shadowstore(
                "--home",
                home,
                "workload",
                "check",
                "--seed",
                str(seed),
                "--committed",
                str(committed),
                "--value-size",
                str(value_size),
            ),
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, (
            f"iteration {iteration} (seed {seed}, {committed} acknowledged): exit {check.returncode}\n"
            f"{check.stdout}\n{check.stderr}"
        )
        assert f"transactions 1..{committed} of seed {seed} are present" in check.stdout
