"""eseutil over real Windows ESE files, read-only: /mh (database header), /ml (log files and the continuity of a
log set), /mk (checkpoint) and /k (the header checksums of a database).

The parsers are format/esedb.py, format/eselog.py and format/esechk.py; names are format/esenames.py. Each
``dump_ese_*`` returns a report that subclasses tools/eseutil.Report, with the same policy as the dumps of our own
files: what makes a dump impossible is raised (a missing path, a file that is not of the kind asked for, both
header copies damaged); what a dump finds is collected in ``errors`` (the first decides the exit code),
``warnings`` (one damaged copy survived) and ``notes`` (what is normal or not checked). Nothing is ever written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import cast

from shadowstore.errors import (
    BadCheckpointSignatureError,
    DiskIOError,
    FileNotFoundError_,
    InvalidParameterError,
    LogFileCorruptError,
    LogFileSizeMismatchError,
    MissingLogFileError,
    ShadowStoreError,
)
from shadowstore.format.esechk import CHECKPOINT_COPY_SIZE, CHECKPOINT_FILE_SIZE, EseCheckpoint, read_checkpoint
from shadowstore.format.esedb import PAGE_SIZES, EseDbHeader, read_db_header
from shadowstore.format.eselog import LOG_HEADER_SIZE, EseLogHeader, filled_with, read_log_header
from shadowstore.format.esenames import (
    LogName,
    archived_name,
    checkpoint_names,
    is_prepared_log,
    is_reserve_log,
    parse_log_name,
)
from shadowstore.format.esetypes import EseLgPos, EseSignature, filetype_of
from shadowstore.io.fs import FileSystem, OsFileSystem, opened
from shadowstore.tools.esekind import is_dir
from shadowstore.tools.eseutil import CopyProblem, MissingLogs, Report
from shadowstore.tools.logsetcheck import check_sequence, set_signature

RECORDS_NOT_READ = (
    "the records of real ESE logs are not decoded (their format changed with each log version): each file's header "
    "and the continuity of the set were checked"
)


def read_head(fs: FileSystem, path: str, size: int) -> tuple[bytes, int]:
    """The first ``size`` bytes of ``path`` (fewer when it is shorter) and its length. Raises FileNotFoundError_
    (-1811) when it does not exist, InvalidParameterError for a folder, DiskIOError when it cannot be read."""
    if not fs.exists(path):
        raise FileNotFoundError_(f"{path} does not exist", file=path)
    try:
        with opened(fs, path) as handle:
            return handle.pread(size, 0), handle.size()
    except IsADirectoryError:
        raise InvalidParameterError(f"{path} is a folder, not a file", file=path) from None
    except OSError as exc:
        raise DiskIOError(f"cannot read {path}: {exc.strerror}", file=path) from exc


def _damaged_copies(problems: list[tuple[int, int, str | None]], used: int) -> tuple[list[CopyProblem], list[str]]:
    damaged = [CopyProblem(copy, offset, problem) for copy, offset, problem in problems if problem is not None]
    return damaged, [d.describe(used) for d in damaged]


# --- /mh and /k ----------------------------------------------------------------------------------------------


@dataclass
class EseDatabaseDump(Report):
    path: str
    header: EseDbHeader
    page_size: int
    copy_used: int
    damaged: list[CopyProblem]
    file_size: int

    @property
    def copy_size(self) -> int:
        return self.page_size


def dump_ese_database(path: str, fs: FileSystem | None = None) -> EseDatabaseDump:
    """The header of a real ESE database (eseutil /mh): the primary copy, or the shadow when the primary is damaged
    (a warning). Raises FileNotFoundError_, InvalidParameterError (not an ESE database) and ReadVerifyFailureError
    (-1018, both copies damaged; the message names the file and both offsets)."""
    data, size = read_head(fs or OsFileSystem(), path, 2 * PAGE_SIZES[-1])
    read = read_db_header(data, path)
    damaged, warnings = _damaged_copies([(c.copy, c.offset, c.problem) for c in read.copies], read.copy_used)
    dump = EseDatabaseDump(path, read.header, read.page_size, read.copy_used, damaged, size, warnings=warnings)
    if read.shadow_differs:
        dump.notes.append("both header copies are valid but differ; shown: copy 0 (ESE reads the primary first)")
    if size % read.page_size:
        dump.warnings.append(f"{path} is {size} bytes, not a whole number of {read.page_size}-byte pages")
    return dump


@dataclass
class EseChecksumDump(EseDatabaseDump):
    """eseutil /k of a real database: both header copies verified; the pages are not (see ``notes``)."""

    @property
    def pages(self) -> int:
        return self.file_size // self.page_size


def check_ese_database(path: str, fs: FileSystem | None = None) -> EseChecksumDump:
    """Verify the XOR checksums of both header copies of a real ESE database (eseutil /k). One damaged copy is a
    warning; both damaged raises ReadVerifyFailureError (-1018) naming the file and offsets. The data pages are
    not verified, and a note says so."""
    dump = dump_ese_database(path, fs)
    checked = EseChecksumDump(
        dump.path,
        dump.header,
        dump.page_size,
        dump.copy_used,
        dump.damaged,
        dump.file_size,
        warnings=dump.warnings,
        notes=dump.notes,
    )
    data_pages = max(checked.pages - 2, 0)
    checked.notes.append(
        f"the {data_pages} data page(s) after the two header pages were not verified: the page checksums of real "
        "ESE databases (XOR and ECC formats) are not implemented; only the header copies were checked"
    )
    return checked


# --- /mk -----------------------------------------------------------------------------------------------------


@dataclass
class EseCheckpointDump(Report):
    path: str
    checkpoint: EseCheckpoint
    copy_used: int
    damaged: list[CopyProblem]
    copy_size = CHECKPOINT_COPY_SIZE


def dump_ese_checkpoint(path: str, fs: FileSystem | None = None) -> EseCheckpointDump:
    """A real ESE checkpoint file (eseutil /mk), from its primary copy or, when that is damaged, its shadow (a
    warning). Raises FileNotFoundError_, InvalidParameterError (not a checkpoint) and CheckpointCorruptError (-533,
    both copies damaged, naming the file and both offsets)."""
    data, size = read_head(fs or OsFileSystem(), path, CHECKPOINT_FILE_SIZE)
    read = read_checkpoint(data, path)
    offsets = [(c, c * CHECKPOINT_COPY_SIZE, read.problems[c]) for c in (0, 1)]
    damaged, warnings = _damaged_copies(offsets, read.copy_used)
    dump = EseCheckpointDump(path, read.checkpoint, read.copy_used, damaged, warnings=warnings)
    if read.shadow_differs:
        dump.notes.append("both checkpoint copies are valid but differ; shown: copy 0 (ESE reads the primary first)")
    if size != CHECKPOINT_FILE_SIZE:
        dump.notes.append(f"{path} is {size} bytes; ESE writes checkpoint files of {CHECKPOINT_FILE_SIZE} bytes")
    return dump


# --- /ml -----------------------------------------------------------------------------------------------------


@dataclass
class EseLogDump:
    """One log file: what its name says, its header (None when unreadable), its size, its own errors."""

    path: str
    name: LogName | None  # None: a name that is not a log generation's (given as a single file)
    header: EseLogHeader | None = None
    file_size: int = 0
    errors: list[ShadowStoreError] = field(default_factory=list)

    @property
    def current(self) -> bool:
        return self.name is not None and self.name.current

    @property
    def name_generation(self) -> int | None:
        """The generation the file's name gives (None for the current log and a name that is no log's)."""
        return self.name.generation if self.name is not None else None

    @property
    def generation(self) -> int | None:
        """The generation this file stands for in the set: its name's, else its header's."""
        if self.name_generation is not None:
            return self.name_generation
        return self.header.generation if self.header else None

    def fail(self, error: type[ShadowStoreError], message: str) -> None:
        self.errors.append(error(message, file=self.path, generation=self.generation))


@dataclass
class EseLogSetDump(Report):
    target: str
    directory: str
    base: str
    checkpoint_file: str | None  # <base>.chk or .jcp in the same folder, when there is one
    checkpoint: EseLgPos | None  # its position, when it is readable
    entries: list[EseLogDump | MissingLogs]
    single: bool  # one file was named, not a set

    @property
    def logs(self) -> list[EseLogDump]:
        return [e for e in self.entries if isinstance(e, EseLogDump)]

    @property
    def missing(self) -> list[int]:
        return [g for e in self.entries if isinstance(e, MissingLogs) for g in range(e.low, e.high + 1)]

    @property
    def signature(self) -> EseSignature | None:
        return cast(EseSignature | None, set_signature(self.logs))


def dump_ese_logs(target: str, fs: FileSystem | None = None) -> EseLogSetDump:
    """Every real ESE log named by ``target`` (eseutil /ml): a log file, a folder, or a folder and base name
    (``DIR/edb``: every edb*.log and edb*.jtx in DIR), in generation order, with the set's checks.

    Checked per file: the header (-501 when damaged), its generation against its name (-513), its size against
    the header (-541). Across the set: contiguous generations (-528, "missing log file(s)"), one signature (-530),
    each file's previous-generation time equal to the creation time of the generation before (-515), and the
    checkpoint in the same folder (-532 when it belongs to another stream, -528 when the logs it needs are gone).
    These are collected, not raised. Reserve logs and the log prepared ahead are notes. Raises FileNotFoundError_
    when ``target`` names nothing, InvalidParameterError when a single file is not a log or a folder holds the
    logs of several base names.
    """
    fs = fs or OsFileSystem()
    directory, base, logs, single = _ese_log_files(fs, target)
    for log in logs:
        _read_log(fs, log, single)
    extension = next((log.name.extension for log in logs if log.name), ".log")
    entries = check_sequence(
        logs,
        set_signature(logs),
        lambda h: (h.prev_created, h.created),
        str,
        lambda low, high: _missing(directory, base, extension, low, high),
    )
    dump = EseLogSetDump(target, directory, base, None, None, entries, single)
    for entry in entries:
        dump.errors += [entry.error] if isinstance(entry, MissingLogs) else entry.errors
    _check_checkpoint(fs, dump)
    dump.notes += _side_files(fs, directory, base) if not single else []
    dump.notes.append(RECORDS_NOT_READ)
    return dump


def _ese_log_files(fs: FileSystem, target: str) -> tuple[str, str, list[EseLogDump], bool]:
    """(folder, base name, files in generation order, whether one file was named); raises as dump_ese_logs."""
    if fs.exists(target) and not is_dir(fs, target):
        directory, name = os.path.split(target)
        parsed = parse_log_name(name)
        return directory or ".", parsed.base if parsed else "", [EseLogDump(target, parsed)], True
    if is_dir(fs, target):
        directory, names = target, _log_names(fs, target, None)
        bases = sorted({parsed.base for parsed in names.values()})
        if len(bases) > 1:
            example = os.path.join(directory, bases[0])
            raise InvalidParameterError(
                f"{directory} holds the logs of several base names {bases}; name one: {example}"
            )
    else:
        directory, base = os.path.split(target)
        directory = directory or "."
        if len(base) != 3 or not is_dir(fs, directory):
            raise FileNotFoundError_(f"{target} does not exist (give a log file, a log folder or DIR/edb)", file=target)
        names = _log_names(fs, directory, base)
    if not names:
        raise FileNotFoundError_(f"{target} names no log files (edb.log, edb00001.log, E00.jtx, ...)", file=target)
    order = sorted(names.items(), key=lambda item: (item[1].current, item[1].generation or 0))
    logs = [EseLogDump(os.path.join(directory, name), parsed) for name, parsed in order]
    return directory, order[0][1].base, logs, False


def _log_names(fs: FileSystem, directory: str, base: str | None) -> dict[str, LogName]:
    found = {name: parse_log_name(name) for name in fs.listdir(directory)}
    return {n: p for n, p in found.items() if p is not None and (base is None or p.base.lower() == base.lower())}


def _read_log(fs: FileSystem, log: EseLogDump, single: bool) -> None:
    """Read and check one file's header. In a set, a file that cannot be a log has a generation's name and is
    a damaged member (-501); named alone, it is not a log (InvalidParameterError is raised)."""
    head, log.file_size = read_head(fs, log.path, LOG_HEADER_SIZE)
    try:
        log.header = read_log_header(head, log.path, log.file_size)
    except LogFileCorruptError as exc:
        log.errors.append(exc)
        return
    except InvalidParameterError as exc:
        if single:
            raise
        log.fail(LogFileCorruptError, f"{log.path} has a log generation's name but cannot be read: {exc.message}")
        return
    if log.header.file_size != log.file_size:
        log.fail(
            LogFileSizeMismatchError,
            f"{log.path} is {log.file_size} bytes, but its header says {log.header.file_sectors} sectors of "
            f"{log.header.sector_size} bytes ({log.header.file_size} bytes): truncated or extended",
        )


def _missing(directory: str, base: str, extension: str, low: int, high: int, why: str = "") -> MissingLogs:
    names = archived_name(base, low, extension)
    names += f" - {archived_name(base, high, extension)}" if high > low else ""
    span = f"generation {low}" if low == high else f"generations {low}-{high}"
    message = f"Missing log file(s) in {directory}: {names} ({span}){why}"
    return MissingLogs(low, high, MissingLogFileError(message, file=directory, generation=low))


def _check_checkpoint(fs: FileSystem, dump: EseLogSetDump) -> None:
    """Read <base>.chk (or .jcp) beside the logs: its position for the dump, -532 when its signature is not the
    set's, -528 when the logs from its generation on are not all there; a damaged checkpoint is a warning."""
    paths = [os.path.join(dump.directory, name) for name in checkpoint_names(dump.base)] if dump.base else []
    path = next((p for p in paths if fs.exists(p)), None)
    if path is None:
        return
    dump.checkpoint_file = path
    try:
        checkpoint = dump_ese_checkpoint(path, fs).checkpoint
    except ShadowStoreError as exc:
        dump.warnings.append(f"the checkpoint file cannot be used: {exc}")
        return
    dump.checkpoint = checkpoint.checkpoint
    signature = dump.signature
    if signature is not None and checkpoint.signature != signature:
        dump.errors.append(
            BadCheckpointSignatureError(
                f"{path} belongs to another log stream: its signature is [{checkpoint.signature}], the log set's is "
                f"[{signature}]",
                file=path,
            )
        )
        return
    present = [log.generation for log in dump.logs if log.generation is not None]
    needed = checkpoint.checkpoint.generation
    if present and not dump.single and 0 < needed < min(present):
        extension = next((log.name.extension for log in dump.logs if log.name), ".log")
        why = f": the checkpoint ({path}) is at {checkpoint.checkpoint} and recovery starts there"
        dump.errors.append(_missing(dump.directory, dump.base, extension, needed, min(present) - 1, why).error)


