"""What a restore in place would throw away: the committed transactions in the live log folder that the
restored stores would not reach.

An in-place restore replaces the stores and, unless it rolls forward to the very end of the live log stream,
starts a new stream and moves the old logs to the quarantine folder. Every transaction committed in the live
logs after the point the restore stops at is then no longer in any store. ESE's hard recovery avoids that by
replaying the live logs after the restored ones; ShadowStore does the same by default (restore/run.py), and
says here, before anything is moved, what a restore that stops earlier would discard: which generations, how
many transactions, committed when, and where the displaced files go.

The live logs are not all there is: a full or incremental backup taken after the set being restored truncated
the generations it copied, and what was committed in them is now only in the live stores (and in that newer
backup). When the live stores have reached past the restore's stop and a generation between the two is gone
from the live folder, the restore would discard those changes too, in a number nobody can count any more; they
are reported as such (``unlogged``).

Reading only: the live folder is scanned (headers, and the records of the generations after the stop), and the
headers of the live stores.
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import asdict, dataclass

from shadowstore.config import SgConfig
from shadowstore.engine.dbfile import read_header_copies
from shadowstore.engine.hardrecovery import read_current_log
from shadowstore.engine.logreader import RecordAssembler, scan_generation
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.errors import LogError, ShadowStoreError
from shadowstore.format.common import iso_time
from shadowstore.format.dbheader import STATE_DIRTY_SHUTDOWN
from shadowstore.format.logfile import LogHeader
from shadowstore.format.logrecord import KIND_TXN, txn_header
from shadowstore.io.fs import FileSystem, read_file
from shadowstore.restore.plan import AT_GENERATION, AT_TIME, RestorePlan


@dataclass(frozen=True)
class LiveLogs:
    """The log stream in a storage group's log folder, as found on disk."""

    log_dir: str
    signature: dict[str, object] | None  # of the newest log (None: no log at all)
    generations: list[int]  # present, oldest first (archived ones and the current one)
    current: int | None  # the current log's generation

    def continues(self, plan: RestorePlan) -> str | None:
        """Why the live logs cannot carry ``plan`` on to their end (None: they can)."""
        if self.signature is None:
            return f"the live log folder {self.log_dir} holds no logs"
        if self.signature != plan.log_signature:
            return "the live logs are of another log stream than these backups (a restore in place started it)"
        newer = [g for g in self.generations if g > plan.last_gen]
        expected = list(range(plan.last_gen + 1, newer[-1] + 1)) if newer else []
        if newer != expected:
            missing = sorted(set(expected) - set(newer))
            return f"generation {missing[0]} is missing from the live log folder {self.log_dir}"
        return None


@dataclass(frozen=True)
class Discard:
    """The committed transactions a restore in place would leave out."""

    generations: tuple[int, int]  # the live generations holding them
    transactions: int
    first_commit: str | None
    last_commit: str | None
    other_stream: bool  # the live stream is not the backups': all of its transactions in the folder
    quarantine: str  # where the displaced logs and stores go
    # (first missing generation, generation the live stores reached): changes the live stores hold from
    # generations no longer in the live folder, uncounted; None when there are none
    unlogged: tuple[int, int] | None = None

    def describe(self) -> str:
        """``300 committed transaction(s) in generations 2-4, committed from ... to ... (the live logs ...)``."""
        parts = []
        if self.transactions:
            first, last = self.generations
            gens = f"generation {first}" if first == last else f"generations {first}-{last}"
            stream = " of a log stream that is not the backups'" if self.other_stream else ""
            span = f", committed from {self.first_commit} to {self.last_commit}" if self.first_commit else ""
            parts.append(f"{self.transactions} committed transaction(s) in {gens}{stream}{span}")
        if self.unlogged is not None and self.other_stream:
            before, reached = self.unlogged
            parts.append(
                f"the live stores' changes from the live stream's generations up to {before}, how many unknown: "
                f"the stores reached generation {reached}, and a full or incremental backup of that stream "
                "truncated those generations from the live folder (restore from that backup to keep them)"
            )
        elif self.unlogged is not None:
            missing, reached = self.unlogged
            parts.append(
                f"the live stores' changes after generation {missing - 1}, how many unknown: the stores reached "
                f"generation {reached}, and a later full or incremental backup truncated generation {missing} from "
                "the live folder (restore from that backup to keep them)"
            )
        return f"{'; and '.join(parts)} (the live logs and stores are kept in {self.quarantine})"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def live_logs(fs: FileSystem, config: SgConfig) -> LiveLogs:
    """The live stream of storage group ``config`` (resolved), read from its log folder."""
    found = LogSet.scan(fs, config.log_dir, config.log_base)
    gens = dict(found.archived)
    current: int | None = None
    signature: dict[str, object] | None = None
    if found.current is not None:
        try:
            header = read_header(fs, found.current)
            current, signature = header.generation, header.signature.to_dict()
            gens[current] = found.current
        except (LogError, OSError):
            pass  # why: a damaged current log still leaves the archived ones to judge by
    if signature is None and found.archived:
        with suppress(LogError, OSError):  # why: a damaged header leaves the stream unknown, not an error
            signature = read_header(fs, found.archived[max(found.archived)]).signature.to_dict()
    return LiveLogs(config.log_dir, signature, sorted(gens), current)


