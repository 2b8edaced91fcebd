"""Shared-target torture: two server homes back up into one target while prunes run, with random kill -9.

    summary = run_shared_torture(folder, target_url, rounds=50, seed=SEED, say=print)

Two homes, A and B, each made with ``init --log-file-size 64K`` and ``config set backup.lease_seconds 5`` (so the
lease of a killed backup runs out fast), both with the default "First Storage Group" and each with its own
workload seed, take a full backup into the shared target. Then each round:

1. each home commits 10-60 more transactions (``workload run --txns N`` commits 1..N of its seed again); the N
   of each home is remembered, because a backup must hold exactly the transactions acknowledged before it began;
2. both homes start a backup of a random kind (a full while a home has no full since it was restored in place),
   and a ``backup prune --keep-full 1 --yes`` from a random home starts a random moment later, so that it runs
   before, during or after them; in 3/4 of the rounds one of the three gets SIGKILL (``aim_kill``), either a
   random delay after it started (mostly while it works: the delays follow how long these programs take here),
   or, for a backup, at one of its crash points (SHADOWSTORE_PAUSE_AT, as tests/backup/test_backup_torture.py
   does), or, for a prune, as it prints its plan or the first set it deleted;
3. ``backup_problems``: every backup ended as a backup may (done; refused for a reason an earlier kill or the
   documented differential rule explains; killed), and a set of its home appeared exactly when it says so;
4. in some rounds a prune then runs alone, "between" backups, and must leave each home exactly one whole full
   backup, nothing older and no incomplete set (``prune_contract_problems``);
5. ``check_restores``: the target holds only sets of A and B, each complete or incomplete (none damaged,
   unreadable or still running); for each home ``plan_restore`` of its own sets succeeds (a restorable full
   always exists), and its newest complete set (to the latest state) and a random older one (to its last
   generation) restore into that home's Recovery Storage Group holding exactly that home's transactions
   committed before the backup began, and not one key of the other home's;
6. ``check_in_place``: every IN_PLACE_EVERY rounds one home (A, B, A, B, ...) is restored in place with
   ``restore run --in-place --yes``, which rolls forward through the home's own live logs (so ``workload check``
   must find exactly every transaction it acknowledged), or, every other time for each home, with
   ``--stop-at-backup`` (exactly its newest backup's transactions); never a key of the other home's. An
   incremental right then must be refused when the restore started a new log stream (it may continue the
   stream when the restore reached its end), and the home's next backups are fulls until one completes.

With ``preload_mb`` each home first commits that many MB of 20 kB values (seed + 1000), so that copying a store
takes a while and more random kills land while a set is written; restores check those transactions too.

Everything every process printed goes to ``<folder>/transcript.txt``. The first round with a problem ends the
run; its problems are in the summary, and the caller keeps the folder. The process runner is in
shared_torture_procs.py; the homes, the state of the run and the checks are in shared_torture_checks.py.
"""

from __future__ import annotations

import random
import re
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shadowstore.errors import ShadowStoreError
from shadowstore.home import ServerHome
from tests.backup.shared_torture_checks import (
    PRELOAD_SEED,
    PRELOAD_VALUE,
    BackupEnd,
    Home,
    Torture,
    backup_end,
    backup_launch,
    backup_problems,
    check_in_place,
    check_restores,
    prune_contract_problems,
)
from tests.backup.shared_torture_procs import Launch, Ran, TortureError, Transcript, run_stage
from tests.backup.test_backup_torture import CRASH_POINTS

SEED = 20261207
HOME_SEEDS = {"A": 101, "B": 202}  # workload seeds: the two homes' data differ in every key
KINDS, KIND_WEIGHTS = ("full", "incremental", "differential", "copy"), (3, 3, 2, 1)
FIRST_COMMITS, COMMITS_PER_ROUND = 40, (10, 60)
KILL_SHARE = 0.75  # rounds in which one backup or prune is killed
PAUSE_SHARE = 0.5  # of killed backups: at a crash point rather than after a delay
PRUNE_LINE_KILL_SHARE = 0.6  # of killed prunes: as a line says it planned or deleted a set, not after a delay
PRUNE_PLANNED, PRUNE_DELETED_ONE = r"Pruning: ", r"deleted .+ \(\d+ files\)$"  # what 'backup prune' prints
QUIET_PRUNE_SHARE = 0.4  # rounds followed by a prune on its own
IN_PLACE_EVERY = 4
LEASE_SECONDS = "5"


# --- the run ---------------------------------------------------------------------------------------------------


@dataclass
class Summary:
    target: str
    seed: int
    rounds: int = 0
    backups: Counter[str] = field(default_factory=Counter)
    prunes: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)  # what each kill cut: "backup leaving no set of it", ...
    restores: int = 0  # into a recovery storage group, each checked
    in_place: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self, seconds: float) -> str:
        b, p = self.backups, self.prunes
        return (
            f"{self.target}: {self.rounds} rounds, {sum(b.values())} backups ({b['done']} done, {b['refused']} "
            f"refused, {b['killed']} killed), {sum(p.values())} prunes ({p['killed']} killed), {self.restores} "
            f"restores into the recovery group and {self.in_place} in place checked, {len(self.problems)} "
            f"problems (seed {self.seed}, {seconds:.0f}s); kills: {dict(sorted(self.kills.items()))}"
        )


