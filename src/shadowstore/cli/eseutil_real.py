"""How ``shadowstore eseutil`` lays out real Windows ESE files: the /mh, /ml, /mk and /k text in eseutil's labels
(research/ese.md §3.2, §4.1, §4.2) and the ``--json`` objects with the same facts as data.

The facts and checks come from tools/esereal.py; cli/eseutil_cmd.py picks this module's ``REAL_MODES`` when the
files named are real ESE files, and prints, exits and raises exactly as for our own files.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from shadowstore.cli.eseutil_checks import Mode
from shadowstore.cli.eseutil_layout import IND, SUB, copy_lines, entries_lines, gen_range, label, on_off
from shadowstore.errors import LogFileCorruptError
from shadowstore.format.esedb import ESE_DB_MAGIC, EseDbHeader
from shadowstore.format.esetypes import DbmsParam, EseAttachInfo, EseBackupInfo, EseLgPos, EseSignature, LogTime
from shadowstore.tools.esereal import (
    EseCheckpointDump,
    EseChecksumDump,
    EseDatabaseDump,
    EseLogDump,
    EseLogSetDump,
    check_ese_database,
    dump_ese_checkpoint,
    dump_ese_database,
    dump_ese_logs,
)
from shadowstore.tools.eseutil import MissingLogs

FORMAT = "Windows ESE"
BACKUP_TITLES = (
    ("full_prev", "Previous Full Backup"),
    ("inc_prev", "Previous Incremental Backup"),
    ("diff_prev", "Previous Differential Backup"),
    ("copy_prev", "Previous Copy Backup"),
    ("full_cur", "Current Full Backup"),
    ("snapshot_cur", "Current Shadow copy backup"),
)
ENV_TITLE = "Env (CircLog,Session,Opentbl,VerPage,Cursors,LogBufs,LogFile,Buffers)"


def plain(value: object) -> object:
    """The JSON form of a real ESE value: positions as eseutil text, times as ISO text (None when zero),
    signatures, backups and attachments by their ``to_dict``, raw bytes as hex."""
    if isinstance(value, EseLgPos):
        return str(value)
    if isinstance(value, LogTime):
        return value.iso()
    if isinstance(value, EseSignature | EseBackupInfo | EseAttachInfo):
        return value.to_dict()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, DbmsParam):
        return value._asdict()
    return value


def count_line(count: int) -> str:
    return "none" if count == 0 else f"found ({count})"


# --- /mh -----------------------------------------------------------------------------------------------------


def format_version(h: EseDbHeader) -> str:
    text = f"0x{h.version:x},{h.update_major}" + (f",{h.update_minor}" if h.update_minor else "")
    return text + (f"  (attached by {h.efv_attached_by})" if h.efv_attached_by else "")


def os_version(h: EseDbHeader) -> str:
    nls = f"{h.sort_version >> 32:x}.{h.sort_version & 0xFFFFFFFF:x}"
    return f"({h.os_major}.{h.os_minor}.{h.os_build} SP {h.os_service_pack} NLS {nls})"


def with_pre_redo(value: str, pre_redo: int, what: str) -> str:
    return value + (f" [{what}: {pre_redo}]" if pre_redo else "")


def database_fields(h: EseDbHeader, checksum_label: str = "Checksum") -> list[tuple[str, object]]:
    """Every /mh line of the fields block, in eseutil's order, as (label, value)."""
    return [
        ("File Type", "Database" if h.attrib == 0 else "UNKNOWN"),
        (checksum_label, f"0x{h.checksum:08x}"),
        ("Format ulMagic", f"0x{int.from_bytes(ESE_DB_MAGIC, 'little'):x}"),
        ("Format ulVersion", format_version(h)),
        ("Created ulVersion", f"0x{h.create_version:x},{h.create_update}"),
        ("DB Signature", h.db_signature),
        ("cbDbPage", h.page_size),
        ("dbtime", f"{h.dbtime} (0x{h.dbtime:x})"),
        ("State", h.state_name),
        (
            "Log Required",
            with_pre_redo(
                gen_range(h.log_required_min, h.log_required_max), h.pre_redo_min_required, "Min. Req. Pre-Redo"
            ),
        ),
        ("Log Committed", gen_range(0, h.log_committed)),
        ("Log Recovering", f"{h.log_recovering} (0x{h.log_recovering:x})"),
        (
            "Log Consistent",
            with_pre_redo(f"{h.log_consistent} (0x{h.log_consistent:x})", h.pre_redo_min_consistent, "Pre-Redo"),
        ),
        ("Gen. Max. Com. Creation Time", h.gen_max_create_time),
        ("Gen. Max. Req. Creation Time", h.gen_max_required_time),
        ("Shadowed", "Yes" if h.shadowed else "No"),
        ("Last Objid", h.objid_last),
        ("Scrub Dbtime", f"{h.scrub_dbtime} (0x{h.scrub_dbtime:x})"),
        ("Scrub Date", h.scrub_time),
        ("Repair Count", h.repair_count),
        ("Repair Date", h.repair_time),
        ("Old Repair Count", h.repair_count_old),
        ("Last Consistent", f"{h.last_consistent}  {h.last_consistent_time}"),
        ("Last Attach", f"{h.last_attach}  {h.last_attach_time}"),
        ("Last Detach", f"{h.last_detach}  {h.last_detach_time}"),
        ("Last ReAttach", f"{h.last_reattach}  {h.last_reattach_time}"),
        ("Dbid", h.dbid),
        ("Log Signature", h.log_signature),
        ("OS Version", os_version(h)),
        ("Last Resize", h.last_resize),
        ("cpgUpgrade55Format", h.cpg_upgrade_55_format),
        ("cpgUpgradeFreePages", h.cpg_upgrade_free_pages),
        ("cpgUpgradeSpaceMapPages", h.cpg_upgrade_space_map_pages),
        ("ECC Fix Success Count", count_line(h.ecc_fix_success)),
        ("Last ECC Fix Success Date", h.ecc_fix_success_time),
        ("Old ECC Fix Success Count", count_line(h.ecc_fix_success_old)),
        ("ECC Fix Error Count", count_line(h.ecc_fix_fail)),
        ("Last ECC Fix Error Date", h.ecc_fix_fail_time),
        ("Old ECC Fix Error Count", count_line(h.ecc_fix_fail_old)),
        ("Bad Checksum Error Count", count_line(h.bad_checksum)),
        ("Last Bad Checksum Error Date", h.bad_checksum_time),
        ("Old bad Checksum Error Count", count_line(h.bad_checksum_old)),
        ("Incremental Reseed Count", h.reseed_count),
        ("Incremental Reseed Date", h.reseed_time),
        ("Old Incremental Reseed Count", h.reseed_count_old),
        ("Page Patch Count", h.page_patch_count),
        ("Page Patch Date", h.page_patch_time),
        ("Old Page Patch Count", h.page_patch_count_old),
        ("Extend Count", h.extend_count),
        ("Last Extend Date", h.extend_time),
        ("Shrink Count", h.shrink_count),
        ("Last Shrink Date", h.shrink_time),
        ("Trim Count", h.trim_count),
        ("Last Database Maintenance Finish Date", h.dbscan_prev_time),
        ("Current Database Maintenance Start Date", h.dbscan_start_time),
        ("Highest Continuous Database Maintenance Page", h.dbscan_highest_continuous),
        ("Highest Database Maintenance Page", h.dbscan_highest),
        ("Database Header Flush Signature", h.db_header_flush_signature),
        ("Flush Map Header Flush Signature", h.flush_map_header_flush_signature),
    ]


