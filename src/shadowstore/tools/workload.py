"""A deterministic workload for crash testing from outside the process.

Transaction ``n`` of seed ``s`` writes ``keys_in(s, n)`` keys (1 to 3) into the table ``workload``; key and
value bytes derive only from (seed, n, i), so workloads with different seeds share a store and each can be
checked alone, also in a restored copy. ``run`` prints ``committed <n>`` (flushed) after each durable commit;
``check`` proves that transactions 1..N are all present with the right bytes and that no transaction beyond
is present in part.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shadowstore.engine.store import Store
from shadowstore.engine.transaction import MAX_VALUE_SIZE
from shadowstore.errors import InvalidParameterError, WorkloadMismatchError

TABLE = "workload"
# The most transactions a workload numbers: key_for writes n in 10 digits, so up to here keys sort in the order
# of their transactions. It bounds --txns and --committed; check() costs what the store holds, not this count.
MAX_TXNS = 9_999_999_999
# Committing threads: one write transaction of a store runs at a time (its writer latch), so beyond a few dozen
# threads only wait, and thousands fail to start.
MAX_THREADS = 64


def keys_in(seed: int, n: int) -> int:
    return 1 + hashlib.blake2b(f"{seed}:{n}".encode(), digest_size=1).digest()[0] % 3


def key_for(seed: int, n: int, i: int) -> bytes:
    return b"wl/%d/%010d/%d" % (seed, n, i)


def value_for(seed: int, n: int, i: int, size: int) -> bytes:
    block = hashlib.blake2b(f"{seed}:{n}:{i}".encode(), digest_size=64).digest()
    return (block * (size // 64 + 1))[:size]


def prefix_for(seed: int) -> bytes:
    return b"wl/%d/" % seed


def run(
    store: Store,
    *,
    txns: int,
    seed: int,
    value_size: int = 100,
    threads: int = 1,
    on_commit: Callable[[int, int], None] = lambda n, commit_time_us: None,
) -> int:
    """Commit transactions 1..``txns`` (from ``threads`` threads); ``on_commit(n, commit time)`` after each
    durable commit.

    Returns the number committed. Raises the first error a thread met (the others stop).
    """
    if not (0 <= txns <= MAX_TXNS and 1 <= threads <= MAX_THREADS and 0 <= value_size <= MAX_VALUE_SIZE):
        raise InvalidParameterError(
            f"--txns must be from 0 to {MAX_TXNS:,}, --threads from 1 to {MAX_THREADS} and --value-size from 0 "
            f"to {MAX_VALUE_SIZE:,}; not {txns}, {threads} and {value_size}"
        )
    with store.transaction() as tx:
        if not tx.has_table(TABLE):
            tx.create_table(TABLE)
    counter = iter(range(1, txns + 1))
    lock = threading.Lock()
    errors: list[BaseException] = []
    done = [0]

    def worker() -> None:
        while not errors:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            try:
                with store.transaction() as tx:
                    for i in range(keys_in(seed, n)):
                        tx.put(TABLE, key_for(seed, n, i), value_for(seed, n, i, value_size))
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                done[0] += 1
                on_commit(n, tx.commit_time_us or 0)

    workers = [threading.Thread(target=worker, name=f"workload-{k}") for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return done[0]


@dataclass
class CheckReport:
    seed: int
    committed: int
    present: int = 0  # complete transactions found (1..N and beyond)
    beyond: list[int] = field(default_factory=list)  # complete transactions after N (committed, not yet reported)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(store: Store, *, seed: int, committed: int, value_size: int = 100, exact: bool = False) -> CheckReport:
    """Verify the workload of ``seed`` in a mounted store; raises WorkloadMismatchError naming what is wrong.
    With ``exact`` a complete transaction beyond ``committed`` is wrong too (a restore to a point in time)."""
    report = CheckReport(seed, committed)
    found: dict[int, dict[int, bytes]] = {}
    seeds: set[int] = set()
    with store.snapshot() as snap:
        if snap.has_table(TABLE):
            seeds = _seeds_present(snap)
            for key, value in snap.range(TABLE, prefix=prefix_for(seed)):
                parts = key.split(b"/")
                if len(parts) != 4:
                    report.problems.append(f"unexpected key {key!r}")
                    continue
                found.setdefault(int(parts[2]), {})[int(parts[3])] = value
    sizes = {len(v) for entries in found.values() for v in entries.values()}
    expected = 1  # the first committed transaction not looked at yet
    for n in sorted(k for k in found if 1 <= k <= committed):
        report.problems += _missing(expected, n - 1)
        problem = _compare(seed, n, found.pop(n), value_size)
        if problem:
            report.problems.append(f"transaction {n} (committed): {problem}")
        else:
            report.present += 1
        expected = n + 1
    report.problems += _missing(expected, committed)
    for n in sorted(found):
        problem = _compare(seed, n, found[n], value_size)
        if problem:
            report.problems.append(f"transaction {n} (beyond {committed}): present in part: {problem}")
        else:
            report.present += 1
            report.beyond.append(n)
            if exact:
                report.problems.append(f"transaction {n} is present, but only 1..{committed} should be")
    if report.problems:
        shown = "; ".join(report.problems[:10]) + (" ..." if len(report.problems) > 10 else "")
        raise WorkloadMismatchError(
            f"workload seed {seed}: {len(report.problems)} problem(s): {shown}",
            hint=_likely_cause(seed, seeds, sizes, value_size, report, exact),
        )
    return report


def _missing(first: int, last: int) -> list[str]:
    """The problem of committed transactions ``first``..``last`` being absent: one line for the whole run
    (why: a --committed far beyond what the store holds is one mistake, not millions of lines)."""
    if first > last:
        return []
    if first == last:
        return [f"transaction {first} (committed): missing"]
    return [f"transactions {first}-{last} (committed): missing ({last - first + 1:,} transactions)"]


def _likely_cause(
    seed: int, seeds: set[int], sizes: set[int], value_size: int, report: CheckReport, exact: bool
) -> str:
    """The hint: an option that does not match what the store holds, before blaming the store."""
    if seed not in seeds:
        held = ", ".join(map(str, sorted(seeds))) or "none"
        return f"this store holds no transaction of seed {seed} (seeds it holds: {held}): check --seed, --sg, --store"
    if sizes and value_size not in sizes and len(sizes) == 1:
        size = next(iter(sizes))
        return f"its values are {size} bytes: the workload was run with --value-size {size}, not {value_size}"
    if exact and report.beyond and all("is present, but only" in p for p in report.problems):
        return f"transactions after {report.committed} are present: more were committed, or --committed is too low"
    return "the store lost or tore committed transactions; keep the server home for analysis"


def _seeds_present(snap: Any) -> set[int]:
    """The seeds whose transactions the table holds (a key is ``wl/<seed>/<n>/<i>``)."""
    seeds: set[int] = set()
    for key, _value in snap.range(TABLE, prefix=b"wl/"):
        parts = key.split(b"/")
        if len(parts) == 4 and parts[1].isdigit():
            seeds.add(int(parts[1]))
    return seeds


def _compare(seed: int, n: int, entries: dict[int, bytes], value_size: int) -> str | None:
    want = keys_in(seed, n)
    if not entries:
        return "missing"
    if sorted(entries) != list(range(want)):
        return f"has keys {sorted(entries)}, expected {list(range(want))}"
    for i, value in entries.items():
        size = len(value) if value_size < 0 else value_size
        # why the length first: the expected bytes are made only for a value of their length
        if len(value) != size or value != value_for(seed, n, i, size):
            return f"key {i} has {len(value)} bytes that differ from the expected {size}"
    return None
