"""How long durable commits wait for the log disk: a histogram per server home, read by a paced backup.

Every call of ``LogWriter.flush`` that has to wait (its records are not yet durable) adds its wait to the home's
``FlushWaits``: the time the committer spent leading the write and fdatasync, or behind another leader's. A
backup's copy shares the disk with those writes; a copy paced with ``--max-rate auto`` (backup/pace.py) reads
the histogram every tenth of a second and slows down when the waits grow. Cumulative counts let any number of
readers take differences between two readings without resetting anything.

Two histograms: every wait, and the waits of commits made while no backup of the home was running (no
streaming session, no shadow-copy job: ``busy`` is empty). The second is what commits normally wait; the pace
compares the first, interval by interval, with it. Without the split, backups run back to back would teach the
pace that the waits they cause are normal.

Buckets are a quarter of an octave wide (each bound 1.14 to 1.25 times the previous), over microseconds counted as
1,024 ns: bucket ``i`` below 4 holds waits of ``i`` such microseconds; above, bucket ``i`` starts at
``(4 + i % 4) << (i // 4 - 1)``. The last bucket holds everything from about 1.9 s up.

Recording takes no lock: two committers finishing at the same instant may lose one count between them. The
counts are a signal for pacing, where a lost sample changes nothing, and the commit path stays as short as it is.
"""

from __future__ import annotations

import mmap

BUCKETS = 80
SIZE = 2 * BUCKETS * 8  # bytes of the shared form: every wait, then the quiet ones; unsigned 64-bit, native order


def bucket_of(ns: int) -> int:
    """The bucket of a wait of ``ns`` nanoseconds."""
    us = ns >> 10
    if us < 4:
        return max(us, 0)
    bits = us.bit_length()
    return min((bits - 2) * 4 + ((us >> (bits - 3)) & 3), BUCKETS - 1)


def lower_ns(index: int) -> int:
    """The shortest wait bucket ``index`` holds, in nanoseconds."""
    if index < 4:
        return index << 10
    return ((4 + (index & 3)) << (index // 4 - 1)) << 10


class FlushWaits:
    """The counts of one server home, shared by its storage groups: ``2 * BUCKETS`` of them, every wait then the
    waits while no backup runs. In ``buffer`` when given (``SIZE`` bytes of shared memory that a backup program
    maps: service/sharedwaits.py), else in a list."""

    def __init__(self, buffer: mmap.mmap | None = None) -> None:
        self.counts: list[int] | memoryview = [0] * (2 * BUCKETS) if buffer is None else memoryview(buffer).cast("Q")
        self.busy: set[object] = set()  # the backups running (sessions, shadow-copy writers); set, so idempotent

    def record(self, ns: int) -> None:
        index = bucket_of(ns)
        self.counts[index] += 1
        if not self.busy:
            self.counts[BUCKETS + index] += 1

    def reading(self) -> list[int]:
        """Every wait's bucket counts, then the quiet waits' (``split`` tells them apart)."""
        return list(self.counts)


def split(reading: list[int]) -> tuple[list[int], list[int]]:
    """(every wait, the waits while no backup ran) of a reading."""
    return reading[:BUCKETS], reading[BUCKETS : 2 * BUCKETS]
