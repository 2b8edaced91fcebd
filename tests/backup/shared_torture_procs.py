"""The process runner of the shared-target torture (tests/backup/shared_torture.py): a stage starts real
shadowstore processes, each at its delay, sends SIGKILL where its ``Launch`` says (a delay after it started, once
it paused at a crash point, or once it printed a matching line) and waits for them all; every command and what it
printed goes to the ``Transcript``.

    ran = run_stage([Launch("backup A full", argv, delay=0.2, kill_after=1.5)], Transcript(folder / "transcript.txt"))
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import IO

from tests.backup.test_backup_torture import REPO

STAGE_DEADLINE = 180.0  # seconds the processes of one stage may take together


class TortureError(Exception):
    """A stage that cannot go on (a process that hangs or a home that cannot be made)."""


@dataclass
class Launch:
    label: str
    argv: list[str]
    delay: float = 0.0  # seconds after the stage began
    kill_after: float | None = None  # SIGKILL this many seconds after it started
    pause_at: str | None = None  # SIGKILL once it says it paused at this crash point
    kill_on: str | None = None  # SIGKILL once a line it prints on stdout matches this regular expression


@dataclass
class Ran:
    launch: Launch
    status: int
    stdout: str
    stderr: str
    seconds: float
    killed: bool  # SIGKILL was sent (the process may have ended on its own just before)


class Transcript:
    """Every command, what it printed and every check, appended to a file as it happens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock, self.path.open("a") as out:
            out.write(text.rstrip("\n") + "\n")

    def ran(self, r: Ran) -> None:
        how = " (SIGKILL sent)" if r.killed else ""
        self.write(f"$ {' '.join(r.launch.argv[3:])}  [{r.launch.label}: exit {r.status}{how}, {r.seconds:.2f}s]")
        for name, text in (("stdout", r.stdout), ("stderr", r.stderr)):
            if text.strip():
                self.write("".join(f"  {name}| {line}\n" for line in text.splitlines()))


@dataclass
class _Process:
    """One launch of a stage while it runs."""

    launch: Launch
    popen: subprocess.Popen[str] | None = None
    started: float = 0.0
    ended: float | None = None
    open_streams: int = 2
    killed: bool = False
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    def wake(self, began: float) -> float | None:
        """When the stage must act on it next without a line from it: start it, or kill it."""
        if self.popen is None:
            return began + self.launch.delay
        if self.ended is None and not self.killed and self.launch.kill_after is not None:
            return self.started + self.launch.kill_after
        return None

    def kill(self) -> None:
        if self.popen is not None and not self.killed:
            self.popen.send_signal(signal.SIGKILL)
            self.killed = True

    def take(self, name: str, line: str | None) -> None:
        """A line it printed on ``name`` (None: that stream ended); it is killed once it paused where asked."""
        assert self.popen is not None
        if line is None:
            self.open_streams -= 1
            if self.open_streams == 0:
                self.popen.wait()
                self.ended = time.monotonic()
            return
        (self.err if name == "stderr" else self.out).append(line)
        if name == "stderr" and line == f"paused at {self.launch.pause_at}":
            self.kill()
        if name == "stdout" and self.launch.kill_on and re.match(self.launch.kill_on, line):
            self.kill()

    def result(self) -> Ran:
        assert self.popen is not None
        assert self.ended is not None
        return Ran(
            self.launch, self.popen.returncode, "\n".join(self.out), "\n".join(self.err),
            self.ended - self.started, self.killed,
        )  # fmt: skip


def run_stage(launches: list[Launch], transcript: Transcript) -> list[Ran]:
    """Start each launch at its delay, SIGKILL it where it says, and wait for all to end (results in order).
    Raises TortureError (after killing them all) when they are not done within STAGE_DEADLINE."""
    lines: Queue[tuple[int, str, str | None]] = Queue()
    procs = [_Process(launch) for launch in launches]
    began = time.monotonic()
    while any(p.ended is None for p in procs):
        now = time.monotonic()
        if now - began > STAGE_DEADLINE:
            for p in procs:
                p.kill()
            raise TortureError(f"{[lo.label for lo in launches]} did not end within {STAGE_DEADLINE}s")
        for index, p in enumerate(procs):
            wake = p.wake(began)
            if wake is not None and wake <= now and p.popen is None:
                p.popen, p.started = _start(index, p.launch, lines), now
            elif wake is not None and wake <= now:
                p.kill()
        wakes = [w for p in procs if (w := p.wake(began)) is not None]
        try:
            index, name, line = lines.get(timeout=max(0.0, min([*wakes, began + STAGE_DEADLINE]) - now))
        except Empty:
            continue
        procs[index].take(name, line)
    results = [p.result() for p in procs]
    for r in results:
        transcript.ran(r)
    return results


def _start(index: int, launch: Launch, into: Queue[tuple[int, str, str | None]]) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if launch.pause_at:
        env["SHADOWSTORE_PAUSE_AT"] = launch.pause_at  # io/fs.py: the process waits there until it is killed
    proc = subprocess.Popen(launch.argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        threading.Thread(target=_pump, args=(index, name, stream, into), daemon=True).start()
    return proc


def _pump(index: int, name: str, stream: IO[str] | None, into: Queue[tuple[int, str, str | None]]) -> None:
    """Hand each line of one process's stream to the stage, then None (the stream ended)."""
    assert stream is not None
    for line in stream:
        into.put((index, name, line.rstrip("\n")))
    into.put((index, name, None))
