"""``eseutil /k FILE``, ``/g FILE`` and ``/r BASENAME`` on ShadowStore's own files: the modes that check and
recover, laid out with eseutil's labels or as JSON.

``CHECK_MODES`` has the shape of ``MODES`` in cli/eseutil_cmd.py (the dump function taking the path, the
lines renderer, the JSON renderer), which merges it and prints each mode's first line. The facts come from
tools/checksums.py (/k), tools/integrity.py (/g) and tools/softrecovery.py (/r). /r works on a server home: the
one ``--home`` named for this invocation, else the default home, as every command.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shadowstore.cli.common import CliContext
from shadowstore.config import default_home
from shadowstore.errors import InvalidParameterError
from shadowstore.format.common import LgPos
from shadowstore.format.logfile import MAX_LOG_FILE_SIZE
from shadowstore.io.fs import OsFileSystem
from shadowstore.tools.checksums import (
    ROLE_LOG,
    ROLE_STORE,
    CheckpointChecksums,
    LogChecksums,
    StoreChecksums,
    check_file,
    file_role,
)
from shadowstore.tools.integrity import IntegrityDump, TableResult, check_integrity
from shadowstore.tools.softrecovery import RecoveryDump, soft_recover

IND = "      "  # the indent of eseutil's detail lines
AnyChecksums = StoreChecksums | LogChecksums | CheckpointChecksums


def current_home() -> str:
    """The server home of this invocation: ``--home`` when the CLI was given one, else the default home."""
    context = CliContext.last
    return os.path.abspath(context.home_path if context is not None else default_home())


def checksum(path: str) -> AnyChecksums:
    """/k. Why the size check: tools/checksums.check_log reads a log file whole, and a file named like a log
    that is far larger than any log can be (a sparse file of many GiB) would exhaust memory."""
    size = Path(path).stat().st_size if file_role(OsFileSystem(), path) == ROLE_LOG else 0
    if size > MAX_LOG_FILE_SIZE:
        raise InvalidParameterError(
            f"{path} is {size:,} bytes, larger than any ShadowStore log file can be "
            f"({MAX_LOG_FILE_SIZE // (1 << 20)} MiB at most): it is not a log file, or one extended by damage",
            hint="'eseutil /ml' reads its header and the bytes the header gives",
            file=path,
        )
    return check_file(path, current_home())


def integrity(path: str) -> IntegrityDump:
    """/g. A file that is not a store is refused as a usage error (exit 3), not called a damaged database
    (tools/integrity.check_integrity raises DatabaseCorruptedError, exit 12, for it)."""
    role = file_role(OsFileSystem(), path)
    if role != ROLE_STORE:
        raise InvalidParameterError(
            f"{path} is read as a ShadowStore {role} file (by its first bytes, else its name), not a store; "
            "eseutil /g checks stores (.edb)",
            hint="'eseutil /k' checks the checksums of log and checkpoint files",
            file=path,
        )
    return check_integrity(path, current_home())


def recovery(base: str) -> RecoveryDump:
    return soft_recover(base, current_home())


def _mb(count: int) -> str:
    return f"{count / (1 << 20):,.0f}"


def _lgpos(position: LgPos | None) -> dict[str, object] | None:
    return None if position is None else {"lgpos": str(position), "generation": position.gen}


def _section(lines: list[str]) -> list[str]:
    """``lines`` after a blank line, or nothing."""
    return ["", *lines] if lines else []


def _tail(report: AnyChecksums | IntegrityDump | RecoveryDump) -> list[str]:
    """The warnings and notes, after a blank line."""
    return _section([*(f"WARNING: {w}" for w in report.warnings), *(f"NOTE: {n}" for n in report.notes)])


def _facts(report: AnyChecksums | IntegrityDump | RecoveryDump) -> dict[str, object]:
    """What every check's JSON shares; cli/eseutil_layout.report_json adds problems, notes and ``ok``."""
    return {"warnings": list(report.warnings)}


# --- /k ------------------------------------------------------------------------------------------------------


def checksum_lines(report: AnyChecksums) -> list[str]:
    if isinstance(report, LogChecksums):
        return _log_lines(report)
    if isinstance(report, CheckpointChecksums):
        return _checkpoint_lines(report)
    return _store_lines(report)


