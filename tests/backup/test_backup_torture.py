"""Backup torture: writers, checkpoints and backups of every kind in a real process, killed with SIGKILL.

The driver (tests/backup/torture_driver.py) runs on a server home with the production maintenance defaults,
so checkpoints run by themselves while stores are copied, and says on stdout what it committed and backed up.
After each run every backup set the target lists as complete must pass ``verify_set`` and restore into the
recovery storage group, to the end of its last generation, with exactly the transactions whose commit time
lies before the set's ``logs_end_us`` — every acknowledged one among them (a lazy one of an earlier, killed
run only if a durable commit after it was acknowledged), every one acknowledged before the backup began, none
committed later — and no transaction in part.

``test_backups_killed_at_random_moments`` kills the driver (seeded) right after mounting, as a backup starts
copying a file, 0-100 commits after a backup ended, or at one of the engine's backup crash points (the process
waits there: SHADOWSTORE_PAUSE_AT), then runs it again on the same home: it must mount (soft recovery), and
later backups build on the sets and truncated logs of earlier runs. A refused backup must be one a kill
explains, saying why. ``test_full_backups_while_checkpoints_run`` is the review's reproduction: full backups
through a slow target while one writer commits. CI runs are bounded (about a minute each on 2 cores); with
SHADOWSTORE_LONG=1 they are long (or set SHADOWSTORE_BACKUP_TORTURE_ROUNDS / SHADOWSTORE_BACKUP_TORTURE_FULLS);
SHADOWSTORE_TORTURE_SEED replays a printed seed. The acceptance check, 100 full backups each restored:
``python -m tests.backup.torture_long``.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from shadowstore.backup.catalog import SetInfo, list_sets
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.verify import verify_set
from shadowstore.errors import ShadowStoreError
from shadowstore.format.common import iso_time
from shadowstore.home import ServerHome
from shadowstore.restore.plan import RestoreTarget, plan_restore
from shadowstore.restore.run import INTO_RECOVERY_GROUP, RECOVERY_SG, run_restore
from shadowstore.tools.workload import TABLE, keys_in, value_for
from tests.backup.torture_driver import SG, STORES, STREAMS_PER_RUN, Backup, Transcript, store_of

REPO = Path(__file__).resolve().parents[2]
SEED = 20261206
RUN_DEADLINE = 120.0  # seconds a run may take to reach its kill point or its end
FULL_BACKUPS_PER_RUN = 10
# the engine's crash points in a backup (engine/backup.py, backup/run.py), in the order a backup meets them
CRASH_POINTS = (
    "backup.copy.database",
    "backup.copy.log",
    "backup.before_manifest",
    "backup.after_manifest",
    "backup.truncate.after_delete",
)

# --- the driver as a real process -----------------------------------------------------------------------------


def driver_command(home: Path, target: Path, run: int, seed: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "tests.backup.torture_driver",
        "--home", str(home), "--target", str(target), "--run", str(run), "--seed", str(seed), *extra,
    ]  # fmt: skip


def run_driver(command: list[str], transcript: Transcript, kill: KillPoint | None = None) -> tuple[int, str]:
    """Run the driver, adding each line it prints on stdout to ``transcript``; SIGKILL it at the first line
    (of stdout or stderr) ``kill`` accepts, pausing it at ``kill.pause_at`` first if set. Every line printed
    before the kill landed is read. Returns (exit status, stderr). Fails the test if the run neither ends nor
    reaches its kill point within RUN_DEADLINE."""
    env = dict(os.environ)
    if kill is not None and kill.pause_at:
        env["SHADOWSTORE_PAUSE_AT"] = kill.pause_at  # io/fs.py: the real process waits at that crash point
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[tuple[str, str] | None] = queue.Queue()
    readers = [
        threading.Thread(target=_lines, args=(name, stream, lines), daemon=True)
        for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + RUN_DEADLINE
    errors: list[str] = []
    open_streams, killed = len(readers), False
    while open_streams:
        try:
            item = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            proc.wait()
            pytest.fail(f"the driver did not get on within {RUN_DEADLINE}s; last lines: {transcript.lines[-5:]}")
        if item is None:
            open_streams -= 1
            continue
        name, line = item
        if name == "stdout":
            transcript.add(line)
        else:
            errors.append(line)
        if kill is not None and not killed and kill(name, line):
            proc.send_signal(signal.SIGKILL)
            killed = True
    proc.wait()
    return proc.returncode, "\n".join(errors)


def _lines(name: str, stream: IO[str] | None, into: queue.Queue[tuple[str, str] | None]) -> None:
    assert stream is not None
    for line in stream:
        into.put((name, line.rstrip("\n")))
    into.put(None)


# --- checking the sets --------------------------------------------------------------------------------------


@dataclass
class SetResult:
    backup_id: str
    kind: str
    restored: bool = False  # verified, and restored into the recovery storage group
    transactions: int = 0  # transactions restored
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        more = f" ... ({len(self.problems)} problems)" if len(self.problems) > 8 else ""
        shown = "; ".join(self.problems[:8]) + more
        return f"{self.kind} backup {self.backup_id}: {shown or f'ok, {self.transactions} transactions'}"


def check_new_sets(home_path: Path, target_path: Path, transcript: Transcript, checked: set[str]) -> list[SetResult]:
    """Verify and restore every complete set not in ``checked`` (adding it), oldest first."""
    target = LocalTarget(str(target_path))
    home = ServerHome.open(str(home_path))
    results = []
    try:
        sets = list_sets(target, SG, home=home.home_id)
        for info in sets:
            if info.complete and info.backup_id not in checked:
                checked.add(info.backup_id)
                results.append(check_set(home, target, sets, info, transcript))
    finally:
        home.close()
    return results


def check_set(home: ServerHome, target: LocalTarget, sets: list[SetInfo], info: SetInfo, t: Transcript) -> SetResult:
    """``info`` verifies, restores into the recovery storage group to the end of its last generation from the
    sets that existed when it was taken, and holds what the transcript says it must."""
    manifest = info.manifest
    assert manifest is not None
    assert manifest.logs_end_us is not None
    result = SetResult(info.backup_id, info.kind)
    result.problems += [f"verify: {p}" for p in verify_set(target, info.backup_id).errors]
    if result.problems:
        return result
    try:
        older = [s for s in sets if s.backup_id <= info.backup_id]
        plan = plan_restore(older, RestoreTarget.at_generation(manifest.last_gen), sg=SG)
        run_restore(home, target, plan, into=INTO_RECOVERY_GROUP)
    except ShadowStoreError as exc:
        result.problems.append(f"restore: {exc.code} {exc.message}")
        return result
    result.restored = True
    if plan.last_gen != manifest.last_gen:
        result.problems.append(f"the restore ended at generation {plan.last_gen}, the set at {manifest.last_gen}")
    found = read_recovery_group(home, result.problems)
    result.transactions = len(found)
    result.problems += compare(found, t, manifest.logs_end_us, t.backup_of(info.backup_id, manifest.logs_end_us))
    return result


Found = dict[tuple[int, int], tuple[int, dict[int, bytes]]]  # (stream, n) -> (store, {key index: value})


def read_recovery_group(home: ServerHome, problems: list[str]) -> Found:
    rsg = home.storage_group(RECOVERY_SG)
    rsg.mount()
    found: Found = {}
    try:
        for index, name in enumerate(STORES):
            with rsg.store(name).snapshot() as snap:
                for key, value in snap.range(TABLE) if snap.has_table(TABLE) else ():
                    _, stream, n, i = key.split(b"/")
                    where, entries = found.setdefault((int(stream), int(n)), (index, {}))
                    if where != index:
                        problems.append(f"transaction {int(stream)}/{int(n)} is in both stores")
                    entries[int(i)] = value
    finally:
        rsg.dismount()
    # why: each restore into the recovery group quarantines the one before; a hundred would keep a hundred
    shutil.rmtree(os.path.join(rsg.config.log_dir, "quarantine"), ignore_errors=True)
    return found


def compare(found: Found, t: Transcript, end_us: int, backup: Backup | None) -> list[str]:
    """What is wrong with the restored ``found`` for a set whose logs end at ``end_us``."""
    problems = []
    runs = {r.run: r for r in t.runs}
    set_run = t.run_at(end_us).run
    for (stream, n), (store, entries) in sorted(found.items()):
        commit = t.commits.get((stream, n))
        problem = _whole(stream, n, store, entries, commit.size if commit else None)
        if problem:
            problems.append(f"transaction {stream}/{n} {problem}")
        if commit is not None and commit.time_us >= end_us:
            problems.append(f"transaction {stream}/{n} committed at {iso_time(commit.time_us)}, after the logs end")
    for c in t.commits.values():
        if c.time_us >= end_us or (c.stream, c.n) in found:
            continue
        run = runs[c.stream // STREAMS_PER_RUN]
        if run.run == set_run or not c.lazy or c.time_us <= run.durable_until_us or run.dismounted:
            mode = "lazy" if c.lazy else "durable"
            problems.append(f"transaction {c.stream}/{c.n} ({mode}, committed {iso_time(c.time_us)}) is missing")
    if backup is not None:
        early = [c for c in t.commits.values() if c.line < backup.begin and c.time_us >= end_us]
        problems += [f"transaction {c.stream}/{c.n} was acknowledged before the backup began" for c in early[:3]]
    return problems


def _whole(stream: int, n: int, store: int, entries: dict[int, bytes], size: int | None) -> str | None:
    if store != store_of(stream, n):
        return f"is in {STORES[store]!r}"
    if sorted(entries) != list(range(keys_in(stream, n))):
        return f"is present in part: keys {sorted(entries)} of {keys_in(stream, n)}"
    for i, value in entries.items():
        if value != value_for(stream, n, i, len(value) if size is None else size):
            return f"has wrong bytes in key {i} ({len(value)} bytes)"
    return None


def killed_with_a_set(t: Transcript, sets: list[SetInfo]) -> set[tuple[int, int]]:
    """(run, seq) of the backups killed after they wrote their manifest: complete sets no line says are done."""
    done = {b.backup_id for b in t.backups}
    return {
        (b.run, b.seq)
        for s in sets
        if s.manifest is not None and s.manifest.logs_end_us is not None and s.backup_id not in done
        for b in [t.backup_of(s.backup_id, s.manifest.logs_end_us)]
        if b is not None
    }


# what a refused backup says (engine/backup.py, backup/run.py)
TRUNCATED_BY_INCREMENTAL = "an incremental backup since the last full backup truncated them"  # -569
NO_FULL_BACKUP = "needs a previous full backup"  # -560
CHAIN_NOT_IN_TARGET = "cannot continue that chain"  # -560
LOGS_MISSING = "take a full backup"  # -569, at the end of the message
REFUSAL_REASONS = (TRUNCATED_BY_INCREMENTAL, NO_FULL_BACKUP, CHAIN_NOT_IN_TARGET, LOGS_MISSING)


def refusal_problems(t: Transcript, killed_with_set: set[tuple[int, int]]) -> list[str]:
    """Refusals no kill explains. A full or incremental backup killed after its manifest was written leaves a
    complete set that the store headers do not know (never stamped, its truncation maybe begun): until the next
    full backup an incremental or differential may be refused, and must say why (-560: the target's chain,
    -569: missing logs). -569 for a differential after an incremental truncated its logs is the documented
    rule; -560 for want of a full backup only before the first one completed."""
    problems = []
    full_done = unstamped = False
    for b in t.backups:
        if b.refused is not None:
            code, message = b.refused
            if not (
                (code == -569 and TRUNCATED_BY_INCREMENTAL in message)
                or (code == -560 and not full_done and NO_FULL_BACKUP in message)
                or (unstamped and code == -560 and CHAIN_NOT_IN_TARGET in message)
                or (unstamped and code == -569 and message.endswith(LOGS_MISSING))
            ):
                problems.append(f"run {b.run}: {b.kind} backup {b.seq} was refused: {code} {message}")
        elif b.backup_id is not None and b.kind == "full":
            full_done, unstamped = True, False
        elif (b.run, b.seq) in killed_with_set and b.kind in ("full", "incremental"):
            unstamped = True  # why only these: a chain builds on full and incremental sets alone
    return problems


def describe_run(t: Transcript, run: int) -> str:
    """What run ``run`` did: its commits, and each backup's kind and how it ended."""
    commits = sum(1 for c in t.commits.values() if c.stream // STREAMS_PER_RUN == run)
    backups = [b for b in t.backups if b.run == run]
    ends = [
        f"{b.kind} done" if b.backup_id else f"{b.kind} refused {_why(*b.refused)}" if b.refused else
        f"{b.kind} killed after {len(b.copying)} file(s)"
        for b in backups
    ]  # fmt: skip
    return f"{commits} commits; backups: {', '.join(ends) or 'none'}"


def _why(code: int, message: str) -> str:
    """A refusal in short: its code and the reason it gives."""
    for reason in REFUSAL_REASONS:
        if reason in message:
            return f"{code} ({reason})"
    return f"{code} ({message[:100]})"


# --- where to kill ---------------------------------------------------------------------------------------------


@dataclass
class KillPoint:
    """Where a run of the driver gets SIGKILL: ``mount`` (right after mounting), ``copy`` (when backup
    ``backup`` of the run starts copying its ``after``-th file: 1 is its first store or log), ``between``
    (``after`` commits after backup ``backup`` ended; a backup that ends first is killed at its end), or
    ``pause`` (the first backup to reach the engine's crash point ``pause_at`` waits there and is killed)."""

    how: str
    backup: int = 0
    after: int = 0
    pause_at: str | None = None
    _armed: bool = False
    _seen: int = 0  # files of the backup (copy) or commits since it ended (between)

    @classmethod
    def draw(cls, rng: random.Random, *, first_run: bool) -> KillPoint:
        how = rng.choice(["copy", "copy", "pause", "pause", "between", "between", *([] if first_run else ["mount"])])
        if how == "pause":
            return cls(how, pause_at=rng.choice(CRASH_POINTS))
        return cls(how, rng.randint(1, 3), rng.randint(1, 6) if how == "copy" else rng.randint(0, 100))

    def describe(self) -> str:
        if self.how == "mount":
            return "killed once mounted"
        if self.how == "pause":
            return f"killed at crash point {self.pause_at}"
        if self.how == "between":
            return f"killed {self.after} commits after backup {self.backup} ended"
        return f"killed as backup {self.backup} started copying file {self.after}"

    def __call__(self, stream: str, line: str) -> bool:
        if stream == "stderr":
            return self.how == "pause" and line == f"paused at {self.pause_at}"
        word = line.split()
        if self.how == "mount":
            return word[0] == "mounted"
        if self.how == "pause":
            return False
        ended = word[:2] in (["backup", "done"], ["backup", "refused"]) and int(word[2]) == self.backup
        if self.how == "between":
            if ended:
                self._armed = True
            elif self._armed and word[0] == "commit":
                self._seen += 1
            return self._armed and self._seen >= self.after
        if word[:3] == ["backup", "copying", str(self.backup)]:
            self._seen += 1
        return ended or self._seen >= self.after


# --- the runs ----------------------------------------------------------------------------------------------------


def setting(name: str, ci: int, long: int) -> int:
    if name in os.environ:
        return int(os.environ[name])
    return long if os.environ.get("SHADOWSTORE_LONG") == "1" else ci


def torture_seed() -> int:
    return int(os.environ.get("SHADOWSTORE_TORTURE_SEED", SEED))


def run_full_backups(
    folder: Path, count: int, seed: int, on_result: Callable[[SetResult], None] = lambda r: None
) -> list[SetResult]:
    """``count`` full backups through a slow target while one writer commits and checkpoints run by
    themselves (the review's reproduction), each checked as it is taken, in runs of FULL_BACKUPS_PER_RUN that
    end with a clean dismount. Every set is in the results; a run that fails ends it with a result saying so."""
    home, target = folder / "home", folder / "target"
    transcript, checked, results = Transcript(), set[str](), list[SetResult]()
    run = 0
    while len(results) < count:
        backups = min(FULL_BACKUPS_PER_RUN, count - len(results))
        extra = ["--kinds", "full", "--backups", str(backups), "--threads", "1", "--slow", "1", "--lazy", "0"]
        extra += ["--value-size", "300", "--pause", "0.0005", "0.0005", "--preload-mb", "5" if run == 0 else "0"]
        status, stderr = run_driver(driver_command(home, target, run, seed, *extra), transcript)
        new = check_new_sets(home, target, transcript, checked)
        new += [
            SetResult("-", b.kind, problems=[f"run {run}: backup {b.seq} was refused: {b.refused[0]} {b.refused[1]}"])
            for b in transcript.backups
            if b.run == run and b.refused is not None
        ]
        if status != 0:
            new.append(SetResult("-", "run", problems=[f"run {run} exited with {status}: {stderr[-2000:]}"]))
        for result in new:
            on_result(result)
        results += new
        if status != 0:
            break
        run += 1
    return results


def run_kill_rounds(folder: Path, rounds: int, seed: int, say: Callable[[str], None] = print) -> list[str]:
    """``rounds`` runs of the driver on one home, each but the last killed at a point drawn from the seed; after
    each, the new complete sets are checked. Returns the problems of the first run that had any (none: [])."""
    home, target = folder / "home", folder / "target"
    transcript, checked = Transcript(), set[str]()
    for run in range(rounds):
        rng = random.Random(seed * 1000 + run)
        last = run == rounds - 1
        kill = None if last else KillPoint.draw(rng, first_run=run == 0)
        extra = ["--threads", str(rng.choice([1, 2, 3])), "--backups", "3" if last else "0"]
        extra += ["--preload-mb", "5" if run == 0 else "0"]
        status, stderr = run_driver(driver_command(home, target, run, seed, *extra), transcript, kill)
        where = f"seed {seed}, run {run} ({kill.describe() if kill else 'to the end'})"
        if status != (0 if last else -signal.SIGKILL):
            return [f"{where}: exit {status}\n{stderr[-3000:]}"]
        new = check_new_sets(home, target, transcript, checked)
        say(f"{where}: {describe_run(transcript, run)}")
        for result in new:
            say(f"  {result}")
        problems = [str(r) for r in new if r.problems]
        problems += refusal_problems(transcript, killed_with_a_set(transcript, list_sets(LocalTarget(str(target)))))
        if problems:
            return [f"{where}:", *problems, f"(home and target kept in {folder})"]
    if not checked:
        return [f"seed {seed}: no backup set was complete"]
    return []


@pytest.mark.slow
def test_full_backups_while_checkpoints_run(tmp_path: Path) -> None:
    seed, count = torture_seed(), setting("SHADOWSTORE_BACKUP_TORTURE_FULLS", 10, 100)
    results = run_full_backups(tmp_path, count, seed)
    failed = [str(r) for r in results if r.problems]
    assert not failed, f"seed {seed}: {len(failed)} of {len(results)} failed:\n" + "\n".join(failed)
    assert len(results) == count


@pytest.mark.slow
def test_backups_killed_at_random_moments(tmp_path: Path) -> None:
    seed, rounds = torture_seed(), setting("SHADOWSTORE_BACKUP_TORTURE_ROUNDS", 16, 120)
    problems = run_kill_rounds(tmp_path, rounds, seed)  # prints each run: pytest shows it with a failure
    assert not problems, "\n".join(problems)
