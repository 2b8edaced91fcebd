"""The checks of the shared-target torture (tests/backup/shared_torture.py) and what they check against: each
home's acknowledged transactions and the sets that must hold them (``Home``), how each backup process ended
(``BackupEnd``) and the state of the run (``Torture``). Each check returns its problems as sentences, none when
all is well.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from shadowstore.backup.catalog import COMPLETE, INCOMPLETE, SetInfo, age, list_sets
from shadowstore.backup.target import Target, open_target
from shadowstore.engine.store import Store
from shadowstore.errors import ShadowStoreError, WorkloadMismatchError
from shadowstore.home import ServerHome
from shadowstore.restore.plan import RestoreTarget, plan_restore
from shadowstore.restore.run import INTO_RECOVERY_GROUP, RECOVERY_SG, run_restore
from shadowstore.tools import workload
from tests.backup.shared_torture_procs import Launch, Ran, TortureError, Transcript, run_stage
from tests.backup.test_backup_torture import (
    CHAIN_NOT_IN_TARGET,
    LOGS_MISSING,
    NO_FULL_BACKUP,
    TRUNCATED_BY_INCREMENTAL,
)
from tests.backup.torture_driver import SG, STORES
from tests.tools.test_torture import shadowstore

PRELOAD_SEED, PRELOAD_VALUE = 1000, 20000  # preload: seed = home seed + 1000, 20 kB values (about 40 kB a txn)
STARTUP_KILL_SHARE = 0.2  # of kills after a delay: while the program starts
REFUSED = 20  # the exit code of a backup run whose backup failed (its --json names the error)


# --- the homes ---------------------------------------------------------------------------------------------------


@dataclass
class Home:
    name: str  # "A" or "B"
    path: Path
    seed: int
    home_id: str = ""
    committed: int = 0  # transactions 1..committed of seed acknowledged so far
    needs_full: bool = False  # restored in place since its last full: incremental backups cannot continue
    unstamped: bool = False  # a full or incremental was killed after its manifest, and no full has ended since
    sets: dict[str, int] = field(default_factory=dict)  # every complete set seen -> transactions it must hold
    incomplete: set[str] = field(default_factory=set)  # every incomplete set seen

    def cli(self, *args: str) -> list[str]:
        return shadowstore("--home", str(self.path), *args)


@dataclass
class BackupEnd:
    home: Home
    kind: str
    how: str  # done, refused, killed or failed
    backup_id: str | None = None
    refusal: tuple[int, str] | None = None  # (ESE code, message)
    where: str = ""  # how it was killed
    left: str = ""  # what a killed backup left in the target (a prune may have removed an incomplete set since)

    def describe(self) -> str:
        if self.how == "refused" and self.refusal:
            return f"{self.home.name} {self.kind} refused {self.refusal[0]}"
        if self.how == "killed":
            return f"{self.home.name} {self.kind} killed {self.where}, leaving {self.left}"
        return f"{self.home.name} {self.kind} {self.how}{f' {self.where}' if self.where else ''}"


def backup_end(home: Home, kind: str, r: Ran) -> BackupEnd:
    """How a ``backup run --json`` process ended. Killed after it printed its result counts as done."""
    try:
        data = json.loads(r.stdout)
    except ValueError:
        data = {}
    where = f"at {r.launch.pause_at}" if r.launch.pause_at else f"after {r.launch.kill_after or 0:.2f}s"
    if data.get("backups"):
        return BackupEnd(home, kind, "done", data["backups"][0]["id"])
    if r.status == REFUSED and data.get("failed"):
        failed = data["failed"][0]
        return BackupEnd(home, kind, "refused", refusal=(int(failed["code"]), str(failed["message"])))
    if r.killed and r.status == -signal.SIGKILL:
        return BackupEnd(home, kind, "killed", where=where)
    return BackupEnd(home, kind, "failed", where=f"exit {r.status}: {r.stderr[-1500:]}")


def refusal_explained(home: Home, end: BackupEnd) -> bool:
    """Whether a refusal is one the rules allow (see refusal_problems in test_backup_torture.py): -569 for a
    differential after an incremental truncated its logs; -560 (chain) or -569 (logs) while a full or
    incremental killed after its manifest left a set that the store headers do not know."""
    assert end.refusal is not None
    code, message = end.refusal
    if code == -569 and TRUNCATED_BY_INCREMENTAL in message:
        return True
    return home.unstamped and (
        (code == -560 and CHAIN_NOT_IN_TARGET in message) or (code == -569 and message.endswith(LOGS_MISSING))
    )


# --- the state of the run -----------------------------------------------------------------------------------------


@dataclass
class Torture:
    folder: Path
    url: str
    seed: int
    transcript: Transcript
    older_restores: int = 1  # older complete sets restored per home and round (beside the newest)
    preload: int = 0  # transactions of big values each home commits once, before its first full backup
    homes: list[Home] = field(default_factory=list)
    durations: dict[str, list[float]] = field(default_factory=lambda: {"backup": [], "prune": [], "startup": []})

    @property
    def target(self) -> Target:
        return open_target(self.url)

    def other(self, home: Home) -> Home:
        return next(h for h in self.homes if h is not home)

    def quiet(self, *launches: Launch) -> list[Ran]:
        """Run processes that must all succeed; raises TortureError naming the one that did not."""
        ran = run_stage(list(launches), self.transcript)
        for r in ran:
            if r.status != 0:
                raise TortureError(f"{r.launch.label} exited with {r.status}: {r.stderr[-1500:]}")
        return ran

    def typical(self, what: str) -> float:
        """How long an unkilled backup or prune (or "startup": a command that does nothing) takes here."""
        seen = self.durations[what]
        return median(seen[-20:]) if seen else 0.5

    def kill_delay(self, rng: random.Random, what: str) -> float:
        """A random moment in the life of a backup or prune: in a fifth of the draws while Python starts,
        else while it works (about the last part of its typical run, and a little beyond)."""
        startup = self.typical("startup")
        if rng.random() < STARTUP_KILL_SHARE:
            return rng.uniform(0, startup)
        return rng.uniform(startup, max(startup + 0.05, 1.1 * self.typical(what)))


def backup_launch(t: Torture, home: Home, kind: str, delay: float = 0.0) -> Launch:
    argv = home.cli("backup", "run", "--sg", SG, "--kind", kind, "--to", t.url, "--json")
    return Launch(f"backup {home.name} {kind}", argv, delay)


# --- checks ------------------------------------------------------------------------------------------------------


def backup_problems(t: Torture, ends: list[BackupEnd], holds: int | None = None) -> list[str]:
    """Each backup ended as it may, and a new complete set of its home appeared exactly when it says so (a
    backup killed after its manifest leaves one). Records each new set with the transactions it must hold: all
    its home committed, or ``holds``."""
    problems = []
    for end in ends:
        home = end.home
        listed = list_sets(t.target, home=home.home_id)
        new = [s for s in listed if s.complete and s.backup_id not in home.sets]
        for s in new:
            home.sets[s.backup_id] = home.committed if holds is None else holds
        left = {s.backup_id for s in listed if not s.complete} - home.incomplete
        home.incomplete |= left
        ids = [s.backup_id for s in new]
        if end.how == "failed":
            problems.append(f"{end.kind} backup of {home.name} failed: {end.where}")
        elif end.how == "refused" and not refusal_explained(home, end):
            problems.append(f"{end.kind} backup of {home.name} was refused: {end.refusal}")
        if end.how == "done" and ids != [end.backup_id]:
            problems.append(f"{end.kind} backup {end.backup_id} of {home.name} ended, but the new sets are {ids}")
        elif end.how != "done" and len(ids) > (end.how == "killed"):
            problems.append(f"{end.kind} backup of {home.name} ended {end.how}, yet new sets appeared: {ids}")
        if any(s.kind != end.kind for s in new):
            problems.append(f"the {end.kind} backup of {home.name} left sets of another kind: {ids}")
        if end.how == "killed":
            end.left = "its set complete" if new else "its set incomplete" if left else "no set of it listed"
            home.unstamped = home.unstamped or (bool(new) and end.kind in ("full", "incremental"))
        if end.how == "done" and end.kind == "full":
            home.needs_full = home.unstamped = False
    return problems


def prune_contract_problems(t: Torture) -> list[str]:
    """After a prune that ran alone: each home keeps exactly one whole full, nothing older, nothing incomplete."""
    problems = []
    for home in t.homes:
        listed = list_sets(t.target, home=home.home_id)
        fulls = [s for s in listed if s.kind == "full" and s.whole]
        if len(fulls) != 1:
            problems.append(f"after a prune {home.name} has {len(fulls)} whole full backups: {_ids(fulls)}")
            continue
        older = [s for s in listed if s.complete and age(s) < age(fulls[0])]
        incomplete = [s for s in listed if not s.complete]
        if older or incomplete:
            problems.append(
                f"after a prune {home.name} still has sets older than its full {fulls[0].backup_id}: {_ids(older)}, "
                f"incomplete ones: {_ids(incomplete)}"
            )
    return problems


def _ids(sets: list[SetInfo]) -> str:
    return ", ".join(f"{s.backup_id} ({s.state})" for s in sets) or "none"


def check_restores(t: Torture, rng: random.Random) -> tuple[int, list[str]]:
    """The target's sets are all A's or B's and whole or incomplete; per home a restore plan exists, and the
    newest complete set and ``t.older_restores`` older ones restore with exactly that home's data."""
    everything = list_sets(t.target)
    problems = [
        f"set {s.folder} is {s.state}: {s.problem or s.why_not_usable()}"
        for s in everything
        if s.state not in (COMPLETE, INCOMPLETE)
    ]
    strangers = sorted({s.home for s in everything} - {h.home_id for h in t.homes})
    problems += [f"the target holds sets of unknown homes {strangers}"] if strangers else []
    restored = 0
    for home in t.homes:
        sets = [s for s in everything if s.home == home.home_id]
        complete = sorted((s for s in sets if s.whole), key=age)
        if not complete:
            problems.append(f"{home.name} has no complete set left")
            continue
        older = complete[:-1]
        chosen = rng.sample(older, min(t.older_restores, len(older)))
        for info in [complete[-1], *chosen]:
            found = restore_problems(t, home, sets, info, latest=info is complete[-1])
            t.transcript.write(f"restore of {home.name}'s {info.backup_id}: {'; '.join(found) or 'ok'}")
            problems += found
            restored += 1
    return restored, problems


