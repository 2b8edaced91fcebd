"""The crash fuzzer's model: what every mount must find after a plan of steps ran and the machine crashed
(test_crash_fuzz.py describes the steps).

The model (``Model``) keeps, per store, its content at the last check and then every transaction logged since,
in log order (one thread commits, so call order is log order), each with the store's whole content after it.
A durable commit that returned is acknowledged, and so is everything logged before it; a lazy one is
acknowledged once the log writer's flushed position passes its record's end (a later durable commit in any
store, a checkpoint, a maintenance cycle, a dismount: whatever flushed, the engine's own claim is what is
checked). A commit call that failed after laying out its record may or may not be on disk. After a mount every
store must hold the content after one common prefix of that history that keeps all acknowledged transactions:
nothing partial, nothing acknowledged missing, nothing aborted or never logged present.

The driver that runs plans against a storage group and checks every mount with this model is in
crashworld.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shadowstore.format.common import LgPos

LOG_FILE_SIZE = 64 * 1024
MAX_VALUE = 200 * 1024
THIRD_STORE = "Third Store"
MODES = ("drop", "tear", "keep")
Step = tuple[object, ...]
State = dict[str, dict[bytes, bytes]]  # table -> key -> value; never changed once a commit holds it


@dataclass(frozen=True)
class Plan:
    """What one fuzzer example does; its repr is the Python that replays it (``run_plan(Plan(...))``)."""

    steps: tuple[Step, ...]
    page_size: int = 8192
    stores: int = 2
    busy: bool = False  # the production maintenance defaults (a thread that checkpoints by itself), not QUIET
    lazy: bool = False  # a transaction a put, delete, create or drop begins commits lazily
    seed: int = 0  # the file system's seed: which sectors of a torn write land


@dataclass
class Stats:
    """What a run exercised (the CI test checks the fuzzer reached what it claims to)."""

    commits: int = 0
    crashes: dict[str, int] = field(default_factory=dict)  # crash point (or "between steps") -> count
    failures: int = 0  # engine errors after an injected fsync failure
    checks: int = 0  # mounts whose content was checked
    generations: int = 0  # the highest log generation reached
    points_seen: set[str] = field(default_factory=set)

    def crash(self, point: str) -> None:
        self.crashes[point] = self.crashes.get(point, 0) + 1


# --- values and diffs -----------------------------------------------------------------------------------------


def make_value(uid: int, size: int) -> bytes:
    """``size`` bytes naming put number ``uid`` throughout, so a stale or misplaced page shows which put it was."""
    unit = b"%07d." % uid
    return (unit * (size // len(unit) + 1))[:size]


def describe_value(value: bytes | None) -> str:
    if value is None:
        return "absent"
    uid = value[:7]
    return f"put #{int(uid)} ({len(value)} bytes)" if uid.isdigit() and value[7:8] == b"." else f"{len(value)} bytes"


def describe_diff(expected: State, got: State, limit: int = 8) -> list[str]:
    """The differences between two store contents, one line each (at most ``limit``)."""
    lines = []
    for table in sorted(set(expected) | set(got)):
        if table not in got or table not in expected:
            lines.append(f"table {table}: {'missing' if table not in got else 'should not exist'}")
            continue
        want, have = expected[table], got[table]
        for key in sorted(set(want) | set(have)):
            if want.get(key) != have.get(key):
                lines.append(
                    f"{table}/{key.decode()}: expected {describe_value(want.get(key))}, "
                    f"got {describe_value(have.get(key))}"
                )
    return lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])


# --- the model ------------------------------------------------------------------------------------------------


@dataclass
class Commit:
    store: int
    state: State  # the store's whole content after this transaction
    end: LgPos | None  # the log position after its record; None when the commit call failed after appending
    label: str


class Model:
    """Per store, the content at the last check, then the transactions logged since, in log order."""

    def __init__(self, stores: int) -> None:
        self.base: list[State] = [{} for _ in range(stores)]
        self.commits: list[Commit] = []
        self.acked = 0  # the first ``acked`` commits are acknowledged

    def latest(self, store: int) -> State:
        return self.after(len(self.commits), store)

    def after(self, count: int, store: int) -> State:
        """The content of ``store`` once the first ``count`` commits are applied."""
        for commit in reversed(self.commits[:count]):
            if commit.store == store:
                return commit.state
        return self.base[store]

    def acknowledge(self, flushed: LgPos) -> None:
        """Every commit whose record ends at or before ``flushed`` is durable, and so is everything before it."""
        for index in range(len(self.commits) - 1, self.acked - 1, -1):
            end = self.commits[index].end
            if end is not None and end <= flushed:
                self.acked = index + 1
                return

    def match(self, got: list[State]) -> int:
        """The number of commits the recovered stores reflect; AssertionError saying what is wrong if none fits."""
        for count in range(self.acked, len(self.commits) + 1):
            if all(got[s] == self.after(count, s) for s in range(len(got))):
                return count
        raise AssertionError(self.explain(got))

    def explain(self, got: list[State]) -> str:
        total, acked = len(self.commits), self.acked
        lines = [
            f"no prefix of the {total} transactions logged since the last check that keeps the {acked} acknowledged "
            "ones matches what the stores hold:"
        ]
        for s, content in enumerate(got):
            fits = [n for n in range(total + 1) if content == self.after(n, s)]
            lines.append(f"  store {s} matches after {fits or 'no'} commits")
            if not any(n >= acked for n in fits):
                lines += [f"    vs. after {acked}: {d}" for d in describe_diff(self.after(acked, s), content)]
        lines += [f"  commit {i + 1}: {c.label}" for i, c in enumerate(self.commits)]
        return "\n".join(lines)

    def restart_at(self, count: int) -> None:
        self.base = [self.after(count, s) for s in range(len(self.base))]
        self.commits = []
        self.acked = 0


# --- the driver -----------------------------------------------------------------------------------------------