def run_shared_torture(
    folder: Path,
    url: str,
    rounds: int,
    seed: int = SEED,
    *,
    say: Callable[[str], None] = print,
    older_restores: int = 1,
    preload_mb: float = 0.0,
) -> Summary:
    """The torture of the module documentation on ``url`` (a directory or ``s3://bucket/prefix``), homes and
    transcript in ``folder``. Stops at the first round with a problem; the summary lists the problems."""
    folder.mkdir(parents=True, exist_ok=True)
    preload = round(preload_mb * 1e6 / (2 * PRELOAD_VALUE))  # why 2: a transaction writes 1-3 keys
    t = Torture(folder, url, seed, Transcript(folder / "transcript.txt"), older_restores, preload)
    summary = Summary(url if "://" in url else "local", seed)
    say(f"shared torture on {url}, seed {seed}, {rounds} rounds; homes and transcript in {folder}")
    try:
        make_homes(t)
        for number in range(1, rounds + 1):
            started = time.monotonic()
            words, problems = play_round(t, number, summary)
            summary.rounds = number
            verdict = "ok" if not problems else f"{len(problems)} PROBLEMS"
            say(f"round {number:3d}: {'; '.join(words)}; {verdict} ({time.monotonic() - started:.1f}s)")
            t.transcript.write(f"=== round {number}: {verdict}\n" + "\n".join(problems))
            if problems:
                summary.problems += [f"seed {seed}, round {number}: {p}" for p in problems]
                break
    except (TortureError, ShadowStoreError) as exc:
        summary.problems.append(f"seed {seed}, round {summary.rounds + 1}: {exc}")
    except Exception:  # why: a harness bug or a surprise in an output must still end in a report, folder kept
        summary.problems.append(f"seed {seed}, round {summary.rounds + 1}: {traceback.format_exc()}")
    return summary


def make_homes(t: Torture) -> None:
    """Homes A and B with their first transactions and a full backup each in the target."""
    for name, seed in HOME_SEEDS.items():
        home = Home(name, t.folder / name, seed)
        t.quiet(Launch(f"init {name}", home.cli("init", "--log-file-size", "64K")))
        lease = t.quiet(Launch(f"lease {name}", home.cli("config", "set", "backup.lease_seconds", LEASE_SECONDS)))
        t.durations["startup"].append(lease[0].seconds)
        with ServerHome.open(str(home.path)) as server:
            home.home_id = server.home_id
        t.homes.append(home)
    if t.preload:  # why: bigger stores take longer to copy, so more kills land while a set is written
        t.quiet(*(Launch(f"preload {h.name}", h.cli("workload", "run", *preload_args(t, h))) for h in t.homes))
    commit(t, {h.name: FIRST_COMMITS for h in t.homes})
    ran = t.quiet(*(backup_launch(t, h, "full") for h in t.homes))
    for home, r in zip(t.homes, ran, strict=True):
        end = backup_end(home, "full", r)
        if end.backup_id is None:
            raise TortureError(f"the first full backup of {home.name} did not end: {end.describe()}")
        home.sets[end.backup_id] = home.committed
    t.transcript.write(f"homes: {', '.join(f'{h.name} = {h.home_id} (seed {h.seed})' for h in t.homes)}")


def preload_args(t: Torture, home: Home) -> list[str]:
    return ["--txns", str(t.preload), "--seed", str(home.seed + PRELOAD_SEED), "--value-size", str(PRELOAD_VALUE)]


def commit(t: Torture, more: dict[str, int]) -> None:
    for home in t.homes:
        home.committed += more[home.name]
    t.quiet(
        *(
            Launch(f"commit {h.name}", h.cli("workload", "run", "--txns", str(h.committed), "--seed", str(h.seed)))
            for h in t.homes
        )
    )


def prune_launch(t: Torture, home: Home, delay: float = 0.0) -> Launch:
    argv = home.cli("backup", "prune", "--to", t.url, "--keep-full", "1", "--yes")
    return Launch(f"prune from {home.name}", argv, delay)