def database_lines(dump: EseDatabaseDump) -> list[str]:
    h = dump.header
    lines = [label("Database", dump.path), "", f"DATABASE HEADER ({FORMAT}):", "Fields:"]
    lines += [label(name, value) for name, value in database_fields(h)]
    for slot, title in BACKUP_TITLES:
        lines += ["", f"{title}:", *backup_lines(getattr(h, slot), getattr(h, f"{slot}_type", 0))]
    return lines + copy_lines(dump, "Header") + [f"Note: {n}" for n in dump.notes]


def backup_lines(info: EseBackupInfo, kind: int) -> list[str]:
    snapshot = {1: " - OSSnapshot", 2: " - Snapshot"}.get(kind, "") if info.gen_high else ""
    return [
        label("Log Gen", gen_range(info.gen_low, info.gen_high) + snapshot, 15),
        label("Mark", info.mark, 15),
        label("Mark", info.time, 15),
    ]


def database_json(dump: EseDatabaseDump) -> dict[str, object]:
    h = dump.header
    return {
        "mode": "database",
        "format": FORMAT,
        "file": dump.path,
        "file_type": "Database" if h.attrib == 0 else "UNKNOWN",
        "checksum": f"0x{h.checksum:08x}",
        "format_version": format_version(h),
        "page_size": dump.page_size,
        "dbtime": h.dbtime,
        "state": h.state_name,
        "state_code": h.state,
        "log_required": [h.log_required_min, h.log_required_max],
        "log_committed": [0, h.log_committed],
        "last_consistent": str(h.last_consistent),
        "os_version": f"{h.os_major}.{h.os_minor}.{h.os_build}",
        "db_signature": h.db_signature.to_dict(),
        "log_signature": h.log_signature.to_dict(),
        "shadowed": h.shadowed,
        "fields": {name: plain(value) for name, value in h.fields.items()},
        "copy_used": dump.copy_used,
        "damaged_copies": [asdict(d) for d in dump.damaged],
        "file_size": dump.file_size,
    }