def _store_lines(dump: StoreChecksums) -> list[str]:
    rate = dump.bytes_read / (1 << 20) / dump.seconds if dump.seconds > 0 else 0.0
    highest = (
        f"{dump.highest_lgpos} highest LGPOS (pgno 0x{dump.highest_lgpos_pgno:x})"
        if dump.highest_lgpos
        else "no page written by a transaction"
    )
    lines = [
        f"{IND}Database: {dump.path}",
        "",
        f"File: {os.path.basename(dump.path)}",
        "",
        f"{dump.seen} pages seen",
        f"{dump.bad_checksums} bad checksums",
        "0 correctable checksums",
        f"{dump.uninitialized} uninitialized pages",
        f"{dump.wrong_page_numbers} wrong page numbers",
        f"{dump.free_damaged} damaged pages not in use",
        highest,
        "",
        f"{dump.reads} reads performed",
        f"{_mb(dump.bytes_read)} MB read",
        f"{dump.seconds:.1f} seconds taken",
        f"{rate:,.0f} MB/second",
    ]
    bad = [
        f"{'ERROR' if page.in_use is not False else 'NOTE'}: page {page.pgno} (0x{page.pgno:x}) at offset "
        f"{page.offset} (0x{page.offset:x}){'' if page.in_use is not False else ', not in use'}: {page.problem}"
        for page in dump.bad_pages
    ]
    return lines + _section(bad) + _tail(dump)


def _log_lines(dump: LogChecksums) -> list[str]:
    what = "log file" + (f", generation {dump.generation} (0x{dump.generation:X})" if dump.generation else "")
    lines = [f"{IND}Log file: {dump.path} ({what}{', current' if dump.current else ''})", ""]
    if dump.generation is None:
        lines.append("Header: DAMAGED")
    else:
        lines += ["Header: checksum ok", f"{dump.blocks} blocks seen", f"{dump.fragments} fragments seen"]
    lines.append(f"{len(dump.errors)} bad checksums")
    lines += [f"ERROR: {e}" for e in dump.errors]
    if not dump.errors:
        lines.append(f"{IND}Integrity check passed for log file: {dump.path}")
    return lines + _tail(dump)


def _checkpoint_lines(dump: CheckpointChecksums) -> list[str]:
    lines = [f"{IND}Checkpoint file: {dump.path}", ""]
    for copy in dump.copies:
        name = "primary" if copy.copy == 0 else "shadow"
        state = f"checksum ok, sequence {copy.sequence}" if copy.problem is None else f"DAMAGED: {copy.problem}"
        lines.append(f"Copy {copy.copy} ({name}, offset {copy.offset}): {state}")
    bad = sum(c.problem is not None for c in dump.copies)
    lines += [f"{len(dump.copies)} copies seen", f"{bad} bad checksums"]
    return lines + _tail(dump)


def checksum_json(report: AnyChecksums) -> dict[str, object]:
    if isinstance(report, LogChecksums):
        return {
            "mode": "checksum",
            "file": report.path,
            "file_type": "log",
            "generation": report.generation,
            "current": report.current,
            "blocks_seen": report.blocks,
            "fragments_seen": report.fragments,
            "bad_checksums": len(report.errors),
            "torn_tail": vars(report.torn) if report.torn else None,
            "bytes_read": report.bytes_read,
            **_facts(report),
        }
    if isinstance(report, CheckpointChecksums):
        return {
            "mode": "checksum",
            "file": report.path,
            "file_type": "checkpoint",
            "copies": [vars(c) for c in report.copies],
            "copies_seen": len(report.copies),
            "bad_checksums": sum(c.problem is not None for c in report.copies),
            **_facts(report),
        }
    return {
        "mode": "checksum",
        "file": report.path,
        "file_type": "database",
        "page_size": report.page_size,
        "pages_seen": report.seen,
        "bad_checksums": report.bad_checksums,
        "uninitialized_pages": report.uninitialized,
        "wrong_page_numbers": report.wrong_page_numbers,
        "damaged_pages_not_in_use": report.free_damaged,
        "bad_pages": [vars(p) for p in report.bad_pages],
        "highest_lgpos": _lgpos(report.highest_lgpos),
        "highest_lgpos_pgno": report.highest_lgpos_pgno if report.highest_lgpos else None,
        "reads": report.reads,
        "bytes_read": report.bytes_read,
        "seconds": round(report.seconds, 3),
        **_facts(report),
    }


# --- /g ------------------------------------------------------------------------------------------------------


