"""The program the backup torture kills: writers and a backup thread on a real server home.

    python -m tests.backup.torture_driver --home H --target T --run R --seed S [--threads 3] [--backups N]
        [--kinds full,incremental,differential,copy] [--slow 0.5] [--lazy 0.25] [--value-size 0]
        [--pause 0.002 0.012] [--preload-mb 5]

It mounts "First Storage Group" of the server home H (created with 64 KiB logs by the first run) with the
production maintenance defaults (``MaintenancePolicy()``: a checkpoint by itself every 4 generations), so
checkpoints run during backups as they do on a server. ``--threads`` writers commit into both stores, durable
and lazy, values of 40 bytes to 20 KiB, pausing ``--pause`` seconds between commits (about ten 64 KiB log
generations a second in all). The main thread takes backups of random kinds into the LocalTarget T, a share
``--slow`` of them through a slow target (a progress callback that sleeps per chunk), so that a checkpoint
runs while a store is copied; a third are compressed. With ``--backups N`` it dismounts and exits after N
backups, else it runs until it is killed.

Transaction ``n`` of stream ``s`` (``s = run * 100 + k``: k 0 is the preload, 1.. the writer threads) writes
``workload.keys_in(s, n)`` keys ``workload.key_for(s, n, i)`` with ``workload.value_for(s, n, i, size)`` into
the table ``workload`` of store ``store_of(s, n)``. Every line on stdout is flushed as it is written, and
says (parsed by ``Transcript``):

    mounted <run> <µs>                                   the storage group is mounted (soft recovery done)
    commit <stream> <n> <store> durable|lazy <size> <µs>  commit returned; the log gave it that commit time
    backup begin <seq> <kind>                            back_up is about to be called
    backup copying <seq> <file>                          the first chunk of a file is on its way to the target
    backup done <seq> <kind> <backup id> <first gen> <last gen>
    backup refused <seq> <kind> <ESE code> <message>
    dismounted                                           a clean dismount: everything committed is durable
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.run import back_up
from shadowstore.engine.store import Store
from shadowstore.errors import ShadowStoreError
from shadowstore.format.common import now_us
from shadowstore.home import ServerHome
from shadowstore.tools.workload import TABLE, key_for, keys_in, value_for

SG = "First Storage Group"
STORES = ("Mailbox Store", "Public Folder Store")
KINDS = ("full", "incremental", "differential", "copy")
KIND_WEIGHTS = (4, 3, 2, 1)
VALUE_SIZES = (40, 100, 300, 300, 300, 700, 1200, 4000)
BIG_VALUE, BIG_SHARE = 20000, 0.01  # out of line, in blob pages
PRELOAD_VALUE = 40000
SLOW_CHUNK_SECONDS = (0.02, 0.08)  # a slow target: this long per chunk handed to it
COMMITS_BETWEEN_BACKUPS = (20, 300)
COMPRESSION_LEVELS = (None, None, 3)  # None: stored as is; 3: zstd frames
STREAMS_PER_RUN = 100


def store_of(stream: int, n: int) -> int:
    """The store (index into STORES) transaction ``n`` of ``stream`` writes into."""
    return (stream + n) % 2


# --- what the output says ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    stream: int
    n: int
    store: int
    lazy: bool
    size: int
    time_us: int
    line: int  # index in the transcript


@dataclass
class Backup:
    run: int
    seq: int
    kind: str
    begin: int  # index of its "backup begin" line
    copying: list[str] = field(default_factory=list)
    backup_id: str | None = None  # done
    refused: tuple[int, str] | None = None  # (ESE code, message)

    @property
    def ended(self) -> bool:
        return self.backup_id is not None or self.refused is not None


@dataclass
class Run:
    run: int
    mounted_us: int
    line: int
    dismounted: bool = False
    durable_until_us: int = 0  # every commit of the run before this time is durable (a durable one came after)


@dataclass
class Transcript:
    """Everything the driver's runs printed, in order, with what it promises."""

    lines: list[str] = field(default_factory=list)
    commits: dict[tuple[int, int], Commit] = field(default_factory=dict)
    backups: list[Backup] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    def add(self, line: str) -> None:
        index = len(self.lines)
        self.lines.append(line)
        word = line.split()
        if word[0] == "mounted":
            self.runs.append(Run(int(word[1]), int(word[2]), index))
        elif word[0] == "commit":
            c = Commit(int(word[1]), int(word[2]), int(word[3]), word[4] == "lazy", int(word[5]), int(word[6]), index)
            self.commits[(c.stream, c.n)] = c
            if not c.lazy:
                self.runs[-1].durable_until_us = max(self.runs[-1].durable_until_us, c.time_us)
        elif word[0] == "dismounted":
            self.runs[-1].dismounted = True
        elif word[:2] == ["backup", "begin"]:
            self.backups.append(Backup(self.runs[-1].run, int(word[2]), word[3], index))
        elif word[:2] == ["backup", "copying"]:
            self.backups[-1].copying.append(word[3])
        elif word[:2] == ["backup", "done"]:
            self.backups[-1].backup_id = word[4]
        elif word[:2] == ["backup", "refused"]:
            self.backups[-1].refused = (int(word[4]), " ".join(word[5:]))

    def run_at(self, time_us: int) -> Run:
        """The run that was mounted at ``time_us``."""
        return [r for r in self.runs if r.mounted_us < time_us][-1]

    def backup_of(self, backup_id: str, logs_end_us: int) -> Backup | None:
        """The backup that wrote set ``backup_id`` (whose logs end at ``logs_end_us``): the one that said so, or
        the run's backup that was killed before it could."""
        for b in self.backups:
            if b.backup_id == backup_id:
                return b
        run = self.run_at(logs_end_us).run
        killed = [b for b in self.backups if b.run == run and not b.ended]
        return killed[-1] if killed else None


