"""A differential crash fuzzer (issue 10): random plans of writers on several stores, checkpoints, rolls,
remounts, power losses and failed fsyncs on one storage group, every mount checked against a model
(tests/engine/crashmodel.py: every acknowledged transaction whole, none partial, and the mount succeeds).

A plan is a list of steps run in one thread, interleaved by the seed, so that it replays:

* ``("begin", s, lazy)`` opens a write transaction in store ``s`` that stays open while other steps run;
  ``put``/``delete``/``create``/``drop`` go to the open transaction of their store (one is begun, lazy if
  ``Plan.lazy``, when there is none); ``("commit", s)`` and ``("abort", s)`` end it. Values are 0 bytes to
  200 KiB: the large ones go out of line into blob pages and their records span 64 KiB log generations.
* ``checkpoint`` (the storage group), ``store_checkpoint`` (one store, often while another store has a
  transaction open), ``roll`` (``sg.log.roll(); sg.log.flush()``), ``maintenance`` (one cycle),
  ``remount`` (commit what is open, check what readers see, dismount, mount).
* ``("store_dismount", s)`` commits what is open in store ``s`` and dismounts it alone while the storage group
  stays mounted; ``("store_mount", s)`` mounts it again, as does the next step that writes to it (and every
  mount of the storage group).
* kill -9 at a random instant, in process: ``("arm", point, n, mode)`` turns the n-th arrival at an engine
  crash point into a power loss, ``("crash", mode)`` loses power between two steps, ``("arm_recovery", ...)``
  cuts the next recovery; ``mode`` is the disk a restarted machine finds (``drop``: unsynced writes lost,
  ``tear``: unsynced sectors land at random, ``keep``: a process crash). ``("fail_fsync", path, n)`` fails
  an fsync as Linux does; the engine may then fail, and the storage group is mounted again in process.

Plans have 2-3 stores, 8 KiB and sometimes 32 KiB pages, and quiet maintenance (tests.conftest.QUIET) or, for a
fifth of them (all of them in the production pass of ``make test``), the production defaults with their
thread. Why steps rather than threads: a failing plan must replay and shrink, and the interleavings that
matter (a transaction open in one store while another commits lazily, checkpoints or rolls) are steps here.
Why a few step kinds carry so much weight (``begin``, ``crash``, lazy plans): lazy records stay unflushed only
until the next durable commit, so losing power in that window needs lazy plans and frequent power losses.

CI runs 100 fixed seeds of 120 steps and 150 derandomized hypothesis plans (about 10 s on one core; the
CI test also fails if the seeds stop reaching the engine's crash points, fsync failures or log rolls). The
long mode explores with new seeds and new hypothesis plans each run, and hypothesis shrinks what fails::

    SHADOWSTORE_LONG=1 .venv/bin/pytest tests/engine/test_crash_fuzz.py -k fuzz
    SHADOWSTORE_LONG=1 SHADOWSTORE_FUZZ_SEEDS=5000 SHADOWSTORE_FUZZ_EXAMPLES=5000 .venv/bin/pytest ... -k fuzz

A failure prints its plan as ``run_plan(Plan(...))``, which replays it, and its seed;
``SHADOWSTORE_FUZZ_SEED=<n>`` (with ``SHADOWSTORE_LONG=1`` for a long-mode seed) replays one seed and
shrinks it to the fewest steps that still fail the same way. What the fuzzer found is at the end of this file.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from shadowstore.errors import DiskIOError, ShadowStoreError, StorageGroupOfflineError
from shadowstore.io.faulty import FaultFileSystem
from tests.conftest import PRODUCTION, QUIET, fault_home, reopen
from tests.engine.crashmodel import MAX_VALUE, MODES, Commit, Model, Plan, Stats, Step
from tests.engine.crashworld import FuzzFailure, run_plan

# The engine's crash points (src/shadowstore/engine); the CI run fails when one is never reached or an
# unknown one appears, so this list cannot go stale unnoticed.
POINTS = (
    "log.flush.after_write",
    "log.flush.after_sync",
    "log.roll.after_new_header",
    "log.roll.after_archive_rename",
    "log.roll.after_current_rename",
    "log.roll.after_dir_sync",
    "flush.after_page_write",
    "flush.after_page_sync",
    "header.after_primary_write",
    "header.after_primary_sync",
    "header.after_shadow_write",
    "chk.after_primary_write",
    "chk.after_primary_sync",
    "dismount.after_detach_record",
    "dismount.after_clean_header",
    "mount.after_attach_record",
)
FREQUENT = {"log.flush.after_write": 40, "log.flush.after_sync": 25, "header.after_primary_write": 8}
FSYNC_PATHS = ("", ".log", ".edb", ".chk")
CI_SEEDS = range(1, 101)
CI_PLAN_LENGTH = 120
LONG_PLAN_LENGTH = 250


# --- plans from a seed ----------------------------------------------------------------------------------------

KINDS = (
    ("put", 30),
    ("delete", 7),
    ("begin", 14),
    ("commit", 14),
    ("abort", 2),
    ("create", 2),
    ("drop", 2),
    ("checkpoint", 4),
    ("store_checkpoint", 4),
    ("roll", 3),
    ("maintenance", 3),
    ("remount", 1),
    ("store_dismount", 2),
    ("store_mount", 1),
    ("crash", 4),
    ("arm", 5),
    ("arm_recovery", 1),
    ("fail_fsync", 1),
)


def random_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.1:
        return 0
    if r < 0.45:
        return rng.randrange(1, 200)
    if r < 0.7:
        return rng.randrange(200, 4000)
    if r < 0.85:
        return rng.randrange(4000, 40_000)
    return rng.randrange(40_000, MAX_VALUE + 1)


def random_arm(rng: random.Random) -> tuple[str, int, str]:
    point = rng.choice(POINTS)
    return point, rng.randrange(FREQUENT.get(point, 3)), rng.choice(MODES)


def random_step(rng: random.Random) -> Step:
    kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
    s, table, key = rng.randrange(3), rng.randrange(3), rng.randrange(12)
    if kind == "put":
        return ("put", s, table, key, random_size(rng))
    if kind == "delete":
        return ("delete", s, table, key)
    if kind == "begin":
        return ("begin", s, rng.random() < 0.6)
    if kind in ("create", "drop"):
        return (kind, s, table)
    if kind in ("commit", "abort", "store_checkpoint", "store_dismount", "store_mount"):
        return (kind, s)
    if kind == "crash":
        return ("crash", rng.choice(MODES))
    if kind in ("arm", "arm_recovery"):
        return (kind, *random_arm(rng))
    if kind == "fail_fsync":
        return ("fail_fsync", rng.choice(FSYNC_PATHS), rng.randrange(6))
    return (kind,)


def random_plan(seed: int, length: int = CI_PLAN_LENGTH) -> Plan:
    rng = random.Random(seed)
    stores = rng.choice((2, 2, 3))
    page_size = rng.choice((8192, 8192, 8192, 32768))
    busy = rng.random() < 0.2 or PRODUCTION  # why: the production pass of `make test` runs every plan busy
    lazy = rng.random() < 0.4
    return Plan(tuple(random_step(rng) for _ in range(length)), page_size, stores, busy, lazy, seed)


def long_mode() -> bool:
    return os.environ.get("SHADOWSTORE_LONG", "") not in ("", "0")


# --- the fuzzer -----------------------------------------------------------------------------------------------


def test_fuzz_fixed_seeds() -> None:
    """CI: fixed seeds (long mode: many random ones). Every failing seed is reported with its replay; one seed
    given with SHADOWSTORE_FUZZ_SEED is also shrunk to the fewest steps that still fail the same way."""
    one = os.environ.get("SHADOWSTORE_FUZZ_SEED")
    length = LONG_PLAN_LENGTH if long_mode() else CI_PLAN_LENGTH
    if one is not None:
        seeds = [int(one)]
    elif long_mode():
        count = int(os.environ.get("SHADOWSTORE_FUZZ_SEEDS", "500"))
        seeds = [random.SystemRandom().randrange(1 << 31) for _ in range(count)]
    else:
        seeds = list(CI_SEEDS)
    total = Stats()
    failures = []
    for seed in seeds:
        plan = random_plan(seed, length)
        try:
            add_stats(total, run_plan(plan))
        except FuzzFailure as exc:
            again = f"SHADOWSTORE_FUZZ_SEED={seed}{' SHADOWSTORE_LONG=1' if long_mode() else ''}"
            failures.append(f"seed {seed} (replay: {again}): {exc}")
            if one is not None:
                failures.append(f"shrunk: run_plan({shrink(plan, failure_kind(exc))!r})")
    summary = [f.splitlines()[0] for f in failures if f.startswith("seed ")]
    assert not failures, "\n".join(
        [f"{len(summary)} of {len(seeds)} seeds failed:", *summary, "", "the first ones in full:", "", *failures[:3]]
    )
    if one is None and not long_mode():
        assert_coverage(total)


def add_stats(total: Stats, stats: Stats) -> None:
    total.commits += stats.commits
    total.failures += stats.failures
    total.checks += stats.checks
    total.generations = max(total.generations, stats.generations)
    total.points_seen |= stats.points_seen
    for point, count in stats.crashes.items():
        total.crashes[point] = total.crashes.get(point, 0) + count


def assert_coverage(total: Stats) -> None:
    """The CI seeds reach what the fuzzer claims to reach (a fuzzer that never crashes cannot fail)."""
    engine_points = {p for p in total.points_seen if not p.startswith(("backup.", "restore."))}
    assert engine_points - set(POINTS) == set(), f"crash points the fuzzer does not know: {engine_points - set(POINTS)}"
    assert set(POINTS) - engine_points == set(), f"crash points never reached: {set(POINTS) - engine_points}"
    fired = {p for p in total.crashes if p in POINTS}
    assert len(fired) >= len(POINTS) - 2, f"only {sorted(fired)} cut a run"
    assert total.crashes.get("between steps", 0) >= 50
    assert total.failures >= 10, "injected fsync failures rarely made the engine fail"
    assert total.generations >= 10, "the logs never rolled far"
    assert total.checks >= 5 * len(CI_SEEDS)


def failure_kind(exc: BaseException) -> str:
    """The first line of a failure with its numbers blanked: what a shrunk plan must still fail with."""
    return re.sub(r"\d+", "N", str(exc).splitlines()[0])[:100]


def shrink(plan: Plan, kind: str) -> Plan:
    """Drop runs of steps, halving their length, while the plan still fails with ``kind`` (hypothesis shrinks
    the plans it makes; this does it for a seed's)."""

    def fails(steps: list[Step]) -> bool:
        try:
            run_plan(replace(plan, steps=tuple(steps)))
        except FuzzFailure as exc:
            return failure_kind(exc) == kind
        return False

    steps = list(plan.steps)
    chunk = max(1, len(steps) // 2)
    while chunk >= 1:
        i, dropped = 0, False
        while i < len(steps):
            if fails(steps[:i] + steps[i + chunk :]):
                steps, dropped = steps[:i] + steps[i + chunk :], True
            else:
                i += chunk
        chunk = chunk if dropped else chunk // 2
    return replace(plan, steps=tuple(steps))


def plans(explore: bool) -> st.SearchStrategy[Plan]:
    """Plans for hypothesis; only the long mode adds the production maintenance thread, whose timing does not
    replay (a derandomized CI run must fail the same way twice)."""
    sizes = st.one_of(
        st.just(0),
        st.integers(1, 200),
        st.integers(200, 4000),
        st.integers(4000, 40_000),
        st.integers(40_000, MAX_VALUE),
    )
    store, table, key, mode = st.integers(0, 2), st.integers(0, 2), st.integers(0, 11), st.sampled_from(MODES)
    arm = st.sampled_from(POINTS).flatmap(
        lambda p: st.tuples(st.just(p), st.integers(0, FREQUENT.get(p, 3) - 1), st.sampled_from(MODES))
    )
    put = st.tuples(st.just("put"), store, table, key, sizes)
    commit = st.tuples(st.just("commit"), store)
    steps = st.one_of(
        put,
        put,
        put,
        commit,
        commit,
        st.tuples(st.just("delete"), store, table, key),
        st.tuples(st.just("begin"), store, st.booleans()),
        st.tuples(st.just("abort"), store),
        st.tuples(st.sampled_from(["create", "drop"]), store, table),
        st.tuples(st.just("store_checkpoint"), store),
        st.tuples(st.sampled_from(["store_dismount", "store_mount"]), store),
        st.tuples(st.sampled_from(["checkpoint", "roll", "maintenance", "remount"])),
        st.tuples(st.just("crash"), mode),
        arm.map(lambda a: ("arm", *a)),
        arm.map(lambda a: ("arm_recovery", *a)),
        st.tuples(st.just("fail_fsync"), st.sampled_from(FSYNC_PATHS), st.integers(0, 5)),
    )
    return st.builds(
        Plan,
        steps=st.lists(steps, max_size=LONG_PLAN_LENGTH if explore else CI_PLAN_LENGTH).map(tuple),
        page_size=st.sampled_from([8192, 32768]),
        stores=st.sampled_from([2, 3]),
        busy=st.booleans() if explore else st.just(PRODUCTION),
        lazy=st.booleans(),
        seed=st.integers(0, 1000),
    )


def test_fuzz_explore() -> None:
    """Hypothesis makes plans and shrinks a failing one. CI: derandomized examples; long mode: new ones each run."""
    long = long_mode()
    examples = int(os.environ.get("SHADOWSTORE_FUZZ_EXAMPLES", "1000")) if long else 150

    @settings(
        max_examples=examples,
        derandomize=not long,
        database=DirectoryBasedExampleDatabase(".hypothesis/examples") if long else None,  # failures replay
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        phases=[Phase.explicit, Phase.generate, Phase.shrink],  # why: the explain phase traces every line
    )
    @given(plans(long))
    def explore(plan: Plan) -> None:
        run_plan(plan)

    explore()


# --- the check can fail -----------------------------------------------------------------------------------------


def test_model_refuses_a_lost_acknowledged_commit_and_a_partial_one() -> None:
    model = Model(2)
    first = {"t0": {b"k000": b"a"}}
    second = {"t0": {b"k000": b"a", b"k001": b"b"}}
    model.commits += [Commit(0, first, None, "one"), Commit(1, first, None, "two"), Commit(0, second, None, "three")]
    model.acked = 2
    assert model.match([first, first]) == 2
    assert model.match([second, first]) == 3
    with pytest.raises(AssertionError, match="store 1 matches after \\[0, 1\\] commits"):
        model.match([first, {}])  # the acknowledged commit two is missing
    with pytest.raises(AssertionError, match="store 0 matches after no commits"):
        model.match([{"t0": {b"k001": b"b"}}, first])  # half of commit three
    with pytest.raises(AssertionError, match="no prefix"):
        model.match([second, {}])  # three without two, which came before it in the log


# --- reproductions of what the fuzzer found -------------------------------------------------------------------


def test_crash_after_store_checkpoint_with_open_transaction_while_lazy_put_spans_generations() -> None:
    """A checkpoint of a store with a write transaction open, after another store's lazy 150 KiB put pushed
    the generation records are laid out in past the one on disk: the header must not require logs a power
    loss loses (it said 'needs log generations 1-3; the newest generation is 1', -543 at mount; fixed in
    3a24a0a). Before that fix CI seeds 8 and 41 failed so, and seed 8 shrank to seven steps of this shape."""
    plan = Plan(
        (
            ("put", 1, 0, 0, 10),
            ("commit", 1),
            ("begin", 0, True),
            ("put", 0, 0, 0, 150 * 1024),
            ("commit", 0),
            ("put", 1, 0, 1, 10),
            ("store_checkpoint", 1),
            ("crash", "drop"),
        )
    )
    run_plan(plan)


def two_dirty_stores() -> FaultFileSystem:
    """The disk after a power loss that left both stores in Dirty Shutdown with a transaction to replay."""
    fs = FaultFileSystem(seed=1)
    sg = fault_home(fs).storage_group()
    sg.mount()
    for name in ("Mailbox Store", "Public Folder Store"):
        with sg.store(name).transaction() as tx:
            tx.create_table("t")
            tx.put("t", b"k", b"v")
    return fs.crash("drop")


def test_mount_again_after_recovery_failed_to_write_the_first_store() -> None:
    """Soft recovery fails writing the first store (fsync EIO): the second store's replay transaction keeps
    its writer latch, so mounting again in the same process waited forever (the fuzzer's hang)."""
    disk = two_dirty_stores()
    disk.fail_fsync(".edb")
    sg = reopen(disk).storage_group()
    with pytest.raises(ShadowStoreError):
        sg.mount()
    second = threading.Thread(target=sg.mount, name="second mount", daemon=True)
    second.start()
    second.join(5)
    assert not second.is_alive(), "the second mount hangs on a store writer latch the failed recovery kept"
    assert sg.mounted
    sg.dismount()


def test_crash_after_remount_that_followed_a_failed_log_fsync() -> None:
    """A commit's log fsync fails; the storage group is mounted again in the same process and commits go on.
    The mount must not build on log blocks the failed fsync lost (the page cache still shows them): after a
    power loss the next mount found zeros followed by valid blocks and refused with -501."""
    fs = FaultFileSystem(seed=1)
    sg = fault_home(fs).storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
    fs.fail_fsync("E00.log")
    with pytest.raises(StorageGroupOfflineError), store.transaction() as tx:
        tx.put("t", b"lost", b"never durable")
    with suppress(ShadowStoreError):
        sg.dismount()
    sg.mount()
    with store.transaction() as tx:
        tx.put("t", b"acked", b"durable")
    after = reopen(fs.crash("drop")).storage_group()
    after.mount()
    with after.store("Mailbox Store").snapshot() as snap:
        assert snap.get("t", b"acked") == b"durable"
    after.dismount()


def test_crash_after_remount_that_followed_a_failed_directory_fsync_in_a_roll() -> None:
    """A log roll's folder fsync fails after both renames; the storage group is mounted again in the same
    process. The mount stamped the stores' headers with the new generation while its name was not durable:
    after a power loss, 'needs log generations 2-2; the log folder has them only from generation 1' (-543)."""
    fs = FaultFileSystem(seed=1)
    sg = fault_home(fs, policy=QUIET).storage_group()  # why: no maintenance fsync may come between the two
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.create_table("t")
    wait_until(lambda: any(p.endswith("E00tmp.log") for p in fs.fsyncs_seen))  # the next log is prepared
    fs.fail_fsync(None, after=1)  # the roll syncs the new header, then the folder
    sg.log.roll()
    with pytest.raises(StorageGroupOfflineError):
        sg.log.flush()
    assert fs.fsyncs_seen[-1] == sg.config.log_dir
    with suppress(ShadowStoreError):
        sg.dismount()
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.put("t", b"acked", b"durable")
    after = reopen(fs.crash("drop")).storage_group()
    after.mount()
    with after.store("Mailbox Store").snapshot() as snap:
        assert snap.get("t", b"acked") == b"durable"
    after.dismount()


@pytest.mark.parametrize("path_contains", [None, "E00.log"], ids=["log folder", "current log"])
def test_mount_whose_resync_fsync_fails(path_contains: str | None) -> None:
    """The mount's first fsyncs (the folders, the current log's last block: engine/resync.py) fail. The mount
    must fail as the engine fails, with -1022 and a hint, not with the bare OSError it raised; the next mount
    goes on."""
    fs = FaultFileSystem(seed=1)
    sg = fault_home(fs).storage_group()
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.create_table("t")
        tx.put("t", b"k", b"v")
    sg.dismount()
    fs.fail_fsync(path_contains)
    with pytest.raises(DiskIOError):
        sg.mount()
    sg.mount()
    with sg.store("Mailbox Store").snapshot() as snap:
        assert snap.get("t", b"k") == b"v"
    sg.dismount()


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.001)