def play_round(t: Torture, number: int, summary: Summary) -> tuple[list[str], list[str]]:
    """One round (steps 1-6 of the module documentation): what happened in words, and the problems."""
    rng = random.Random(f"{t.seed}:{number}")
    commit(t, {h.name: rng.randint(*COMMITS_PER_ROUND) for h in t.homes})
    kinds = {h.name: "full" if h.needs_full else rng.choices(KINDS, KIND_WEIGHTS)[0] for h in t.homes}
    spread = t.typical("backup")
    launches = [backup_launch(t, h, kinds[h.name], rng.uniform(0, 0.2 * spread)) for h in t.homes]
    launches.append(prune_launch(t, rng.choice(t.homes), rng.uniform(0, 1.2 * spread)))
    if rng.random() < KILL_SHARE:
        aim_kill(t, rng, rng.choice(launches))
    t.transcript.write(f"=== round {number}: {', '.join(lo.label for lo in launches)}")
    ran = run_stage(launches, t.transcript)
    *backups, prune = ran
    ends = [backup_end(h, kinds[h.name], r) for h, r in zip(t.homes, backups, strict=True)]
    for r in ran:
        if not r.killed and r.status == 0:
            t.durations[r.launch.label.split()[0]].append(r.seconds)
    problems = backup_problems(t, ends) + _prune_problems(prune)
    for end in ends:
        if end.how == "killed" and end.left.startswith("no set") and _pruned_incomplete(end, prune):
            end.left = "its set incomplete (the prune deleted it)"
    words = [e.describe() for e in ends] + [_prune_words(prune)]
    summary.backups.update(e.how for e in ends)
    summary.kills.update(f"backup leaving {e.left}" for e in ends if e.how == "killed")
    if prune.killed and prune.status < 0:
        summary.prunes.update(["killed"])
        summary.kills.update([f"prune {_prune_cut(prune)}"])
    else:
        summary.prunes.update(["done"])
    quiet_prune = not problems and rng.random() < QUIET_PRUNE_SHARE
    if quiet_prune:
        r = run_stage([prune_launch(t, rng.choice(t.homes))], t.transcript)[0]
        summary.prunes.update(["done"])
        problems += _prune_problems(r) or prune_contract_problems(t)
        words.append("quiet prune")
    if not problems:
        restored, found = check_restores(t, rng)
        summary.restores += restored
        problems += found
        words.append(f"{restored} restores")
    if not problems and number % IN_PLACE_EVERY == 0:
        home = t.homes[(number // IN_PLACE_EVERY - 1) % len(t.homes)]
        stop = (number // IN_PLACE_EVERY) % 4 in (2, 3)  # why: A and B each get both kinds in 4 such rounds
        problems += check_in_place(t, home, stop_at_backup=stop)
        summary.in_place += 1
        words.append(f"{home.name} restored in place{' --stop-at-backup' if stop else ''}")
    return words, problems


def aim_kill(t: Torture, rng: random.Random, victim: Launch) -> None:
    """Where ``victim`` gets SIGKILL: a random delay after it started; for a backup also (PAUSE_SHARE) at one of
    its crash points; for a prune also as it prints its plan (it is about to delete) or its first deleted set
    (while it deletes: a prune prints each set as it is gone)."""
    how = rng.random()
    if victim.label.startswith("backup") and how < PAUSE_SHARE:
        victim.pause_at = rng.choice(CRASH_POINTS)
    elif victim.label.startswith("prune") and how < PRUNE_LINE_KILL_SHARE:
        victim.kill_on = rng.choice([PRUNE_PLANNED, PRUNE_DELETED_ONE])
    else:
        victim.kill_after = t.kill_delay(rng, victim.label.split()[0])


def _prune_words(r: Ran) -> str:
    if r.killed and r.status < 0:
        lines = {PRUNE_PLANNED: "as it printed its plan", PRUNE_DELETED_ONE: "as it printed a deleted set"}
        when = lines[r.launch.kill_on] if r.launch.kill_on else f"after {r.launch.kill_after or 0:.2f}s"
        return f"{r.launch.label} killed {when}, {_prune_cut(r)}"
    counts = re.findall(r"^deleted (\d+) set\(s\)", r.stdout, re.MULTILINE)
    return f"{r.launch.label} ({counts[-1] if counts else '?'} deleted)"


def _pruned_incomplete(end: BackupEnd, prune: Ran) -> bool:
    """Whether ``prune`` deleted a set of ``end``'s home and kind that was never complete (the killed backup's)."""
    for folder in re.findall(r"^deleted (.+) \(\d+ files\)$", prune.stdout, re.MULTILINE):
        home_id, backup_id = folder.split("/", 1)[0], folder.rsplit("/", 1)[1]
        if home_id == end.home.home_id and f"-{end.kind}-" in backup_id and backup_id not in end.home.sets:
            return True
    return False


def _prune_cut(r: Ran) -> str:
    """Where a killed prune was, by what it had printed: each set as it is deleted, then a last line."""
    if re.search(r"^deleted \d+ set\(s\)", r.stdout, re.MULTILINE):
        return "after it ended"
    deleted = len(re.findall(r"^deleted .+ \(\d+ files\)$", r.stdout, re.MULTILINE))
    if deleted:
        return "while deleting"
    return "while planning" if r.stdout else "before its plan"


def _prune_problems(r: Ran) -> list[str]:
    if r.status == 0 or (r.killed and r.status == -signal.SIGKILL):
        return []
    return [f"{r.launch.label} exited with {r.status}: {r.stderr[-1500:]}"]
