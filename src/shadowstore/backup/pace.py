"""A backup's copy paced to a byte rate (``backup run --max-rate``, ``backup.max_rate``).

Why: a backup that reads and writes as fast as the disks allow shares them, and the CPUs, with the storage
group it copies. On a disk shared with the log, a commit's fsync then waits behind megabytes of the copy's reads
and writes: measured on the reference machine (docs/performance.md), an unpaced shadow-copy backup put the p99
of one-message deliveries at 7-8x their p99 without a backup. A shadow copy costs nothing to keep while it is
copied, so the copy can take its time; a paced copy reads in pieces of ``PACED_READ`` bytes so that no single
read fills the device's queue either, and writes a folder target in pieces of ``PACED_WRITE``.

A ``Pace`` is a token bucket: ``take(n)`` returns at once while the bytes taken stay within ``rate`` per second
plus a burst of ``burst_seconds`` worth, and sleeps otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.target import Target
from shadowstore.errors import InvalidParameterError

MB = 1_000_000
PACED_READ = 256 << 10  # bytes per read of a shadow copy when the copy is paced
PACED_WRITE = 256 << 10  # bytes per write into a folder target, one write in flight, when the copy is paced
MAX_RATE = 100_000  # MB/s; any number above is a typo


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
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self.slept = 0.0  # seconds spent waiting, for the report

    def take(self, size: int) -> None:
        """Account for ``size`` bytes copied, sleeping first if they go beyond the rate."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= size
        if self._tokens < 0:
            wait = -self._tokens / self.rate
            self._sleep(wait)
            self.slept += wait


def parse_max_rate(value: object, where: str) -> float | None:
    """MB/s (decimal megabytes) from ``--max-rate`` or ``backup.max_rate``: a number, 0 for no limit. Returns
    bytes per second, or None for no limit. Raises InvalidParameterError naming ``where``."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = float("nan")
    if not 0 <= number <= MAX_RATE:  # why this way round: NaN fails it too
        raise InvalidParameterError(
            f"{where} {value!r} is not a rate in MB/s from 0 to {MAX_RATE:,}", hint="for example 40; 0: no limit"
        )
    return number * MB if number else None


def pace_of(rate: float | None) -> Pace | None:
    return Pace(rate) if rate else None


def pace_target(target: Target) -> None:
    """Make a folder target write in pieces of ``PACED_WRITE``, one at a time: its default (8 MiB, two in
    flight) holds the disk for several milliseconds per write, and a commit's fsync waits behind it."""
    if isinstance(target, LocalTarget):
        target.write_buffer, target.writers = PACED_WRITE, 1