def integrity_lines(dump: IntegrityDump) -> list[str]:
    header = dump.header
    lines = [f"{IND}Database: {dump.path}", "", "Checking database integrity.", ""]
    lines.append(f"    checking SYSTEM table: {_system(dump)}")
    lines += [f'    checking table "{t.name}" ({t.table_id}): {_table(t)}' for t in dump.tables]
    used, count = dump.used_pages, header.page_count
    lines += [
        "",
        "Checking free space:",
        f"    {count} pages in the store ({dump.pages_in_file} in the file), {used} in use, {count - used} free",
        f"    {len(dump.lost_pages)} lost pages, {len(dump.free_and_used)} pages both free and used",
        "",
    ]
    if dump.problems:
        lines.append(f"Integrity check completed with {dump.problems} problem(s):")
        lines += [f"ERROR: {e}" for e in dump.errors]
        if dump.problems > len(dump.errors):
            lines.append(f"... and {dump.problems - len(dump.errors)} more problem(s)")
    else:
        lines.append("Integrity check successful.")
    return lines + _tail(dump)


def _system(dump: IntegrityDump) -> str:
    parts = ["header pages 0-1"]
    for name, ref in (("catalog", dump.header.catalog), ("space map", dump.header.space_map)):
        if not ref.is_empty:
            last = ref.first_page + ref.page_count - 1
            pages = f"page {ref.first_page}" if last == ref.first_page else f"pages {ref.first_page}-{last}"
            parts.append(f"{name} {pages} ({ref.length} bytes)")
    state = "ok" if not dump.system_problems else f"{dump.system_problems} problem(s)"
    return f"{', '.join(parts)}: {state}"


def _table(t: TableResult) -> str:
    pages = t.leaf_pages + t.branch_pages
    levels = f"{t.depth} level{'s' if t.depth != 1 else ''}"
    state = "ok" if t.ok else f"{t.problems} problem(s)"
    return (
        f"root page {t.root}, {levels}, {_count(pages, 'page')} ({t.leaf_pages} leaf, {t.branch_pages} branch), "
        f"{t.entries} records, {t.blobs} long values ({t.blob_pages} pages): {state}"
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def integrity_json(dump: IntegrityDump) -> dict[str, object]:
    return {
        "mode": "integrity",
        "file": dump.path,
        "state": dump.header.state_name,
        "page_size": dump.page_size,
        "pages_in_file": dump.pages_in_file,
        "page_count": dump.header.page_count,
        "used_pages": dump.used_pages,
        "free_pages": dump.free_pages,
        "reached_pages": dump.reached_pages,
        "lost_pages": dump.lost_pages[:1000],
        "free_and_used_pages": dump.free_and_used[:1000],
        "system_problems": dump.system_problems,
        "tables": [vars(t) | {"ok": t.ok} for t in dump.tables],
        "problem_count": dump.problems,
        "bytes_read": dump.bytes_read,
        "seconds": round(dump.seconds, 3),
        **_facts(dump),
    }


# --- /r ------------------------------------------------------------------------------------------------------


def recovery_lines(dump: RecoveryDump) -> list[str]:
    lines = [
        f"{'Logfile base name':>21}: {dump.base}",
        f"{'Storage group':>21}: {dump.sg}",
        f"{'Log files':>21}: {dump.log_dir}",
        f"{'System files':>21}: {dump.system_dir}",
        f"{'Database files':>21}: {dump.data_dir}",
        "",
        "Performing soft recovery...",
    ]
    if dump.recovered and dump.generations:
        low, high = dump.generations
        lines.append(
            f"{IND}Replayed {dump.transactions} log record(s) from generations {low}-{high} (0x{low:x}-0x{high:x}) "
            f"into: {', '.join(dump.recovered)}"
        )
    else:
        lines.append(f"{IND}No store was in Dirty Shutdown: there was nothing to replay.")
    lines.append("")
    for s in dump.stores:
        required = f", Log Required {s.log_required[0]}-{s.log_required[1]}" if any(s.log_required) else ""
        lines.append(f"{IND}{s.name} ({os.path.basename(s.path)}): {s.before}{required} -> {s.after}")
    return lines + _tail(dump)


def recovery_json(dump: RecoveryDump) -> dict[str, object]:
    return {
        "mode": "recovery",
        "home": dump.home,
        "sg": dump.sg,
        "log_base": dump.base,
        "log_dir": dump.log_dir,
        "system_dir": dump.system_dir,
        "data_dir": dump.data_dir,
        "recovered_stores": dump.recovered,
        "generations": list(dump.generations) if dump.generations else None,
        "records_replayed": dump.transactions,
        "stores": [vars(s) | {"log_required": list(s.log_required)} for s in dump.stores],
        "seconds": round(dump.seconds, 3),
        **_facts(dump),
    }


Mode = tuple[Callable[[str], Any], Callable[[Any], list[str]], Callable[[Any], dict[str, object]]]
CHECK_MODES: dict[str, Mode] = {
    "k": (checksum, checksum_lines, checksum_json),
    "g": (integrity, integrity_lines, integrity_json),
    "r": (recovery, recovery_lines, recovery_json),
}