# --- the program ----------------------------------------------------------------------------------------------


@dataclass
class Driver:
    home: ServerHome
    stores: list[Store]
    run: int
    seed: int
    args: argparse.Namespace
    stopping: threading.Event = field(default_factory=threading.Event)
    commits: int = 0
    _out: threading.Lock = field(default_factory=threading.Lock)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def say(self, line: str) -> None:
        with self._out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def commit(self, stream: int, n: int, size: int, *, lazy: bool) -> None:
        """Commit transaction ``n`` of ``stream`` and say so once commit returned."""
        store = store_of(stream, n)
        with self.stores[store].transaction(lazy=lazy) as tx:
            for i in range(keys_in(stream, n)):
                tx.put(TABLE, key_for(stream, n, i), value_for(stream, n, i, size))
        self.say(f"commit {stream} {n} {store} {'lazy' if lazy else 'durable'} {size} {tx.commit_time_us}")
        with self._cond:
            self.commits += 1
            self._cond.notify_all()

    def wait_for_commits(self, count: int) -> None:
        """Until ``count`` more commits returned (or 10 s passed: the writers may all be blocked)."""
        with self._cond:
            goal = self.commits + count
            self._cond.wait_for(lambda: self.commits >= goal or self.stopping.is_set(), timeout=10.0)

    def preload(self, megabytes: float) -> None:
        """Grow each store to about ``megabytes`` MB, so that copying it takes a while."""
        stream, n, written = self.run * STREAMS_PER_RUN, 0, [0, 0]
        while min(written) < megabytes * 1e6:
            n += 1
            self.commit(stream, n, PRELOAD_VALUE, lazy=False)
            written[store_of(stream, n)] += keys_in(stream, n) * PRELOAD_VALUE

    def writer(self, k: int) -> None:
        stream = self.run * STREAMS_PER_RUN + k
        rng = random.Random(f"{self.seed}:{stream}")
        n = 0
        try:
            while not self.stopping.is_set():
                n += 1
                size = self.args.value_size or (BIG_VALUE if rng.random() < BIG_SHARE else rng.choice(VALUE_SIZES))
                self.commit(stream, n, size, lazy=rng.random() < self.args.lazy)
                time.sleep(rng.uniform(*self.args.pause))  # why: a pace of about 10 log generations a second
        except BaseException:
            self.die(f"writer {k}")

    def backups(self) -> None:
        """Back up until ``--backups`` were taken (forever when 0)."""
        rng = random.Random(f"{self.seed}:{self.run}:backups")
        target = LocalTarget(self.args.target)
        kinds = self.args.kinds.split(",")
        seq = 0
        while self.args.backups == 0 or seq < self.args.backups:
            self.wait_for_commits(rng.randint(*COMMITS_BETWEEN_BACKUPS))
            seq += 1
            kind = rng.choices(kinds, [KIND_WEIGHTS[KINDS.index(k)] for k in kinds])[0]
            delay = rng.uniform(*SLOW_CHUNK_SECONDS) if rng.random() < self.args.slow else 0.0
            level = rng.choice(COMPRESSION_LEVELS)
            self.say(f"backup begin {seq} {kind}")
            try:
                outcome = back_up(self.home, SG, kind, target, level=level, progress=self.watch(seq, delay))
            except ShadowStoreError as exc:
                self.say(f"backup refused {seq} {kind} {exc.code} {' '.join(exc.message.split())}")
                continue
            gens = [f.generation for f in outcome.files if f.generation is not None]
            self.say(f"backup done {seq} {kind} {outcome.backup_id} {min(gens)} {max(gens)}")

    def watch(self, seq: int, delay: float) -> Callable[[str, int, int | None, int], None]:
        """The progress callback: names each file as its copy starts, and sleeps ``delay`` per chunk."""
        current = [""]

        def progress(name: str, done: int, size: int | None, total: int) -> None:
            if name != current[0]:
                current[0] = name
                self.say(f"backup copying {seq} {name}")
            if delay:
                time.sleep(delay)  # why: a slow target, so that checkpoints run during the copy

        return progress

    def die(self, who: str) -> None:
        """A thread met an error: report it and end the process at once, as a crash would."""
        sys.stderr.write(f"{who} failed:\n{traceback.format_exc()}")
        sys.stderr.flush()
        os._exit(3)