# --- /k ------------------------------------------------------------------------------------------------------


def checksum_lines(dump: EseChecksumDump) -> list[str]:
    damaged = {d.copy: d.problem for d in dump.damaged}
    lines = [f"Checksumming the header copies of {dump.path} ({FORMAT} database, {dump.page_size}-byte pages):"]
    for copy, name in enumerate(("primary", "shadow")):
        state = f"DAMAGED: {damaged[copy]}" if copy in damaged else "checksum valid"
        lines.append(f"{IND}header copy {copy} ({name}, offset {copy * dump.page_size}): {state}")
    lines.append(f"{IND}{dump.pages} page(s) in the file; State: {dump.header.state_name}")
    return lines + [f"WARNING: {w}" for w in dump.warnings] + [f"Note: {n}" for n in dump.notes]


def checksum_json(dump: EseChecksumDump) -> dict[str, object]:
    damaged = {d.copy: d.problem for d in dump.damaged}
    copies = [
        {"copy": c, "offset": c * dump.page_size, "valid": c not in damaged, "problem": damaged.get(c)} for c in (0, 1)
    ]
    return {
        "mode": "checksum",
        "format": FORMAT,
        "file": dump.path,
        "page_size": dump.page_size,
        "pages": dump.pages,
        "header_copies": copies,
        "pages_verified": False,
        "state": dump.header.state_name,
    }


# --- /mk -----------------------------------------------------------------------------------------------------


def env_lines(params: DbmsParam, circular: bool) -> list[str]:
    values = [on_off(circular), *map(str, params[3:])]
    return [f"{IND}{ENV_TITLE}", f"{IND}    ({', '.join(f'{v:>6}' for v in values)})"]


def checkpoint_lines(dump: EseCheckpointDump) -> list[str]:
    c = dump.checkpoint
    lines = [
        f"{IND}Checkpoint file: {dump.path} ({FORMAT})",
        "",
        f"{IND}LastFullBackupCheckpoint: {c.last_full_backup_checkpoint}",
        f"{IND}Checkpoint: {c.checkpoint}",
        f"{IND}FullBackup: {c.full_backup}",
        f"{IND}FullBackup time: {c.full_backup_time}",
        f"{IND}IncBackup: {c.inc_backup}",
        f"{IND}IncBackup time: {c.inc_backup_time}",
        f"{IND}Signature: {c.signature}",
        *env_lines(c.params, c.params.circular),
        f"{IND}DbConsistency: {c.db_consistency}",
        f"{IND}Attached databases: {len(c.attached) or 'none'}",
    ]
    for info in c.attached:
        lines += attach_lines(info)
    return lines + copy_lines(dump, "Checkpoint") + [f"Note: {n}" for n in dump.notes]


def attach_lines(info: EseAttachInfo) -> list[str]:
    return [
        f"{info.dbid:>7} {info.name}",
        f"{SUB}dbtime: {info.dbtime} (0x{info.dbtime:x})",
        f"{SUB}objidLast: {info.objid_last}",
        f"{SUB}Signature: {info.signature}",
        f"{SUB}MaxDbSize: {info.max_pages} pages",
        f"{SUB}Last Attach: {info.attached_at}",
        f"{SUB}Last Consistent: {info.consistent}",
    ]


def checkpoint_json(dump: EseCheckpointDump) -> dict[str, object]:
    c = dump.checkpoint
    return {
        "mode": "checkpoint",
        "format": FORMAT,
        "file": dump.path,
        **{key: plain(value) for key, value in c._asdict().items() if key not in ("attached", "params")},
        "env": c.params._asdict(),
        "circular_logging": c.params.circular,
        "attached": [info.to_dict() for info in c.attached],
        "copy_used": dump.copy_used,
        "damaged_copies": [asdict(d) for d in dump.damaged],
    }


