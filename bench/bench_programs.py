"""Sixteen ``shadowstore mail import`` programs on one home: through the service at once, and without it in turn.

What an administrator gets from the service when many clients deliver. Without the service a program owns the
home while it runs and any other is refused as busy (exit code 5), so the best a script can do is run them one
after another: each mounts the storage group, imports its mbox file and dismounts. Through the service the
sixteen run at once, and their commits share transactions. Both sides time the programs from the first start to
the last exit, on the same generated mail (written to mbox files before any timing).

This is not the comparison the sixteen-client target of issue 13 judges (bench_service.py: sixteen threads of
one program against sixteen clients of the service); it measures the programs a user runs, start to end, and
has no target.
"""

from __future__ import annotations

import argparse
import mailbox
import os
import subprocess
import sys
import time

from bench_service import _messages
from common import Result, running_service, save, scratch
from shadowstore.home import ServerHome

SHADOWSTORE = [sys.executable, "-c", "from shadowstore.cli.main import entry; entry()"]


def _write_mboxes(folder: str, corpus: list[list[bytes]]) -> list[str]:
    paths = []
    for c, messages in enumerate(corpus):
        path = os.path.join(folder, f"client{c:02d}.mbox")
        box = mailbox.mbox(path)
        for raw in messages:
            box.add(raw)
        box.close()
        paths.append(path)
    return paths


def _import(home: str, c: int, path: str) -> list[str]:
    return [*SHADOWSTORE, "--home", home, "mail", "import", "--mailbox", f"client{c:02d}", "--quiet", path]


def _finish(process: subprocess.Popen[bytes]) -> None:
    _out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, process.args))} exited {process.returncode}: {err.decode()[-500:]}")


def in_turn(paths: list[str]) -> float:
    with scratch("ss-programs-direct-") as d:
        home = os.path.join(d, "home")
        ServerHome.init(home, log_file_size=1 << 20).close()
        start = time.perf_counter()
        for c, path in enumerate(paths):
            _finish(subprocess.Popen(_import(home, c, path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        return time.perf_counter() - start


def at_once(paths: list[str]) -> float:
    with scratch("ss-programs-svc-") as d:
        home = os.path.join(d, "home")
        ServerHome.init(home, log_file_size=1 << 20).close()
        with running_service(home):
            start = time.perf_counter()
            programs = [
                subprocess.Popen(_import(home, c, path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for c, path in enumerate(paths)
            ]
            for process in programs:
                _finish(process)
            return time.perf_counter() - start


def main() -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--programs", type=int, default=16)
    parser.add_argument("--messages", type=int, default=1600, help="messages in all, split among the programs")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side, interleaved; the best is kept")
    args = parser.parse_args()
    corpus = _messages(args.programs, args.messages // args.programs)
    count = sum(len(c) for c in corpus)
    size = sum(len(m) for c in corpus for m in c) / 1e6
    with scratch("ss-programs-mbox-") as folder:
        paths = _write_mboxes(folder, corpus)
        best = {"service": float("inf"), "direct": float("inf")}
        for _ in range(args.runs):
            best["direct"] = min(best["direct"], in_turn(paths))
            best["service"] = min(best["service"], at_once(paths))
    result = Result(
        f"mail import by {args.programs} programs",
        count / best["service"],
        count / best["direct"],
        "one at a time without the service",
        "msg/s",
        0.0,
        f"{size / best['service']:.1f} MB/s vs {size / best['direct']:.1f} MB/s; "
        f"{best['service']:.2f} s vs {best['direct']:.2f} s (no target)",
    )
    print(result.line())
    print("saved", save("programs", [result], {"programs": args.programs, "messages": args.messages}))
    return [result]


if __name__ == "__main__":
    main()
