"""The checks across a log set that eseutil /ml makes for our logs (tools/eseutil.py) and for real ESE logs
(tools/esereal.py) alike: each file's generation against its name (-513), one signature (-530), no gap between
generations (-528, reported as a MissingLogs entry between the files) and each file's previous-generation time
equal to the creation time of the file before it (-515).

The two kinds of log differ only in how a header keeps its times and how a gap's file names are spelled, so the
caller passes those in: ``times`` gives a header's (previous generation's creation, own creation), compared as
they are, ``show`` prints one of them, and ``gap`` builds the MissingLogs entry for a range of generations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

from shadowstore.errors import (
    BadLogSignatureError,
    InvalidLogSequenceError,
    LogGenerationMismatchError,
    ShadowStoreError,
)


class LogMember(Protocol):
    """What a dump of one log file offers these checks."""

    path: str
    errors: list[ShadowStoreError]

    @property
    def header(self) -> Any: ...  # None when unreadable; else with .generation and .signature

    @property
    def current(self) -> bool: ...

    @property
    def generation(self) -> int | None: ...

    @property
    def name_generation(self) -> int | None: ...

    def fail(self, error: type[ShadowStoreError], message: str) -> None: ...


Member = TypeVar("Member", bound=LogMember)
Gap = TypeVar("Gap")
Times = Callable[[Any], tuple[Any, Any]]  # header -> (previous generation's creation, own creation)
Show = Callable[[Any], str]


def set_signature(logs: Sequence[LogMember]) -> Hashable | None:
    """The signature most files carry (ties: the current log's), against which each file is checked."""
    ordered = sorted(logs, key=lambda log: not log.current)
    signatures = [log.header.signature for log in ordered if log.header is not None]
    return Counter(signatures).most_common(1)[0][0] if signatures else None


def check_sequence(
    logs: Sequence[Member], signature: Hashable | None, times: Times, show: Show, gap: Callable[[int, int], Gap]
) -> list[Member | Gap]:
    """The files in order with the gaps between them; adds -513, -530 and -515 errors to the files."""
    entries: list[Member | Gap] = []
    previous: Member | None = None
    for log in logs:
        _check_own(log, signature)
        before, number = (previous.generation if previous else None), log.generation
        if previous is not None and before is not None and number is not None:
            if number > before + 1:
                entries.append(gap(before + 1, number - 1))
            _check_follows(log, number, previous, before, times, show)
        entries.append(log)
        previous = log
    return entries


def _check_own(log: LogMember, signature: Hashable | None) -> None:
    header = log.header
    if header is None:
        return
    if log.name_generation is not None and header.generation != log.name_generation:
        log.fail(
            LogGenerationMismatchError,
            f"{log.path} should hold generation {log.name_generation} (its name says so) but its header says "
            f"generation {header.generation}",
        )
    if signature is not None and header.signature != signature:
        log.fail(
            BadLogSignatureError,
            f"{log.path} (generation {header.generation}) belongs to another log stream: its signature is "
            f"[{header.signature}], the log set's is [{signature}]",
        )


def _check_follows(log: LogMember, number: int, previous: LogMember, before: int, times: Times, show: Show) -> None:
    """-513 when a file does not come after the one before it; -515 when it does not follow it."""
    if number <= before:
        log.fail(
            LogGenerationMismatchError,
            f"{log.path} holds generation {number}, but {previous.path} already holds generation {before}",
        )
        return
    header, prior = log.header, previous.header
    if number != before + 1 or header is None or prior is None or log.errors or previous.errors:
        return  # nothing to compare, or already reported as not being what its name says
    recorded, _ = times(header)
    _, created = times(prior)
    if recorded != created:
        log.fail(
            InvalidLogSequenceError,
            f"{log.path} (generation {number}) does not follow generation {before}: it records the previous "
            f"generation as created at {show(recorded)}, but {previous.path} was created at {show(created)}",
        )