def open_home(path: str) -> ServerHome:
    """The server home at ``path``, created with 64 KiB logs the first time; production maintenance."""
    if os.path.exists(os.path.join(path, "shadowstore.toml")):
        return ServerHome.open(path)
    return ServerHome.init(path, log_file_size=64 * 1024)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.backup.torture_driver", description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--run", type=int, required=True, help="this run's number (0, 1, ...): names its streams")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--backups", type=int, default=0, help="exit after this many backups (0: until killed)")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--slow", type=float, default=0.5, help="share of backups through a slow target")
    parser.add_argument("--lazy", type=float, default=0.25, help="share of lazy commits")
    parser.add_argument("--value-size", type=int, default=0, help="every value this long (0: varied)")
    parser.add_argument("--pause", type=float, nargs=2, default=(0.002, 0.012), help="seconds between commits")
    parser.add_argument("--preload-mb", type=float, default=0.0)
    args = parser.parse_args(argv)
    home = open_home(args.home)
    sg = home.storage_group(SG)
    sg.mount()
    stores = [sg.store(name) for name in STORES]
    for store in stores:
        with store.transaction() as tx:
            if not tx.has_table(TABLE):
                tx.create_table(TABLE)
    driver = Driver(home, stores, args.run, args.seed, args)
    driver.say(f"mounted {args.run} {now_us()}")
    driver.preload(args.preload_mb)
    writers = [threading.Thread(target=driver.writer, args=(k,), daemon=True) for k in range(1, args.threads + 1)]
    for w in writers:
        w.start()
    try:
        driver.backups()
    except BaseException:
        driver.die("the backup thread")
    driver.stopping.set()
    for w in writers:
        w.join()
    sg.dismount()
    driver.say("dismounted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