# --- /ml -----------------------------------------------------------------------------------------------------


def logset_lines(dump: EseLogSetDump) -> list[str]:
    lines = entries_lines(dump, lambda log: log_lines(log, dump))
    lines += [f"{IND}ERROR: {e}" for e in dump.errors if not _shown_with_an_entry(e, dump)]
    return [*lines, *(f"{IND}WARNING: {w}" for w in dump.warnings), *(f"{IND}Note: {n}" for n in dump.notes)]


def _shown_with_an_entry(error: object, dump: EseLogSetDump) -> bool:
    return any(error is e.error for e in dump.entries if isinstance(e, MissingLogs)) or any(
        error in log.errors for log in dump.logs
    )


def log_lines(log: EseLogDump, dump: EseLogSetDump) -> list[str]:
    h = log.header
    lines = [f"{IND}Base name: {log.name.base if log.name else dump.base}", f"{IND}Log file: {log.path}"]
    if h is not None:
        lines += [
            f"{IND}lGeneration: {h.generation} (0x{h.generation:X})",
            f"{IND}Checkpoint: {dump.checkpoint if dump.checkpoint else 'NOT AVAILABLE'}",
            f"{IND}creation time: {h.created}",
            f"{IND}prev gen time: {h.prev_created}",
            f"{IND}Format LGVersion: ({h.version})",
            f"{IND}Signature: {h.signature}",
            f"{IND}Env SystemPath: {h.params.system_path}",
            f"{IND}Env LogFilePath: {h.params.log_path}",
            f"{IND}Env Log Sec size: {h.sector_size}",
            *env_lines(h.params, h.circular),
            f"{IND}Using Reserved Log File: {str(h.from_reserve).lower()}",
            f"{IND}Circular Logging Flag (current file): {on_off(h.circular)}",
            f"{IND}Circular Logging Flag (past files): {on_off(h.circular_past)}",
            f"{IND}Checkpoint at log creation time: {h.checkpoint}",
            f"{IND}Log file size: {h.file_sectors} sectors of {h.sector_size} bytes ({h.file_size} bytes), "
            f"{h.header_sectors} header sector(s), database page size {h.page_size}",
        ]
        for info in h.attached:
            lines += attach_lines(info)
    for exc in log.errors:
        if isinstance(exc, LogFileCorruptError):
            lines.append(f"{IND}ERROR: Log damaged (unusable). Error {exc.code}.")
        lines.append(f"{IND}ERROR: {exc}")
    if not log.errors:
        lines.append(f"{IND}Header checks passed for log file: {log.path}")
    return lines


def logset_json(dump: EseLogSetDump) -> dict[str, object]:
    present = [log.generation for log in dump.logs if log.generation is not None]
    return {
        "mode": "logs",
        "format": FORMAT,
        "target": dump.target,
        "directory": dump.directory,
        "base": dump.base,
        "checkpoint_file": dump.checkpoint_file,
        "checkpoint": str(dump.checkpoint) if dump.checkpoint else None,
        "generations": [min(present), max(present)] if present else None,
        "contiguous": not dump.missing,
        "missing": dump.missing,
        "signature": dump.signature.to_dict() if dump.signature else None,
        "logs": [log_json(log) for log in dump.logs],
    }


def log_json(log: EseLogDump) -> dict[str, object]:
    out: dict[str, Any] = {
        "file": log.path,
        "name_generation": log.name.generation if log.name else None,
        "current": log.current,
        "file_size": log.file_size,
    }
    h = log.header
    if h is not None:
        out.update({key: plain(value) for key, value in h._asdict().items() if key not in ("attached", "params")})
        out["creation_time"], out["prev_gen_time"] = out.pop("created"), out.pop("prev_created")
        out["checkpoint_at_creation"] = out.pop("checkpoint")
        out.update(
            version=h.version,
            log_file_size=h.file_size,
            circular=h.circular,
            circular_past=h.circular_past,
            reserved_log=h.from_reserve,
            env=h.params._asdict(),
            attached=[info.to_dict() for info in h.attached],
        )
    out.update(damaged=bool(log.errors), problems=[e.to_dict() for e in log.errors])
    return out


REAL_MODES: dict[str, Mode] = {
    "mh": (dump_ese_database, database_lines, database_json),
    "ml": (dump_ese_logs, logset_lines, logset_json),
    "mk": (dump_ese_checkpoint, checkpoint_lines, checkpoint_json),
    "k": (check_ese_database, checksum_lines, checksum_json),
}
