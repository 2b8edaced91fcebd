"""eseutil's dump modes over ShadowStore's own files: /mh (store header), /ml (log files and the continuity of
a log set) and /mk (checkpoint file).

Each ``dump_*`` function reads through the engine's readers (engine/dbfile.py, engine/logstream.py with
engine/logreader.py, engine/checkpointfile.py), never a parser of its own, and returns a report: the parsed
structures and what was found wrong. cli/eseutil_layout.py lays a report out as eseutil does, or as JSON.
``identify`` names a file from its first bytes, real Windows ESE files included, and ``is_real_ese`` says whether
the files a path names (a file, a folder, ``DIR/E00``) are ours or real ESE files, so that the command picks the
dumps here or those of tools/esereal.py; a file that is neither is refused with one line saying what it is.

Policy: what makes a dump impossible is raised (a missing path, a file of another kind, both header copies
damaged). What a dump finds is collected, in the order found: ``errors`` holds the ShadowStoreError for each
damaged, missing or inconsistent file (callers raise the first with ``raise_first_error``), ``warnings`` what
was survived (one damaged copy of a shadowed header), ``notes`` what is normal (a torn tail in the current log).
"""

from __future__ import annotations

import os
import re
import struct
from collections import Counter
from dataclasses import dataclass, field

from shadowstore.engine.checkpointfile import read_checkpoint
from shadowstore.engine.dbfile import read_header_copies
from shadowstore.engine.logreader import Generation, RecordAssembler, scan_generation
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.errors import (
    DiskIOError,
    FileNotFoundError_,
    InvalidParameterError,
    LogFileCorruptError,
    MissingLogFileError,
    ShadowStoreError,
)
from shadowstore.format.checkpoint import CHECKPOINT_COPY_SIZE, Checkpoint
from shadowstore.format.common import LgPos, format_time
from shadowstore.format.dbheader import DbHeader
from shadowstore.format.logfile import (
    FLAG_CIRCULAR,
    LOG_HEADER_SIZE,
    LogHeader,
    archived_log_name,
    checkpoint_name,
    current_log_name,
    parse_archived_log_name,
)
from shadowstore.format.logrecord import KIND_NAMES
from shadowstore.io.filekinds import special_kind
from shadowstore.io.fs import FileSystem, OsFileSystem, opened
from shadowstore.tools.esekind import ESE_DB_MAGIC as ESE_DB_MAGIC  # re-exported: named from here by callers
from shadowstore.tools.esekind import (
    HEAD_SIZE,
    KIND_CHECKPOINT,
    KIND_DATABASE,
    KIND_LOG,
    KIND_UNKNOWN,
    MODE_FOR_KIND,
    identify,
    is_dir,
)
from shadowstore.tools.logsetcheck import check_sequence, set_signature

# --- what a file is (identify, is_real_ese: tools/esekind.py) -----------------------------------------------


def refuse_special(path: str, wanted: str) -> None:
    """Raise InvalidParameterError when ``path`` is a FIFO, socket or device (io/filekinds.py): opening a FIFO
    would wait for a writer forever."""
    what = special_kind(path)
    if what is not None:
        raise InvalidParameterError(
            f"{path} is {what}, not a {wanted}: eseutil reads regular files only (a FIFO would be waited on forever)",
            hint="name a regular file; move the special file out of the log folder if it is in the way",
            file=path,
        )


def _check_kind(fs: FileSystem, path: str, wanted: str) -> None:
    """Return if ``path`` may be a ``wanted`` file (one whose first bytes are damaged included).

    Raises FileNotFoundError_ when it does not exist, InvalidParameterError when it is a folder or its first
    bytes say it is another kind of file, DiskIOError when it cannot be read.
    """
    if not fs.exists(path):
        raise FileNotFoundError_(f"{path} does not exist", file=path)
    if is_dir(fs, path):
        raise InvalidParameterError(f"{path} is a folder, not a {wanted}", file=path)
    refuse_special(path, wanted)
    try:
        with opened(fs, path) as handle:
            kind = identify(handle.pread(HEAD_SIZE, 0))
    except OSError as exc:
        raise DiskIOError(f"cannot read {path}: {exc.strerror}", file=path) from exc
    if kind in (wanted, KIND_UNKNOWN):
        return
    if kind not in MODE_FOR_KIND:  # the eseutil command reads these with tools/esereal.py (see is_real_ese)
        raise InvalidParameterError(f"{path} is a {kind}, not a {wanted}; 'shadowstore eseutil' reads it itself")
    raise InvalidParameterError(f"{path} is a {kind}, not a {wanted}; dump it with 'eseutil {MODE_FOR_KIND[kind]}'")


