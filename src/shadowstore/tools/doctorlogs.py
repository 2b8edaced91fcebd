"""The log folder as doctor judges it: which log stream it holds, which generations of it can be replayed, and
what is wrong with the others (missing between two that are there, of another stream, out of sequence, named
for another generation, damaged), from eseutil's reader of a log set (tools/eseutil.py ``dump_logs``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from shadowstore.config import SgConfig
from shadowstore.engine.logstream import LogSet
from shadowstore.errors import (
    BadLogSignatureError,
    InvalidLogSequenceError,
    LogGenerationMismatchError,
)
from shadowstore.format.common import Signature
from shadowstore.format.logfile import archived_log_name, current_log_name
from shadowstore.io.fs import FileSystem
from shadowstore.tools.doctorfindings import WARNING, GroupFacts
from shadowstore.tools.eseutil import LogDump, dump_logs


@dataclass
class LogFacts:
    """The log folder of one storage group: its stream and which generations of it are usable."""

    stream: Signature | None = None
    current_gen: int | None = None
    usable: set[int] = field(default_factory=set)  # generations on disk, of the stream, without any error
    why_not: dict[int, str] = field(default_factory=dict)  # generation -> why it cannot be replayed

    @classmethod
    def read(cls, fs: FileSystem, config: SgConfig, group: GroupFacts) -> LogFacts:
        facts = cls()
        found = LogSet.scan(fs, config.log_dir, config.log_base)
        if found.current is None and not found.archived:
            return facts
        dump = dump_logs(os.path.join(config.log_dir, config.log_base), fs)
        current = next((log for log in dump.logs if log.current), None)
        if current is not None and current.header is not None:
            facts.stream, facts.current_gen = current.header.signature, current.header.generation
        else:
            signatures = Counter(log.header.signature for log in dump.logs if log.header is not None)
            facts.stream = signatures.most_common(1)[0][0] if signatures else None
            name = os.path.join(config.log_dir, current_log_name(config.log_base))
            archived = f"; generations {min(found.archived)}-{max(found.archived)} are there" if found.archived else ""
            group.add(
                WARNING,
                "log-current-missing",
                f"the current log {name} is {'damaged' if current is not None else 'missing'}{archived}",
                name,
                "a mount refuses (-528) until it is back; 'shadowstore doctor --fix' cures it when every store is in "
                "Clean Shutdown (the logs are then set aside and a new log stream starts)",
            )
        for log in dump.logs:
            facts._judge(log, group)
        facts._find_gaps(config, group)
        return facts

    def _judge(self, log: LogDump, group: GroupFacts) -> None:
        number = log.generation
        if log.header is None:
            self._bad(number, "damaged")
            group.add(WARNING, "log-damaged", f"{log.path}: {log.errors[0].message}", log.path, SET_ASIDE_HINT)
            return
        if self.stream is not None and log.header.signature != self.stream:
            self._bad(number, "from another log stream")
            group.add(
                WARNING,
                "log-foreign",
                f"{log.path} (generation {log.header.generation}) belongs to another log stream (signature "
                f"[{log.header.signature}]; this storage group's is [{self.stream}]): a log of another storage group "
                "or server copied in",
                log.path,
                "it is no part of this storage group's history: " + SET_ASIDE_HINT,
            )
            return
        problems = [e for e in log.errors if not isinstance(e, BadLogSignatureError)]
        for error in problems:
            code = (
                "log-out-of-sequence"
                if isinstance(error, InvalidLogSequenceError)
                else "log-misnamed"
                if isinstance(error, LogGenerationMismatchError)
                else "log-damaged"
            )
            group.add(WARNING, code, error.message, log.path, SET_ASIDE_HINT)
        if problems:
            self._bad(number, "out of sequence or damaged")
        elif number is not None and not log.current:
            self.usable.add(number)

    def _bad(self, number: int | None, why: str) -> None:
        if number is not None:
            self.why_not.setdefault(number, why)

    def _find_gaps(self, config: SgConfig, group: GroupFacts) -> None:
        """Generations of the stream missing between its lowest one on disk and the current one."""
        if self.current_gen is None or not self.usable:
            return
        missing = [g for g in range(min(self.usable), self.current_gen) if g not in self.usable]
        for low, high in _ranges([g for g in missing if g not in self.why_not]):
            names = archived_log_name(config.log_base, low) + (
                f" - {archived_log_name(config.log_base, high)}" if high > low else ""
            )
            span = f"generation {low}" if low == high else f"generations {low}-{high}"
            group.add(
                WARNING,
                "log-gap",
                f"{span} ({names}) missing from the log folder {config.log_dir}, between generations "
                f"{min(self.usable)} and {self.current_gen} that are there: moved or deleted by hand",
                os.path.join(config.log_dir, archived_log_name(config.log_base, low)),
                "put the file(s) back if you have them. An incremental backup that needs them fails (-569), and "
                "Exchange 2003 wedged on exactly this; 'shadowstore doctor --fix' applies the cure: every store to "
                "Clean Shutdown, the logs set aside, a new full backup",
            )
        for g in missing:
            self.why_not.setdefault(g, "missing")

    def replay_problem(self, base: str, low: int, high_required: int) -> str | None:
        """Why generations ``low``..current cannot be replayed (None when they can)."""
        if self.current_gen is None:
            return f"the current log {current_log_name(base)} is missing or damaged"
        if high_required > self.current_gen:
            return f"it needs generations up to {high_required}, and the newest log is generation {self.current_gen}"
        bad = [g for g in range(low, self.current_gen) if g not in self.usable]
        if not bad:
            return None
        listed = ", ".join(f"{archived_log_name(base, g)} ({self.why_not.get(g, 'missing')})" for g in bad[:10])
        return f"of the generations {low}-{self.current_gen} it needs, these cannot be replayed: {listed}" + (
            " ..." if len(bad) > 10 else ""
        )


SET_ASIDE_HINT = (
    "'shadowstore doctor --fix' moves it into the quarantine folder with the other logs (nothing is deleted) once "
    "every store is in Clean Shutdown; do not delete it by hand"
)


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if ranges and n == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    return ranges