def restore_problems(t: Torture, home: Home, sets: list[SetInfo], info: SetInfo, *, latest: bool) -> list[str]:
    """Restore ``info`` into the home's recovery storage group (the newest set: the latest state from all the
    home's sets; an older one: to its last generation from the sets of its log stream up to it) and check it."""
    assert info.manifest is not None
    where = f"{home.name}'s {info.kind} {info.backup_id}"
    if info.backup_id not in home.sets:
        return [f"{where} is complete but no backup of {home.name} says it made it"]
    try:
        if latest:
            plan = plan_restore(sets, RestoreTarget.latest(), sg=SG)
        else:
            path = [s for s in sets if s.same_stream(info) and age(s) <= age(info)]
            plan = plan_restore(path, RestoreTarget.at_generation(info.manifest.last_gen), sg=SG)
    except ShadowStoreError as exc:
        return [f"no restore plan for {where}: {exc.code} {exc.message}"]
    if plan.home != home.home_id or any(s.home != home.home_id for s in plan.sets):
        return [f"the plan for {where} uses sets of another home: {[s.folder for s in plan.sets]}"]
    server = ServerHome.open(str(home.path))
    try:
        run_restore(server, t.target, plan, into=INTO_RECOVERY_GROUP)
        with mounted(server, RECOVERY_SG) as stores:
            found = data_problems(stores, home, t.other(home), home.sets[info.backup_id], t.preload)
        # why: each restore into the recovery group quarantines the one before (as read_recovery_group does)
        shutil.rmtree(os.path.join(server.storage_group(RECOVERY_SG).config.log_dir, "quarantine"), ignore_errors=True)
    except ShadowStoreError as exc:
        return [f"restore of {where} failed: {exc.code} {exc.message}"]
    finally:
        server.close()
    return [f"{where} restored: {p}" for p in found]


