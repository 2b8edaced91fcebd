"""The crash fuzzer's driver: a plan of steps run against one storage group on the fault-injecting file
system, every mount checked against the model of crashmodel.py (test_crash_fuzz.py describes the steps).

The driver (``World``) restarts the machine on ``fs.crash(mode)`` after every simulated power loss (an armed
crash point, a ``crash`` step, or a thread that found the disk gone), and after an engine error that follows
an injected fsync failure it dismounts and mounts in the same process, as an administrator would after event
1020. Either way the mount must succeed and the check must hold; then the plan goes on. For replay, every
file call comes in step order: the log-prepare thread is stopped once a mount has prepared the next log (a
roll then prepares its own), and only ``Plan.busy`` adds a thread with its own timing (maintenance). An
engine that hangs is reported after ``run_plan``'s deadline with the stack it hangs in.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.engine.store import Store
from shadowstore.engine.transaction import Transaction
from shadowstore.errors import ShadowStoreError
from shadowstore.home import DEFAULT_SG, ServerHome
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from tests.conftest import HOME, QUIET
from tests.engine.crashmodel import (
    LOG_FILE_SIZE,
    THIRD_STORE,
    Commit,
    Model,
    Plan,
    State,
    Stats,
    describe_diff,
    make_value,
)


@dataclass
class OpenTxn:
    """A write transaction kept open between steps, and what the store will hold if it commits."""

    tx: Transaction
    lazy: bool
    view: State  # a copy (the tables are a few dozen keys; the values are shared)
    ops: int = 0  # operations the engine logs (a delete of an absent key logs nothing)


class World:
    """One storage group under a plan: the current disk, the mounted engine, open transactions, the model."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.policy: MaintenancePolicy = MaintenancePolicy() if plan.busy else QUIET
        self.fs = FaultFileSystem(seed=plan.seed)
        self.home = ServerHome.init(
            HOME, fs=self.fs, log_file_size=LOG_FILE_SIZE, page_size=plan.page_size, policy=self.policy
        )
        if plan.stores > 2:
            self.home.create_store(DEFAULT_SG, THIRD_STORE)
        self.sg: StorageGroup = self.home.storage_group()
        self.model = Model(plan.stores)
        self.open: dict[int, OpenTxn] = {}
        self.dismounted: set[int] = set()  # stores dismounted on their own while the storage group is mounted
        self.trace: list[str] = []
        self.stats = Stats()
        self.arms: dict[str, str] = {}  # armed crash point -> the disk a restarted machine sees
        self.recovery_arm: tuple[str, int, str] | None = None
        self.faults = False  # an fsync failure is armed: engine errors are expected until the next restart
        self.uid = 0
        self.crash_count = 0
        self.mount_and_check()

    # --- running --------------------------------------------------------------------------------------------

    def run(self) -> None:
        for index, step in enumerate(self.plan.steps):
            self.note(f"step {index}: {step!r}")
            self.guarded(functools.partial(getattr(self, f"do_{step[0]}"), *step[1:]))
        self.note("end of plan: commit what is open, remount, dismount")
        self.guarded(self.do_remount)
        for _attempt in range(6):  # why: a crash point or fsync failure still armed may cut the dismount
            self.guarded(self.sg.dismount)
            if not self.sg.mounted:
                return
        raise AssertionError("the storage group could not be dismounted")

    def guarded(self, action: Callable[[], None]) -> None:
        """Run ``action``; after a simulated power loss restart the machine, after an injected I/O failure
        dismount and mount in the same process, until the storage group is back."""
        last: BaseException | None = None
        for _attempt in range(6):
            try:
                action()
            except (SimulatedCrash, ShadowStoreError) as exc:
                last = exc
                # why crashed(): after a power loss in a thread the log writer reports it as -510
                if isinstance(exc, SimulatedCrash) or crashed(self.fs):
                    point = str(exc) if str(exc) in self.arms else "a thread"
                    self.note(f"  power lost at {point}")
                    self.stats.crash(point)
                    action = functools.partial(self.restart, self.arms.get(point, "drop"))
                elif self.faults:
                    self.note(f"  failed after the injected fsync failure: {exc}")
                    self.stats.failures += 1
                    action = self.remount_after_failure
                else:
                    raise
            else:
                self.model.acknowledge(self.sg.log.flushed)
                return
        raise AssertionError(f"the storage group was not back after 6 restarts; the last error: {last!r}")

    def note(self, line: str) -> None:
        self.trace.append(line)

    @property
    def stores(self) -> list[Store]:
        return list(self.sg.stores.values())

    def store(self, s: int) -> tuple[int, Store]:
        index = s % len(self.sg.stores)
        return index, self.stores[index]

    # --- restarts and checks --------------------------------------------------------------------------------

    def restart(self, mode: str) -> None:
        """Power loss: the disk a restarted machine sees, a fresh home on it, a mount and the check."""
        self.crash_count += 1
        image = self.fs.crash(mode, seed=self.plan.seed * 1000 + self.crash_count)
        self.note(f"  restart on the {mode!r} image of the disk")
        self.stats.points_seen.update(self.fs.points_seen)
        stop_threads(self.sg)
        self.open.clear()
        self.faults = False
        self.arms = {}
        if self.recovery_arm is not None:
            point, after, self.arms[point] = self.recovery_arm
            image.arm_crash(point, after=after)
            self.recovery_arm = None
        self.fs = image
        self.home = ServerHome.open(HOME, fs=image, policy=self.policy)
        self.sg = self.home.storage_group()
        self.mount_and_check()

    def remount_after_failure(self) -> None:
        """After an injected I/O failure: end what is open, dismount (errors expected), mount, check."""
        for txn in self.open.values():
            txn.tx.abort()
        self.open.clear()
        with suppress(ShadowStoreError):
            self.sg.dismount()
        self.mount_and_check()

    def mount_and_check(self) -> None:
        try:
            self.sg.mount()
        except ShadowStoreError as exc:  # why not BaseException: a SimulatedCrash goes to guarded()
            if self.faults:
                raise
            raise AssertionError(f"the storage group does not mount: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise AssertionError(f"mount raised {type(exc).__name__}: {exc}") from exc
        self.dismounted.clear()  # a mount mounts every store
        if not self.plan.busy:
            run_threads_in_steps(self.sg)
        got = [read_store(store) for store in self.stores]
        count = self.model.match(got)
        self.note(f"  mounted; the stores reflect {count} of {len(self.model.commits)} commits")
        self.model.restart_at(count)
        self.stats.checks += 1
        self.stats.generations = max(self.stats.generations, self.sg.log.disk_generation)

    def check_live(self) -> None:
        """With no transaction open, readers see the newest committed content of every store."""
        for s, store in enumerate(self.stores):
            if s in self.dismounted:
                continue
            got = read_store(store)
            assert got == self.model.latest(s), "\n".join(
                [f"store {s} reads differently from what was committed:", *describe_diff(self.model.latest(s), got)]
            )

    # --- steps ----------------------------------------------------------------------------------------------

    def txn(self, s: int) -> OpenTxn:
        """The open transaction of store ``s``, begun (lazy if the plan says so) if there is none."""
        index = self.store(s)[0]
        if index not in self.open:
            self.do_begin(index, self.plan.lazy)
        return self.open[index]

    def do_begin(self, s: int, lazy: bool) -> None:
        index, store = self.store(s)
        self.do_store_mount(index)  # why: a write to a store dismounted on its own mounts it first
        if index not in self.open:
            tx = store.transaction(lazy=lazy)
            view = {table: dict(rows) for table, rows in self.model.latest(index).items()}
            self.open[index] = OpenTxn(tx, lazy, view)

    def do_put(self, s: int, table: int, key: int, size: int) -> None:
        txn = self.txn(s)
        name = self.ensure_table(txn, f"t{table}")
        self.uid += 1
        value = make_value(self.uid, size)
        txn.tx.put(name, b"k%03d" % key, value)
        txn.view[name][b"k%03d" % key] = value
        txn.ops += 1

    def do_delete(self, s: int, table: int, key: int) -> None:
        txn = self.txn(s)
        name = f"t{table}"
        if name not in txn.view:
            return
        present = b"k%03d" % key in txn.view[name]
        found = txn.tx.delete(name, b"k%03d" % key)
        assert found == present, f"delete of {name}/k{key:03d} found it: {found}; the model says {present}"
        if present:
            del txn.view[name][b"k%03d" % key]
            txn.ops += 1

    def do_create(self, s: int, table: int) -> None:
        self.ensure_table(self.txn(s), f"t{table}")

    def do_drop(self, s: int, table: int) -> None:
        txn = self.txn(s)
        if f"t{table}" in txn.view:
            txn.tx.drop_table(f"t{table}")
            del txn.view[f"t{table}"]
            txn.ops += 1

    def ensure_table(self, txn: OpenTxn, name: str) -> str:
        if name not in txn.view:
            txn.tx.create_table(name)
            txn.view[name] = {}
            txn.ops += 1
        return name

    def do_commit(self, s: int) -> None:
        index, store = self.store(s)
        txn = self.open.pop(index, None)
        if txn is None:
            return
        kind = "lazy" if txn.lazy else "durable"
        label = f"store {index} {kind}, {txn.ops} ops"
        tail = self.sg.log.tail
        try:
            start = txn.tx.commit()
        except BaseException:
            if self.sg.log.tail != tail:  # the record was laid out: it may be on disk
                self.model.commits.append(Commit(index, txn.view, None, label + ", commit call failed"))
                self.note(f"  commit {len(self.model.commits)} in flight ({label})")
            raise
        if txn.ops == 0:
            assert start is None, f"an empty transaction of store {index} wrote a log record at {start}"
            return
        assert start is not None, f"a {label} commit wrote no log record"
        end = store.head.end if store.head is not None else None  # None: closed meanwhile (went offline)
        self.model.commits.append(Commit(index, txn.view, end, f"{label}, {start}-{end}"))
        self.stats.commits += 1
        self.note(f"  commit {len(self.model.commits)}: {label} at {start}-{end}")
        if not txn.lazy:
            flushed = self.sg.log.flushed
            assert end is None or flushed >= end, f"a durable commit returned before its record was flushed: {flushed}"
            self.model.acked = len(self.model.commits)

    def do_abort(self, s: int) -> None:
        txn = self.open.pop(self.store(s)[0], None)
        if txn is not None:
            txn.tx.abort()

    def do_checkpoint(self) -> None:
        self.sg.checkpoint()

    def do_store_checkpoint(self, s: int) -> None:
        index, store = self.store(s)
        if index not in self.dismounted:
            store.checkpoint()

    def do_store_dismount(self, s: int) -> None:
        """Dismount one store while the storage group stays mounted (what is open in it is committed first)."""
        index, store = self.store(s)
        self.do_commit(index)
        if index not in self.dismounted:
            self.sg.dismount_store(store.name)
            self.dismounted.add(index)

    def do_store_mount(self, s: int) -> None:
        index, store = self.store(s)
        if index in self.dismounted:
            self.sg.mount_store(store.name)
            self.dismounted.discard(index)

    def do_roll(self) -> None:
        self.sg.log.roll()
        self.sg.log.flush()

    def do_maintenance(self) -> None:
        maintenance = self.sg._maintenance
        if maintenance is not None and self.plan.busy:
            maintenance.run_cycles(1)
        elif maintenance is not None:
            maintenance._cycle()  # in this thread: see run_threads_in_steps

    def do_remount(self) -> None:
        """Commit what is open, check what readers see, dismount (acknowledges everything), mount, check."""
        for s in sorted(self.open):
            self.do_commit(s)
        self.model.acknowledge(self.sg.log.flushed)
        self.check_live()
        self.sg.dismount()
        self.model.acknowledge(self.sg.log.flushed)
        stopped = self.sg.stopped_because or self.sg.log.failed  # a failure in a thread stopped it meanwhile
        if stopped is None:
            assert self.model.acked == len(self.model.commits), "a clean dismount left commits unflushed"
        elif not self.faults:
            raise AssertionError(f"the storage group stopped by itself: {stopped}")
        self.mount_and_check()

    def do_crash(self, mode: str) -> None:
        self.note(f"  power lost between steps ({mode})")
        self.stats.crash("between steps")
        self.restart(mode)

    def do_arm(self, point: str, after: int, mode: str) -> None:
        self.fs.arm_crash(point, after=after)
        self.arms[point] = mode

    def do_arm_recovery(self, point: str, after: int, mode: str) -> None:
        self.recovery_arm = (point, after, mode)

    def do_fail_fsync(self, path_contains: str, after: int) -> None:
        self.fs.fail_fsync(path_contains or None, after=after)
        self.faults = True


def crashed(fs: FaultFileSystem) -> bool:
    try:
        fs.exists(HOME)
    except SimulatedCrash:
        return True
    return False


def read_store(store: Store) -> State:
    with store.snapshot() as snap:
        return {table: dict(snap.range(table)) for table in snap.tables()}


def run_threads_in_steps(sg: StorageGroup, seconds: float = 2.0) -> None:
    """Stop the storage group's threads after a mount, so that every file call, and so every armed crash point
    and fsync failure, comes in the order of the steps and a plan replays exactly: the log-prepare thread once
    it prepared the next log (each roll then prepares its own, the path a roll takes when the thread is late),
    and the maintenance thread (a roll wakes it even under QUIET; ``maintenance`` steps run its cycle here).
    Both are states the engine must cope with: a thread that is late or starved."""
    if sg._maintenance is not None:
        sg._maintenance.stop()
    disk: Any = getattr(sg.log, "_disk", sg.log)  # engine/logdisk.py (logwriter.py before it moved there)
    nextlog = disk._next
    deadline = time.monotonic() + seconds
    while nextlog._prepared is None and time.monotonic() < deadline:  # why no event: the thread offers none
        time.sleep(0.001)
    nextlog.stop()


def stop_threads(sg: StorageGroup) -> None:
    """The threads of a storage group whose machine lost power end now rather than at their next file call."""
    maintenance = sg._maintenance
    if maintenance is not None:
        maintenance.stop()
    if sg.log is not None:
        with suppress(SimulatedCrash, ShadowStoreError):
            sg.log.close()


class FuzzFailure(AssertionError):
    """A plan broke the model or the engine; the message holds the plan to replay and the steps it ran."""


def run_plan(plan: Plan, *, deadline: float = 20.0, trace_lines: int = 80) -> Stats:
    """Run ``plan``; raises FuzzFailure naming the plan, the last steps and the cause. The plan runs in a
    thread of its own so that an engine that hangs (a latch never released) is reported, with where it
    hangs, after ``deadline`` seconds instead of stopping the test run."""
    box: dict[str, object] = {}
    worker = threading.Thread(target=_run_world, args=(plan, box), name="crash fuzz", daemon=True)
    worker.start()
    worker.join(deadline)
    world = box.get("world")
    trace = world.trace[-trace_lines:] if isinstance(world, World) else []
    replay = f"\nreplay: run_plan({plan!r})\n\nlast steps:"
    if worker.is_alive():
        frame = sys._current_frames().get(worker.ident or 0)
        where = "".join(traceback.format_stack(frame)) if frame is not None else "?"
        raise FuzzFailure("\n".join([f"the run hung for {deadline:.0f} s in:\n{where}", replay, *trace]))
    error = box.get("error")
    if isinstance(error, BaseException):
        where = "".join(traceback.format_exception(error)[-6:])
        raise FuzzFailure("\n".join([f"{type(error).__name__}: {error}\n{where}", replay, *trace])) from error
    stats = box["stats"]
    assert isinstance(stats, Stats)
    return stats


def _run_world(plan: Plan, box: dict[str, object]) -> None:
    world: World | None = None
    try:
        world = World(plan)
        box["world"] = world
        world.run()
        world.stats.points_seen.update(world.fs.points_seen)
        box["stats"] = world.stats
    except BaseException as exc:
        box["error"] = exc
    finally:
        if world is not None:
            world.fs.crash("drop")  # why: ends a run that failed mid-way; its threads die at their next call
            stop_threads(world.sg)