# --- reports -------------------------------------------------------------------------------------------------


@dataclass
class CopyProblem:
    """A damaged copy of a shadowed header: copy 0 is the primary, copy 1 the shadow."""

    copy: int
    offset: int
    problem: str

    def describe(self, used: int) -> str:
        which = "primary" if self.copy == 0 else "shadow"
        return f"header copy {self.copy} ({which}, offset {self.offset}) is damaged: {self.problem}; shown: copy {used}"


@dataclass
class Report:
    """What every dump shares: errors (the first decides the exit code), warnings and notes."""

    errors: list[ShadowStoreError] = field(default_factory=list, kw_only=True)
    warnings: list[str] = field(default_factory=list, kw_only=True)
    notes: list[str] = field(default_factory=list, kw_only=True)

    @property
    def ok(self) -> bool:
        """True when everything read is valid (notes allowed)."""
        return not self.errors and not self.warnings

    def raise_first_error(self) -> None:
        """Raise the first error found (its ShadowStoreError subclass); return when there was none."""
        if self.errors:
            raise self.errors[0]


def _shown_copy(damaged: list[CopyProblem]) -> int:
    # why: the primary is written and synced before the shadow, so when both are valid it is never the older.
    return 1 if any(d.copy == 0 for d in damaged) else 0


# --- /mh -----------------------------------------------------------------------------------------------------


@dataclass
class DatabaseDump(Report):
    path: str
    header: DbHeader
    checksum: int  # as stored in the copy shown
    copy_used: int
    damaged: list[CopyProblem]

    @property
    def copy_size(self) -> int:
        return self.header.page_size


def dump_database(path: str, fs: FileSystem | None = None) -> DatabaseDump:
    """The header of a store file (eseutil /mh), from its newest valid copy; a damaged copy is a warning.

    Raises FileNotFoundError_ (-1811) when ``path`` is missing, InvalidParameterError when it is another kind
    of file, DatabaseCorruptedError (-1206) naming the file and both copies' offsets when neither is valid.
    """
    fs = fs or OsFileSystem()
    _check_kind(fs, path, KIND_DATABASE)
    choice = read_header_copies(fs, path)
    page_size = choice.header.page_size
    damaged = [CopyProblem(index, index * page_size, problem) for index, problem in choice.damaged]
    used = _shown_copy(damaged)
    with opened(fs, path) as handle:
        (checksum,) = struct.unpack("<I", handle.pread(4, used * page_size))
    return DatabaseDump(path, choice.header, checksum, used, damaged, warnings=[d.describe(used) for d in damaged])


# --- /mk -----------------------------------------------------------------------------------------------------


@dataclass
class CheckpointDump(Report):
    path: str
    checkpoint: Checkpoint
    copy_used: int
    damaged: list[CopyProblem]
    copy_size = CHECKPOINT_COPY_SIZE

    @property
    def circular(self) -> bool:
        return bool(self.checkpoint.flags & FLAG_CIRCULAR)  # the checkpoint uses the log header's flag bit