def in_place_discards(fs: FileSystem, config: SgConfig, plan: RestorePlan, quarantine: str) -> Discard | None:
    """What restoring ``plan`` in place of ``config`` (resolved) would discard; None when nothing."""
    live = live_logs(fs, config)
    if live.signature is None:
        return None
    other = live.signature != plan.log_signature
    target = plan.target
    after_us: int | None = None
    stop: int | None = None  # the last generation the restore replays, when it stops before the live end
    if other:
        wanted = live.generations
    elif target.kind == AT_TIME:
        wanted, after_us = live.generations, target.until_us
    else:
        rolls_to_end = plan.live_from is not None and live.continues(plan) is None
        stop = target.until_gen if target.kind == AT_GENERATION else (None if rolls_to_end else plan.last_gen)
        if stop is None:
            return None  # why: the replay goes on through every live generation, none of them missing
        wanted = [g for g in live.generations if g > stop]
    if other:
        unlogged = _unlogged_before(fs, config, live)
    else:
        unlogged = _unlogged(fs, config, live, plan.last_gen if stop is None else stop)
    count, first_us, last_us = _transactions(fs, config, wanted, live.current, after_us) if wanted else (0, 0, 0)
    if count == 0 and unlogged is None:
        return None
    gens = (wanted[0], wanted[-1]) if wanted else (0, 0)
    return Discard(
        gens, count, iso_time(first_us) if first_us else None, iso_time(last_us) if last_us else None, other,
        quarantine, unlogged,
    )  # fmt: skip


def _unlogged(fs: FileSystem, config: SgConfig, live: LiveLogs, stop: int) -> tuple[int, int] | None:
    """(first generation after ``stop`` missing from the live folder, generation the live stores reached) when
    the live stores hold changes past ``stop`` that no live log has; None otherwise. A store is taken to hold
    changes up to its Log Required (Dirty Shutdown) or its last consistent position (Clean Shutdown), which may
    be generations with no transaction in them: what is uncounted is reported, never assumed empty."""
    reached = _reached(fs, config, live)
    present = set(live.generations)
    missing = [g for g in range(stop + 1, reached + 1) if g not in present]
    return (missing[0], reached) if missing else None


def _unlogged_before(fs: FileSystem, config: SgConfig, live: LiveLogs) -> tuple[int, int] | None:
    """For a restore of another stream's backups, which discards all the live stream holds: (the generation
    before the oldest live one, generation the live stores reached) when the live stream began before its
    oldest log in the folder (that log names a previous generation: a backup truncated the ones before it) and
    the live stores hold its changes; None otherwise."""
    reached = _reached(fs, config, live)
    if reached == 0 or not live.generations:
        return None
    oldest = live.generations[0]
    found = LogSet.scan(fs, config.log_dir, config.log_base)
    path = found.current if oldest == live.current else found.archived.get(oldest)
    begins = False  # why: a log that cannot be read is not known to begin the stream
    if path is not None:
        with suppress(LogError, OSError):
            begins = read_header(fs, path).prev_created_us == 0
    return None if begins or oldest <= 1 else (oldest - 1, reached)


def _reached(fs: FileSystem, config: SgConfig, live: LiveLogs) -> int:
    """The generation the live stores attached to the live stream reached (0 when none is)."""
    assert live.signature is not None
    reached = 0
    for store in config.stores:
        try:
            header = read_header_copies(fs, config.store_path(store)).header
        except (ShadowStoreError, OSError):
            continue  # why: a store missing or damaged holds nothing a restore could discard
        if header.log_signature.to_dict() != live.signature:
            continue
        dirty = header.state == STATE_DIRTY_SHUTDOWN
        reached = max(reached, header.log_required_max if dirty else header.last_consistent.gen)
    return reached


def _transactions(
    fs: FileSystem, config: SgConfig, gens: list[int], current: int | None, after_us: int | None
) -> tuple[int, int, int]:
    """(count, first commit, last commit) of the TXN records in ``gens`` committed after ``after_us``."""
    found = LogSet.scan(fs, config.log_dir, config.log_base)
    assembler = RecordAssembler()
    count, first_us, last_us = 0, 0, 0
    for gen in gens:
        header: LogHeader
        if gen == current and found.current is not None:
            header, data = read_current_log(fs, found.current)
            path = found.current
        else:
            path = found.archived[gen]
            data = read_file(fs, path)
            header = read_header(fs, path)
        for record in assembler.feed(scan_generation(path, data, header, tolerate_torn_tail=True)):
            if record.data[0] != KIND_TXN:
                continue
            commit_us = txn_header(record.data).commit_us
            if after_us is not None and commit_us <= after_us:
                continue
            count += 1
            first_us = first_us or commit_us
            last_us = commit_us
    return count, first_us, last_us


def quarantine_root(config: SgConfig) -> str:
    """The folder under which each restore in place keeps what it displaced (``restore-<time>/``)."""
    return os.path.join(config.log_dir, "quarantine")
