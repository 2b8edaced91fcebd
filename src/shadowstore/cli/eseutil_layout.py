"""eseutil's layout of our own files' dumps (tools/eseutil.py): the lines of ``/mh``, ``/ml`` and ``/mk`` as
eseutil prints them (research/ese.md §3.2 and §4), their ``--json`` documents, and the exit code of a report.
Shared by the command (cli/eseutil_cmd.py), the layout of real ESE files (cli/eseutil_real.py) and the service's
``GET /v1/files/header`` (the same lines either way). Nothing here reads a file or parses a command line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, cast

from shadowstore.errors import ExitCode, LogFileCorruptError
from shadowstore.format.common import BACKUP_SNAPSHOT, AttachInfo, BackupInfo, LgPos, Signature, format_time, iso_time
from shadowstore.format.dbheader import BACKUP_SLOTS, DB_MAGIC
from shadowstore.format.logfile import FLAG_CIRCULAR_PAST
from shadowstore.tools.esereal import EseCheckpointDump, EseDatabaseDump, EseLogSetDump
from shadowstore.tools.eseutil import CheckpointDump, DatabaseDump, LogDump, LogSetDump, MissingLogs, Report

IND = "      "  # the indent of eseutil's /ml and /mk lines
SUB = " " * 17  # the indent of an attached store's details
BACKUP_TITLES = (
    ("full_prev", "Previous Full Backup"),
    ("inc_prev", "Previous Incremental Backup"),
    ("diff_prev", "Previous Differential Backup"),
    ("copy_prev", "Previous Copy Backup"),
    ("full_cur", "Current Full Backup"),
    ("snapshot_cur", "Current Shadow copy backup"),
)


def label(name: str, value: object, width: int = 17) -> str:
    """A /mh line: the label right-aligned to ``width`` as eseutil does."""
    return f"{name:>{width}}: {value}"


def on_off(flag: bool) -> str:
    return "on" if flag else "off"


def gen_range(low: int, high: int) -> str:
    return f"{low}-{high} (0x{low:x}-0x{high:x})"


# --- /mh -----------------------------------------------------------------------------------------------------


def database_lines(dump: DatabaseDump) -> list[str]:
    h = dump.header
    lines = [
        label("Database", dump.path),
        "",
        "DATABASE HEADER:",
        "Fields:",
        label("File Type", "Database"),
        label("Checksum", f"0x{dump.checksum:08x}"),
        label("Format ulMagic", f"0x{int.from_bytes(DB_MAGIC, 'little'):x}"),
        label("Format ulVersion", f"0x{h.major:x},{h.minor}"),
        label("DB Signature", h.db_signature),
        label("cbDbPage", h.page_size),
        label("dbtime", f"{h.dbtime} (0x{h.dbtime:x})"),
        label("State", h.state_name),
        label("Log Required", gen_range(h.log_required_min, h.log_required_max)),
        label("Log Committed", gen_range(0, h.log_committed)),
        label("Last Consistent", f"{h.last_consistent}  {format_time(h.last_consistent_us)}"),
        label("Last Attach", f"{h.last_attach}  {format_time(h.last_attach_us)}"),
        label("Last Detach", f"{h.last_detach}  {format_time(h.last_detach_us)}"),
        label("Dbid", h.dbid),
        label("Log Signature", h.log_signature),
        label("Repair Count", h.repair_count),
        label("Repair Date", format_time(h.repair_us)),
    ]
    for slot, title in BACKUP_TITLES:
        lines += ["", f"{title}:", *backup_lines(getattr(h, slot))]
    return lines + copy_lines(dump, "Header")


def backup_lines(info: BackupInfo) -> list[str]:
    snapshot = " - OSSnapshot" if info.kind == BACKUP_SNAPSHOT and not info.is_empty else ""
    return [
        label("Log Gen", gen_range(info.gen_low, info.gen_high) + snapshot, 15),
        label("Mark", info.mark, 15),
        label("Mark", format_time(info.time_us), 15),
    ]


def copy_lines(dump: DatabaseDump | CheckpointDump | EseDatabaseDump | EseCheckpointDump, what: str) -> list[str]:
    """Which copy of a shadowed header is shown, and a WARNING for each damaged copy."""
    damaged = {d.copy for d in dump.damaged}
    states = [
        f"{i} ({name}, offset {i * dump.copy_size}) {'DAMAGED' if i in damaged else 'valid'}"
        for i, name in enumerate(("primary", "shadow"))
    ]
    return ["", f"{what} copies: {', '.join(states)}; shown: copy {dump.copy_used}"] + [
        f"WARNING: {w}" for w in dump.warnings
    ]


# --- /mk -----------------------------------------------------------------------------------------------------


def checkpoint_lines(dump: CheckpointDump) -> list[str]:
    c = dump.checkpoint
    lines = [
        f"{IND}Checkpoint file: {dump.path}",
        "",
        f"{IND}LastFullBackupCheckpoint: {c.full_backup}",
        f"{IND}Checkpoint: {c.checkpoint}",
        f"{IND}FullBackup: {c.full_backup}",
        f"{IND}FullBackup time: {format_time(c.full_backup_us)}",
        f"{IND}IncBackup: {c.inc_backup}",
        f"{IND}IncBackup time: {format_time(c.inc_backup_us)}",
        f"{IND}Signature: {c.signature}",
        f"{IND}Env (CircLog,LogFile): ({on_off(dump.circular)},{c.log_file_size})",
        f"{IND}Base name: {c.base}",
        f"{IND}Written: {format_time(c.written_us)} (sequence {c.sequence})",
        f"{IND}Attached stores: {len(c.attached) or 'none'}",
    ]
    for info in c.attached:
        lines += attach_lines(info)
    return lines + copy_lines(dump, "Checkpoint")


def attach_lines(info: AttachInfo) -> list[str]:
    return [f"{info.dbid:>7} {info.name}", f"{SUB}Signature: {info.signature}", f"{SUB}Last Attach: {info.attached_at}"]


# --- /ml -----------------------------------------------------------------------------------------------------


def logset_lines(dump: LogSetDump) -> list[str]:
    return [*entries_lines(dump, lambda log: log_lines(log, dump)), *(f"{IND}Note: {n}" for n in dump.notes)]


def entries_lines(dump: LogSetDump | EseLogSetDump, render: Callable[[Any], list[str]]) -> list[str]:
    """The body of /ml on a log set, ours or real: each file as ``render`` lays it out, or the gap where logs
    are missing, and the summary line when there is more than one entry."""
    lines: list[str] = []
    for entry in dump.entries:
        lines += ["", f"{IND}ERROR: {entry.error}"] if isinstance(entry, MissingLogs) else ["", *render(entry)]
    if len(dump.entries) > 1:
        lines += ["", summary_line(dump)]
    return lines


def log_lines(log: LogDump, dump: LogSetDump) -> list[str]:
    h = log.header
    lines = [f"{IND}Base name: {h.base if h else dump.base}", f"{IND}Log file: {log.path}"]
    if h is not None:
        lines += [
            f"{IND}lGeneration: {h.generation} (0x{h.generation:X})",
            f"{IND}Checkpoint: {dump.checkpoint if dump.checkpoint else 'NOT AVAILABLE'}",
            f"{IND}creation time: {format_time(h.created_us)}",
            f"{IND}prev gen time: {format_time(h.prev_created_us)}",
            f"{IND}Format LGVersion: ({h.major}.{h.minor})",
            f"{IND}Signature: {h.signature}",
            f"{IND}Env Log Sec size: {h.sector_size}",
            f"{IND}Env (CircLog,LogFile,PageSize): ({on_off(h.circular)},{h.file_size},{h.page_size})",
            f"{IND}Using Reserved Log File: {str(h.from_reserve).lower()}",
            f"{IND}Circular Logging Flag (current file): {on_off(h.circular)}",
            f"{IND}Circular Logging Flag (past files): {on_off(bool(h.flags & FLAG_CIRCULAR_PAST))}",
            f"{IND}Checkpoint at log creation time: {h.checkpoint}",
        ]
        for info in h.attached:
            lines += attach_lines(info)
    return lines + log_result_lines(log)


def log_result_lines(log: LogDump) -> list[str]:
    """Last Lgpos and record counts when the blocks were readable, then every error, or the all-clear."""
    last = log.last_lgpos or LgPos(log.generation or 0, 0)
    lines = []
    if log.scan is not None:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(log.records.items()))
        lines.append(f"{IND}Last Lgpos: {last}")
        lines.append(f"{IND}Records starting here: {sum(log.records.values())}" + (f" ({kinds})" if kinds else ""))
    for exc in log.errors:
        if isinstance(exc, LogFileCorruptError):
            lines.append(f"{IND}ERROR: Log damaged (unusable). Last Lgpos: {last}. Error {exc.code}.")
        lines.append(f"{IND}ERROR: {exc}")
    if not log.errors:
        lines.append(f"{IND}Integrity check passed for log file: {log.path}")
    return lines


def summary_line(dump: LogSetDump | EseLogSetDump) -> str:
    """The last line of /ml on a log set, ours or real: its generations, and whether it holds together."""
    present = [log.generation for log in dump.logs if log.generation is not None]
    span = f"generations {gen_range(min(present), max(present))}" if present else "no readable generation"
    head = f"{IND}Log set {dump.base} in {dump.directory}: {span}, {len(dump.logs)} file(s)"
    if not dump.errors:
        return f"{head}: contiguous, one signature, each file follows the previous one."
    first = dump.errors[0]
    return f"{head}: {len(dump.errors)} error(s), the first {first.code} ({first.code_name})."


# --- --json --------------------------------------------------------------------------------------------------


def plain(value: object) -> object:
    """The JSON form of a format value: a position as {lgpos, generation}, a ``*_us`` time as ISO text under
    ``*_time``, signatures, backup and attach blocks by their ``to_dict``, other named tuples as objects."""
    if isinstance(value, LgPos):
        return {"lgpos": str(value), "generation": value.gen}
    if isinstance(value, Signature | BackupInfo | AttachInfo):
        return value.to_dict()
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {
            (f"{key[:-3]}_time" if key.endswith("_us") else key): iso_time(v) if key.endswith("_us") else plain(v)
            for key, v in value._asdict().items()
        }
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def fields_of(value: tuple[object, ...]) -> dict[str, object]:
    return cast(dict[str, object], plain(value))


def database_json(dump: DatabaseDump) -> dict[str, object]:
    h = dump.header
    return {
        "mode": "database",
        "file": dump.path,
        "file_type": "Database",
        "checksum": f"0x{dump.checksum:08x}",
        **{k: v for k, v in fields_of(h).items() if k not in BACKUP_SLOTS},
        "state": h.state_name,
        "state_code": h.state,
        "log_required": [h.log_required_min, h.log_required_max],
        "log_committed": [0, h.log_committed],
        "backups": {slot: getattr(h, slot).to_dict() for slot in BACKUP_SLOTS},
        "copy_used": dump.copy_used,
        "damaged_copies": [asdict(d) for d in dump.damaged],
    }


def checkpoint_json(dump: CheckpointDump) -> dict[str, object]:
    return {
        "mode": "checkpoint",
        "file": dump.path,
        **fields_of(dump.checkpoint),
        "circular_logging": dump.circular,
        "copy_used": dump.copy_used,
        "damaged_copies": [asdict(d) for d in dump.damaged],
    }


def logset_json(dump: LogSetDump) -> dict[str, object]:
    present = [log.generation for log in dump.logs if log.generation is not None]
    return {
        "mode": "logs",
        "target": dump.target,
        "directory": dump.directory,
        "base": dump.base,
        "checkpoint": plain(dump.checkpoint),
        "generations": [min(present), max(present)] if present else None,
        "contiguous": not dump.missing,
        "missing": dump.missing,
        "logs": [log_json(log) for log in dump.logs],
    }


def log_json(log: LogDump) -> dict[str, object]:
    out: dict[str, object] = {"file": log.path, "name_generation": log.name_generation, "current": log.current}
    if log.header is not None:
        out.update(fields_of(log.header), reserved_log=log.header.from_reserve, circular=log.header.circular)
        out["checkpoint_at_creation"] = out.pop("checkpoint")
        out["circular_past"] = bool(log.header.flags & FLAG_CIRCULAR_PAST)
    torn = log.scan.torn if log.scan else None
    out.update(
        last_lgpos=plain(log.last_lgpos),
        records=dict(log.records),
        blocks=log.scan.blocks if log.scan else None,
        torn_tail=vars(torn) if torn else None,
        damaged=bool(log.errors),
        problems=[e.to_dict() for e in log.errors],
    )
    return out


def report_json(report: Report, facts: dict[str, object]) -> dict[str, object]:
    """One JSON object: the facts, the problems (errors, then warnings), the notes and ``ok``; with an error,
    also its fields as main() prints an error (error, code, code_name, message, hint)."""
    problems: list[dict[str, object]] = [{"severity": "error", **e.to_dict()} for e in report.errors]
    problems += [{"severity": "warning", "message": w} for w in report.warnings]
    data = {**facts, "problems": problems, "notes": report.notes, "ok": report.ok}
    if report.errors:
        first = report.errors[0].to_dict()
        data.update({k: first[k] for k in ("error", "code", "code_name", "message", "hint")})
    return data


def exit_code(report: Report) -> int:
    """The first error's exit code; else 1 (warning) when a damaged copy was survived; else 0."""
    if report.errors:
        return int(report.errors[0].exit_code)
    return ExitCode.OK if report.ok else ExitCode.WARNING