def _side_files(fs: FileSystem, directory: str, base: str) -> list[str]:
    """A note for each reserve log and log prepared ahead in ``directory``: not part of the set."""
    notes = []
    for name in sorted(fs.listdir(directory)):
        reserve = is_reserve_log(name) and (name.lower().startswith(base.lower()) or name.lower().startswith("res"))
        prepared = is_prepared_log(name) and name.lower().startswith(base.lower())
        if not (reserve or prepared):
            continue
        what = "a reserve log" if reserve else "the next log, prepared ahead"
        notes.append(
            f"{os.path.join(directory, name)} is {what} ({_content(fs, os.path.join(directory, name))}), "
            "not part of the log set"
        )
    return notes


def _content(fs: FileSystem, path: str) -> str:
    try:
        head, size = read_head(fs, path, LOG_HEADER_SIZE)
    except ShadowStoreError as exc:
        return f"unreadable: {exc.message}"
    fill = filled_with(head)
    if fill is not None:
        return f"{size} bytes, zero-filled" if fill == 0 else f"{size} bytes, filled with 0x{fill:02X}"
    if filetype_of(head) == 3:
        generation = int.from_bytes(head[4:8], "little", signed=True)
        return f"{size} bytes, holding an old log header of generation {generation}"
    return f"{size} bytes"