@contextmanager
def mounted(server: ServerHome, sg_name: str) -> Iterator[list[Store]]:
    group = server.storage_group(sg_name)
    group.mount()
    try:
        yield [group.store(name) for name in STORES]
    finally:
        group.dismount()


def data_problems(stores: list[Store], home: Home, other: Home, committed: int, preload: int) -> list[str]:
    """``workload check`` of a restored storage group: exactly 1..``committed`` of the home's seed (and its
    ``preload``), and of the other home's seeds not one key (its check of transaction 1 must fail) in either
    store."""
    problems = []
    own = [(home.seed, committed, 100), (home.seed + PRELOAD_SEED, preload, PRELOAD_VALUE)]
    for seed, count, size in own[: 1 + bool(preload)]:
        try:
            workload.check(stores[0], seed=seed, committed=count, value_size=size, exact=True)
        except WorkloadMismatchError as exc:
            problems.append(f"its own transactions 1..{count}: {exc.message}")
    try:
        workload.check(stores[0], seed=other.seed, committed=1)
        problems.append(f"{other.name}'s transaction 1 is in {home.name}'s data")
    except WorkloadMismatchError:
        pass  # why: the other home's data must not be there
    for store in stores:
        for seed in (other.seed, other.seed + PRELOAD_SEED):
            try:
                workload.check(store, seed=seed, committed=0, exact=True)
            except WorkloadMismatchError as exc:
                problems.append(f"{other.name}'s data is in {store.name!r}: {exc.message}")
    return problems