def dump_checkpoint(path: str, fs: FileSystem | None = None) -> CheckpointDump:
    """The checkpoint file (eseutil /mk), from its newest valid copy; a damaged copy is a warning.

    Raises FileNotFoundError_ (-1811), InvalidParameterError (another kind of file), CheckpointCorruptError
    (-533) naming the file and both copies' offsets when neither copy is valid.
    """
    fs = fs or OsFileSystem()
    _check_kind(fs, path, KIND_CHECKPOINT)
    checkpoint, problems = read_checkpoint(fs, path)
    copies = [exc.offset // CHECKPOINT_COPY_SIZE for exc in problems]
    damaged = [CopyProblem(c, c * CHECKPOINT_COPY_SIZE, str(exc)) for c, exc in zip(copies, problems, strict=True)]
    used = _shown_copy(damaged)
    return CheckpointDump(path, checkpoint, used, damaged, warnings=[d.describe(used) for d in damaged])


# --- /ml -----------------------------------------------------------------------------------------------------

LOG_NAME = re.compile(r"([A-Za-z0-9]{3})(?:[0-9A-F]{5}|[0-9A-F]{8})?\.log")


@dataclass
class LogDump:
    """One log file: its header (None when damaged), what the scan of its blocks found, its own errors."""

    path: str
    name_generation: int | None  # from an archived name; None for the current log or a foreign name
    current: bool
    header: LogHeader | None = None
    scan: Generation | None = None
    damaged_at: LgPos | None = None  # where the scan stopped on damage
    records: Counter[str] = field(default_factory=Counter)  # by kind, counted where each record starts
    errors: list[ShadowStoreError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def generation(self) -> int | None:
        """The generation this file stands for in the set: its name's, else its header's."""
        if self.name_generation is not None:
            return self.name_generation
        return self.header.generation if self.header else None

    @property
    def last_lgpos(self) -> LgPos | None:
        return LgPos(self.scan.header.generation, self.scan.end_offset) if self.scan else self.damaged_at

    def fail(self, error: type[ShadowStoreError], message: str) -> None:
        self.errors.append(error(message, file=self.path, generation=self.generation))


@dataclass
class MissingLogs:
    """A gap in the generations of a log set."""

    low: int
    high: int
    error: MissingLogFileError


@dataclass
class LogSetDump(Report):
    target: str
    directory: str
    base: str
    checkpoint: LgPos | None  # from <base>.chk in the same folder, when it is readable
    entries: list[LogDump | MissingLogs]

    @property
    def logs(self) -> list[LogDump]:
        return [e for e in self.entries if isinstance(e, LogDump)]

    @property
    def missing(self) -> list[int]:
        return [g for e in self.entries if isinstance(e, MissingLogs) for g in range(e.low, e.high + 1)]


def dump_logs(target: str, fs: FileSystem | None = None) -> LogSetDump:
    """Every log file named by ``target`` (eseutil /ml), in generation order, with the set's continuity checks.

    ``target`` is a log file, a log folder, or a folder and base name (``DIR/E00``: every E00*.log in DIR).
    Each file is checked (header, blocks, records) and, across the set: the header's generation equal to the
    name's (-513), contiguous generations (-528), one signature (-530), each file's previous-generation time
    equal to the previous file's creation time (-515). These are collected in ``errors``, not raised; a torn
    tail in the current log is a note. Raises FileNotFoundError_ when ``target`` names nothing, and
    InvalidParameterError when a single file is not a log or a folder holds the logs of several base names.
    """
    fs = fs or OsFileSystem()
    directory, base, logs = _log_files(fs, target)
    for log in logs:
        what = special_kind(log.path)
        if what is not None:  # why not opened: a FIFO would block the dump (and doctor) forever
            log.fail(LogFileCorruptError, f"{log.path} has a log file's name but is {what}, not a log file")
            continue
        try:
            log.header = read_header(fs, log.path)
        except LogFileCorruptError as exc:
            exc.details.setdefault("file", log.path)
            log.errors.append(exc)
    base = base or next((log.header.base for log in logs if log.header), "")
    entries = check_sequence(
        logs,
        set_signature(logs),
        lambda h: (h.prev_created_us, h.created_us),
        format_time,
        lambda low, high: _missing(directory, base, low, high),
    )
    _scan_logs(fs, logs)
    dump = LogSetDump(target, directory, base, _checkpoint_in(fs, directory, base), entries)
    for entry in entries:
        dump.errors += [entry.error] if isinstance(entry, MissingLogs) else entry.errors
        dump.notes += entry.notes if isinstance(entry, LogDump) else []
    return dump


def _log_files(fs: FileSystem, target: str) -> tuple[str, str | None, list[LogDump]]:
    """(folder, base name, files in generation order) named by ``target``; raises as dump_logs says."""
    if is_dir(fs, target):
        directory, base = target, _only_base(fs, target)
    elif fs.exists(target):
        _check_kind(fs, target, KIND_LOG)
        directory, name = os.path.split(target)
        name_base, generation, current = _parse_log_name(name)
        return directory, name_base, [LogDump(target, generation, current)]
    else:
        directory, base = os.path.split(target)
        directory = directory or "."
        if not (LOG_NAME.fullmatch(base + ".log") and is_dir(fs, directory)):
            raise FileNotFoundError_(f"{target} does not exist (give a log file, a log folder or DIR/E00)", file=target)
    found = LogSet.scan(fs, directory, base)
    logs = [LogDump(path, generation, False) for generation, path in sorted(found.archived.items())]
    logs += [LogDump(found.current, None, True)] if found.current else []
    if not logs:
        raise FileNotFoundError_(f"{directory} holds no log files of base {base} ({base}*.log)", file=directory)
    return directory, base, logs


def _only_base(fs: FileSystem, directory: str) -> str:
    named = map(_parse_log_name, fs.listdir(directory))
    bases = sorted({base for base, generation, current in named if base and (generation or current)})
    if not bases:
        raise FileNotFoundError_(f"{directory} holds no log files (E00.log, E0000001.log, ...)", file=directory)
    if len(bases) > 1:
        example = os.path.join(directory, bases[0])
        raise InvalidParameterError(f"{directory} holds the logs of several base names {bases}; name one: {example}")
    return bases[0]


def _parse_log_name(name: str) -> tuple[str | None, int | None, bool]:
    """(base, archived generation, is the current log) from a file name; (None, None, False) if not a log name."""
    match = LOG_NAME.fullmatch(name)
    base = match.group(1) if match else ""
    if match and name == current_log_name(base):
        return base, None, True
    generation = parse_archived_log_name(base, name) if match else None
    return (base, generation, False) if generation is not None else (None, None, False)


def _missing(directory: str, base: str, low: int, high: int) -> MissingLogs:
    names = archived_log_name(base, low) + (f" - {archived_log_name(base, high)}" if high > low else "")
    span = f"generation {low}" if low == high else f"generations {low}-{high}"
    message = f"missing log file(s) in {directory}: {names} ({span})"
    return MissingLogs(low, high, MissingLogFileError(message, file=directory, generation=low))


def _scan_logs(fs: FileSystem, logs: list[LogDump]) -> None:
    """Scan each file's blocks (a torn tail is tolerated in the current log only) and count its records."""
    assembler = RecordAssembler()
    owners: dict[int, LogDump] = {}
    previous: int | None = None
    for log in logs:
        number = log.header.generation if log.header else None
        if number is None or previous is None or number != previous + 1:
            assembler = RecordAssembler()  # why: a record cannot continue across a gap or a damaged file
        previous = number
        if log.header is None or number is None:
            continue
        owners[number] = log
        try:
            data = _read_log(fs, log)
            log.scan = scan_generation(log.path, data, log.header, tolerate_torn_tail=log.current)
        except LogFileCorruptError as exc:
            offset = exc.details.get("offset")
            log.damaged_at = LgPos(number, offset if isinstance(offset, int) else LOG_HEADER_SIZE)
            log.errors.append(exc)
            previous = None
            continue
        if not _count_records(log, log.scan, assembler, owners):
            previous = None
        if log.scan.torn is not None:
            torn = log.scan.torn
            log.notes.append(
                f"{log.path} ends in a torn flush at offset {torn.offset} ({torn.dropped} bytes dropped: "
                f"{torn.reason}); normal in the current log after a crash: those commits were never acknowledged"
            )


def _read_log(fs: FileSystem, log: LogDump) -> bytes:
    """The bytes of ``log`` up to the size its (verified) header gives: the scan reads no further, and a file
    extended far past it (a sparse file of many GiB) must not be read into memory. A file longer than its
    header says gets a note."""
    assert log.header is not None
    with opened(fs, log.path) as handle:
        size = handle.size()
        if size > log.header.file_size:
            log.notes.append(
                f"{log.path} is {size} bytes, longer than the {log.header.file_size} bytes its header gives; "
                "the bytes after those were not read"
            )
        return handle.pread(min(size, log.header.file_size), 0)


def _count_records(log: LogDump, scan: Generation, assembler: RecordAssembler, owners: dict[int, LogDump]) -> bool:
    """Join fragments into records and count each by kind in the file where it starts.

    Returns False after adding the assembler's LogFileCorruptError (a record whose start is missing) to ``log``.
    """
    try:
        for record in assembler.feed(scan):
            kind = record.data[0] if len(record.data) else 0
            owners.get(record.start.gen, log).records[KIND_NAMES.get(kind, f"kind {kind}")] += 1
    except LogFileCorruptError as exc:
        log.errors.append(exc)
        return False
    return True


def _checkpoint_in(fs: FileSystem, directory: str, base: str) -> LgPos | None:
    path = os.path.join(directory, checkpoint_name(base))
    if not base or not fs.exists(path) or special_kind(path) is not None:
        return None
    try:
        return read_checkpoint(fs, path)[0].checkpoint
    except ShadowStoreError:
        return None
