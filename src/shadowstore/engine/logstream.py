"""The set of log files of a storage group on disk, and the checks that bind them into one stream.

``LogSet.scan`` lists what is in the log folder; ``LogChain.generations`` reads a range of generations in order
and checks, for each, that the file is there, that its header is valid and names the generation its file name
says, that it carries the stream's log signature, and that its "previous generation" time equals the creation
time of the generation before it. Each failure raises the ESE error for it with the generations needed and
found, after emitting the matching event (450, 452, 453, 440, 496).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from shadowstore.engine.logreader import Generation, scan_generation
from shadowstore.errors import (
    BadLogSignatureError,
    InvalidLogSequenceError,
    LogFileCorruptError,
    LogGenerationMismatchError,
    MissingLogFileError,
    RequiredLogFilesMissingError,
)
from shadowstore.events import EventLog
from shadowstore.format.common import SECTOR_SIZE, LgPos, Signature, format_time
from shadowstore.format.logfile import (
    RESERVE_LOG_NAMES,
    LogHeader,
    LogHeaderError,
    archived_log_name,
    current_log_name,
    parse_archived_log_name,
    tmp_log_name,
    unpack_log_header,
)
from shadowstore.io.fs import FileSystem, read_file


@dataclass
class LogSet:
    """What the log folder holds, by name (headers are not read)."""

    log_dir: str
    base: str
    archived: dict[int, str] = field(default_factory=dict)  # generation -> path
    current: str | None = None
    tmp: str | None = None
    reserves: list[str] = field(default_factory=list)

    @classmethod
    def scan(cls, fs: FileSystem, log_dir: str, base: str) -> LogSet:
        found = cls(log_dir, base)
        if not fs.exists(log_dir):
            return found
        for name in fs.listdir(log_dir):
            path = os.path.join(log_dir, name)
            if name == current_log_name(base):
                found.current = path
            elif name == tmp_log_name(base):
                found.tmp = path
            elif name in RESERVE_LOG_NAMES:
                found.reserves.append(path)
            else:
                gen = parse_archived_log_name(base, name)
                if gen is not None:
                    found.archived[gen] = path
        return found

    @property
    def lowest(self) -> int | None:
        return min(self.archived) if self.archived else None

    @property
    def highest_archived(self) -> int | None:
        return max(self.archived) if self.archived else None

    def path_of(self, generation: int, current_generation: int | None) -> str:
        if generation == current_generation and self.current is not None:
            return self.current
        return self.archived.get(generation) or os.path.join(self.log_dir, archived_log_name(self.base, generation))

    def gaps(self, low: int, high: int) -> list[int]:
        return [g for g in range(low, high + 1) if g not in self.archived]


def read_header(fs: FileSystem, path: str) -> LogHeader:
    """The verified header of a log file. Raises LogFileCorruptError naming the file and offset."""
    handle = fs.open(path, readonly=True)
    try:
        raw = handle.pread(4096, 0)
    finally:
        handle.close()
    try:
        return unpack_log_header(raw)
    except LogHeaderError as exc:
        raise LogFileCorruptError(
            f"{path}: log header is damaged at offset {exc.offset}: {exc}", file=path, offset=exc.offset
        ) from None


def generation_range_text(base: str, low: int, high: int) -> str:
    return f"{archived_log_name(base, low)} - {archived_log_name(base, high)} (generations {low}-{high})"


class LogChain:
    """Reads generations ``low..current`` of one stream with every continuity check."""

    def __init__(
        self,
        fs: FileSystem,
        logs: LogSet,
        signature: Signature,
        current: LogHeader,
        events: EventLog,
        sg: str,
        needed_by: str,
    ) -> None:
        self.fs = fs
        self.logs = logs
        self.signature = signature
        self.current = current
        self.events = events
        self.sg = sg
        self.needed_by = needed_by  # e.g. "priv1.edb", for the event texts

    def check_present(self, low: int, high_required: int) -> None:
        """Raise the right error (with its event) if any generation in ``low..current`` is not on disk."""
        base = self.logs.base
        current_gen = self.current.generation
        high = max(current_gen, high_required)
        archived_ok = lambda g: g in self.logs.archived or g == current_gen  # noqa: E731
        if not archived_ok(low):
            present = [g for g in sorted(self.logs.archived) if g > low] + [current_gen]
            found = present[0]
            self.events.emit(
                452,
                sg=self.sg,
                db=self.needed_by,
                low=archived_log_name(base, low),
                high=archived_log_name(base, high),
                found=archived_log_name(base, found),
            )
            raise RequiredLogFilesMissingError(
                f"{self.needed_by} needs log generations {low}-{high} ({generation_range_text(base, low, high)}); "
                f"the log folder {self.logs.log_dir} has them only from generation {found}"
            )
        if high_required > current_gen:
            self.events.emit(
                453,
                sg=self.sg,
                db=self.needed_by,
                low=archived_log_name(base, low),
                high=archived_log_name(base, high_required),
                found=archived_log_name(base, current_gen),
            )
            raise RequiredLogFilesMissingError(
                f"{self.needed_by} needs log generations {low}-{high_required}; the newest generation in "
                f"{self.logs.log_dir} is {current_gen} ({current_log_name(base)})"
            )
        missing = [g for g in range(low, current_gen) if g not in self.logs.archived]
        if missing:
            name = archived_log_name(base, missing[0])
            self.events.emit(450, sg=self.sg, file=name)
            raise MissingLogFileError(
                f"{self.needed_by} needs log generations {low}-{current_gen}; missing from {self.logs.log_dir}: "
                + ", ".join(f"{archived_log_name(base, g)} (generation {g})" for g in missing[:20])
                + (" ..." if len(missing) > 20 else "")
            )

    def generations(self, low: int) -> Iterator[Generation]:
        """Each generation from ``low`` through the current one, verified and scanned."""
        previous: LogHeader | None = None
        current_gen = self.current.generation
        for number in range(low, current_gen + 1):
            path = self.logs.path_of(number, current_gen)
            header = self.current if number == current_gen else read_header(self.fs, path)
            self._check_header(path, number, header, previous)
            data = read_file(self.fs, path)
            try:
                yield scan_generation(path, data, header, tolerate_torn_tail=number == current_gen)
            except LogFileCorruptError as exc:
                offset = int(exc.details.get("offset", 0))  # type: ignore[call-overload]
                self.events.emit(
                    465, sg=self.sg, file=path, lgpos=str(LgPos(number, offset)), sector=offset // SECTOR_SIZE
                )
                raise
            previous = header

    def _check_header(self, path: str, number: int, header: LogHeader, previous: LogHeader | None) -> None:
        if header.generation != number:
            self._corrupt(
                path,
                "-513",
                f"its header says generation {header.generation}",
                LogGenerationMismatchError(
                    f"{path} should hold generation {number} but its header says generation {header.generation}"
                ),
            )
        if header.signature != self.signature:
            self._corrupt(
                path,
                "-530",
                "its log signature does not match the storage group's",
                BadLogSignatureError(
                    f"{path} (generation {number}) belongs to another log stream: its signature is "
                    f"[{header.signature}], this storage group's is [{self.signature}]"
                ),
            )
        if previous is not None and header.prev_created_us != previous.created_us:
            self.events.emit(
                496,
                sg=self.sg,
                db=self.needed_by,
                file=os.path.basename(path),
                expected=format_time(previous.created_us),
                found=format_time(header.prev_created_us),
            )
            raise InvalidLogSequenceError(
                f"{path} (generation {number}) does not follow generation {previous.generation}: it records the "
                f"previous generation as created at {format_time(header.prev_created_us)}, but generation "
                f"{previous.generation} was created at {format_time(previous.created_us)}"
            )

    def _corrupt(self, path: str, code: str, detail: str, error: Exception) -> None:
        self.events.emit(440, sg=self.sg, file=path, error=code, detail=detail)
        raise error