def check_in_place(t: Torture, home: Home, *, stop_at_backup: bool) -> list[str]:
    """Restore ``home`` in place from the shared target with the CLI. By default the restore rolls forward
    through the home's own live logs, so ``workload check`` must find exactly every transaction it acknowledged;
    with ``--stop-at-backup`` exactly those of its newest complete set. Never a key of the other home's."""
    other = t.other(home)
    newest = max((s for s in list_sets(t.target, home=home.home_id) if s.whole), key=age)
    want = home.committed if not stop_at_backup else home.sets[newest.backup_id]
    how = ["--stop-at-backup"] if stop_at_backup else []
    argv = home.cli("restore", "run", "--from", t.url, "--sg", SG, "--in-place", "--yes", *how, "--json")
    r = run_stage([Launch(f"restore {home.name} in place", argv)], t.transcript)[0]
    where = f"the in-place restore of {home.name}{' --stop-at-backup' if stop_at_backup else ''}"
    if r.status != 0:
        return [f"{where} exited with {r.status}: {r.stderr[-1500:]}"]
    home.needs_full = True  # why: the stores now carry the backup state of the set they came from
    said = json.loads(r.stdout)
    if said["plan"]["home"] != home.home_id:
        return [f"{where} used the sets of home {said['plan']['home']}"]
    checks = [
        (["--seed", str(home.seed), "--committed", str(want), "--exact"], 0, f"its own 1..{want} exactly"),
        (["--seed", str(other.seed), "--committed", "1"], WorkloadMismatchError.exit_code, f"{other.name}'s data"),
        (["--seed", str(other.seed), "--committed", "0", "--exact"], 0, f"no key of {other.name}'s"),
    ]
    problems = []
    for args, status, what in checks:
        argv = home.cli("workload", "check", "--sg", SG, *args)
        done = run_stage([Launch(f"check {home.name}", argv)], t.transcript)[0]
        if done.status != status:
            problems.append(
                f"after {where} (newest set {newest.backup_id}) 'workload check {' '.join(args)}' ({what}) exited "
                f"with {done.status}, not {int(status)}: {(done.stdout + done.stderr)[-800:]}"
            )
    new_stream = bool(said["restore"]["new_log_stream"])
    return problems + incremental_after_restore_problems(t, home, new_stream, want)


def incremental_after_restore_problems(t: Torture, home: Home, new_stream: bool, holds: int) -> list[str]:
    """An incremental right after an in-place restore. When the restore started a new log stream (it stopped
    before the end of the live one) it must be refused, never continue the chain of the old stream's sets in
    the target: -560 (the stores have no full backup, or the target holds none of the new stream) or -569 (the
    stores name generations of the old stream that the new one lacks). When the restore reached the end of the
    live stream, the stream goes on and the incremental may continue it (its set holds ``holds``
    transactions) or be refused for one of those reasons."""
    r = run_stage([backup_launch(t, home, "incremental")], t.transcript)[0]
    end = backup_end(home, "incremental", r)
    if end.how == "done" and not new_stream:
        return backup_problems(t, [end], holds)
    if end.how == "refused" and end.refusal is not None:
        code, message = end.refusal
        if (code == -560 and (NO_FULL_BACKUP in message or CHAIN_NOT_IN_TARGET in message)) or (
            code == -569 and message.endswith(LOGS_MISSING)
        ):
            return []
    said = f"refused {end.refusal}" if end.refusal else f"{end.how} {end.backup_id or end.where}"
    stream = "a new log stream" if new_stream else "the same log stream"
    return [f"an incremental backup of {home.name} right after its in-place restore ({stream}): {said}"]
