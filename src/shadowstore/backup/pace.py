"""A backup's copy paced to a byte rate (``backup run --max-rate``, ``backup.max_rate``).

Why: a backup that reads and writes as fast as the disks allow shares them, and the CPUs, with the storage
group it copies. On a disk shared with the log, a commit's fsync then waits behind megabytes of the copy's reads
and writes: measured on the reference machine (docs/performance.md), an unpaced shadow-copy backup put the p99
of one-message deliveries at 7-8x their p99 without a backup. A shadow copy costs nothing to keep while it is
copied, so the copy can take its time; a paced copy reads in pieces of ``PACED_READ`` bytes so that no single
read fills the device's queue either, and writes a folder target in pieces of ``PACED_WRITE``.

A ``Pace`` is a token bucket: ``take(n)`` returns at once while the bytes taken stay within ``rate`` per second
plus a burst of ``burst_seconds`` worth, and sleeps otherwise.

An ``AdaptivePace`` (``--max-rate auto``, the default of shadow-copy backups) finds the rate by itself from how
long durable commits wait for the log disk (engine/flushwaits.py): the service's counts, mapped from shared
memory (service/sharedwaits.py), or the home of this process when no service runs. The first reading holds the
waits of the commits made while no backup ran: their p99 is the normal one. Every ``INTERVAL`` the pace looks at
the waits of the interval: when more than one in a hundred took ``SLOW_BUCKETS`` buckets longer than that p99
(1.6 times or more: the target is a p99 of deliveries at most twice the normal one, and a delivery is more than
its wait), the copy halves its rate; otherwise it adds ``STEP``; with fewer than ``QUIET`` commits in the
interval, and no slow one for ``CALM`` seconds, there is nothing to protect and the rate doubles. So a copy goes
as fast as the disks allow while no mail arrives and yields to commits while it does, never below ``FLOOR`` (the
backup ends).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.target import Target
from shadowstore.config import NUMBER_SETTINGS
from shadowstore.engine.flushwaits import BUCKETS, split
from shadowstore.errors import InvalidParameterError, ShadowStoreError

MB = 1_000_000
PACED_READ = 256 << 10  # bytes per read of a shadow copy when the copy is paced
PACED_WRITE = 256 << 10  # bytes per write into a folder target, one write in flight, when the copy is paced
MAX_RATE = int(NUMBER_SETTINGS["backup.max_rate"].most)  # MB/s; any number above is a typo
AUTO: Literal["auto"] = "auto"
# --max-rate auto (AdaptivePace):
INTERVAL = 0.1  # seconds between two readings of the commits' waits
START = 20 * MB  # bytes per second until the first reading says more
STEP = 2 * MB  # added per interval while commits wait as long as before
FLOOR = 5 * MB  # the slowest an adaptive copy goes: 100 GB in under 6 hours
CEILING = 10_000 * MB  # no Python copy gets here: in effect no limit
QUIET = 8  # fewer durable commits in an interval: nothing to protect, unless some were slow within CALM
CALM = 1.0  # seconds without a slow wait before an interval with few commits counts as quiet
HISTORY = 200  # commits whose waits tell what a normal wait is
SLOW_BUCKETS = 3  # a wait this many buckets above the history's p99 is slow (1.6-1.75 times it)
READ_SECONDS = 1.0  # the longest a reading of the waits over the service's API may take
CHECK_SECONDS = 0.5  # the longest a paced copy sleeps before it looks whether its backup was aborted
RETRY = 10 * READ_SECONDS  # seconds from a failed reading to the next: the copy waits at most a tenth of its time


class Pace:
    def __init__(
        self,
        rate: float,
        *,
        burst_seconds: float = 0.005,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a pace needs a positive rate")
        self.rate = rate  # bytes per second
        self.burst = max(float(PACED_READ), rate * burst_seconds)
        self._burst_seconds = burst_seconds
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self.slept = 0.0  # seconds spent waiting, for the report
        # raises when the backup has ended meanwhile; called between slices of a long wait, so that a paced copy
        # aborted by an administrator stops within CHECK_SECONDS instead of after its wait (run.py sets it)
        self.check: Callable[[], None] | None = None

    def take(self, size: int) -> None:
        """Account for ``size`` bytes copied, sleeping first if they go beyond the rate."""
        self._spend(self._clock(), size)

    def describe(self) -> str:
        return f"The copy is paced to {self.rate / MB:g} MB/s (--max-rate or backup.max_rate)."

    def to_dict(self) -> dict[str, object]:
        return {"mode": "fixed", "rate_mb_s": self.rate / MB, "slept_seconds": round(self.slept, 3)}

    def _set_rate(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(float(PACED_READ), rate * self._burst_seconds)

    def _spend(self, now: float, size: int) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= size
        if self._tokens < 0:
            wait = -self._tokens / self.rate
            self.slept += wait
            while wait > 0:
                piece = min(wait, CHECK_SECONDS)
                self._sleep(piece)
                wait -= piece
                if self.check is not None:
                    self.check()


class AdaptivePace(Pace):
    """A pace whose rate follows the commits' waits (``--max-rate auto``; the module's docstring says how).
    ``waits`` returns the cumulative histogram of engine/flushwaits.py; one that raises ShadowStoreError or
    OSError (the service went away, or did not answer within ``READ_SECONDS``) leaves the rate where it is, and
    the next reading is made ``RETRY`` seconds later, so a service that stops answering holds the copy for at most
    a tenth of its time."""

    def __init__(
        self,
        waits: Callable[[], Sequence[int]],
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(START, clock=clock, sleep=sleep)
        self._waits = waits
        self._interval = interval
        self._reading: list[int] | None = None
        self._due = self._since = clock()  # the next reading, the last one
        self._copied = 0  # bytes taken since the last reading
        self._history: list[int] | None = None  # waits of commits made while no backup ran: the normal ones
        self._slow_from: int | None = None  # the first bucket of a slow wait, once the history is long enough
        self._slow_at = -CALM  # when a reading last found slow waits
        self.lowest = self.highest = self.rate
        self.halved = 0
        self.unread = 0  # readings that failed

    def take(self, size: int) -> None:
        now = self._clock()
        if now >= self._due:
            self._adjust(now)
        self._copied += size
        self._spend(now, size)

    def describe(self) -> str:
        return (
            f"The copy yielded to commits (--max-rate auto): between {self.lowest / MB:.0f} and "
            f"{self.highest / MB:.0f} MB/s, slowed {self.halved} time(s), {self.slept:.1f} s spent waiting."
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "mode": AUTO,
            "lowest_mb_s": round(self.lowest / MB, 1),
            "highest_mb_s": round(self.highest / MB, 1),
            "halved": self.halved,
            "slept_seconds": round(self.slept, 3),
            "unread": self.unread,
        }

    def _adjust(self, now: float) -> None:
        self._due = now + self._interval
        try:
            every, quiet = split(list(self._waits()))
        except (ShadowStoreError, OSError):
            self.unread += 1
            self._due = now + RETRY
            return
        previous, self._reading = self._reading, every
        elapsed, self._since = now - self._since, now
        copied, self._copied = self._copied, 0
        if previous is None:
            self._learn(quiet)
            return
        window = [now_count - then for now_count, then in zip(every, previous, strict=False)]
        if any(count < 0 for count in window):  # the counts started over (a service restarted): skip a reading
            return
        commits = sum(window)
        achieved = copied / elapsed if elapsed > 0 else self.rate
        if self._slow_from is not None and sum(window[self._slow_from :]) * 100 > commits:
            self.halved += 1
            self._slow_at = now
            # why the achieved rate: halving a rate far above what was copied would hold nothing back
            self._change(min(self.rate, achieved) / 2)
        elif commits < QUIET:
            # why not right after a slow wait: commits that wait long are few per interval, not absent
            if now - self._slow_at >= CALM:
                self._change(max(self.rate, achieved) * 2)
        elif self._slow_from is None:
            self._learn(window)  # too few commits before the copy to know their p99: the rate holds meanwhile
        else:
            self._change(self.rate + STEP)

    def _learn(self, counts: Sequence[int]) -> None:
        """Add ``counts`` to the history; once it holds ``HISTORY`` commits, a slow wait is one ``SLOW_BUCKETS``
        above the history's p99."""
        history = self._history = [a + b for a, b in zip(self._history or [0] * BUCKETS, counts, strict=False)]
        total = sum(history)
        if total >= HISTORY:
            self._slow_from = _bucket_of_rank(history, total * 99 // 100) + SLOW_BUCKETS

    def _change(self, rate: float) -> None:
        self._set_rate(min(max(rate, FLOOR), CEILING))
        self.lowest, self.highest = min(self.lowest, self.rate), max(self.highest, self.rate)


def _bucket_of_rank(window: Sequence[int], rank: int) -> int:
    """The bucket holding the wait of ``rank`` (0: the shortest) in ``window``."""
    seen = 0
    for index, count in enumerate(window):
        seen += count
        if seen > rank:
            return index
    return len(window) - 1


def parse_max_rate(value: object, where: str) -> float | Literal["auto"] | None:
    """MB/s (decimal megabytes) from ``--max-rate`` or ``backup.max_rate``: a number, 0 for no limit, or
    ``auto`` (AdaptivePace). Returns bytes per second, None for no limit, or AUTO. Raises InvalidParameterError
    naming ``where``."""
    if str(value).strip().lower() == AUTO:
        return AUTO
    try:
        number = float(str(value).strip())
    except ValueError:
        number = float("nan")
    if not 0 <= number <= MAX_RATE:  # why this way round: NaN fails it too
        raise InvalidParameterError(
            f"{where} {value!r} is not a rate in MB/s from 0 to {MAX_RATE:,}, nor auto",
            hint="for example 40; 0: no limit; auto: as fast as commits allow",
        )
    return number * MB if number else None


def pace_of(rate: float | None) -> Pace | None:
    return Pace(rate) if rate else None


def pace_target(target: Target) -> None:
    """Make a folder target write in pieces of ``PACED_WRITE``, one at a time: its default (8 MiB, two in
    flight) holds the disk for several milliseconds per write, and a commit's fsync waits behind it."""
    if isinstance(target, LocalTarget):
        target.write_buffer, target.writers = PACED_WRITE, 1
