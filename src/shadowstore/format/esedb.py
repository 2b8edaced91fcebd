"""The header of a real Windows ESE database (DBFILEHDR, research/ese.md §3): layout, the two copies, page size.

Page 0 holds the header and page 1 an identical shadow copy; data pages start at page 2. Each copy is checksummed
with the old-format XOR (format/esetypes.py) over the whole page, so the page size must be known to verify it: it
is found by trying 2, 4, 8, 16 and 32 KiB, a candidate being right when the checksum over that many bytes matches
and le_cbPageSize (0 meaning 4096) names it (ESE's ErrUtilReadSpecificShadowedHeader). The primary is tried first,
then the shadow at the candidate's offset.

The declaration is one table, ``FIELDS``: (offset, struct code, Microsoft's name, our name, eseutil's /mh label).
The offsets are checked against the running sizes when this module is imported. Sub-structures (LGPOS, LOGTIME,
SIGNATURE, BKINFO) are decoded by type from the field's name prefix.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from shadowstore.errors import InvalidParameterError, ReadVerifyFailureError
from shadowstore.format.esetypes import (
    BKINFO,
    LGPOS,
    LOGTIME,
    SIGNATURE,
    XOR_SEED,
    EseBackupInfo,
    EseLgPos,
    EseSignature,
    LogTime,
    checksum_problem,
)

ESE_DB_MAGIC = struct.pack("<I", XOR_SEED)  # EF CD AB 89 at offset 4
MAGIC_OFFSET = 4
PAGE_SIZE_OFFSET = 236
PAGE_SIZES = (2048, 4096, 8192, 16384, 32768)
LG, LT, SG, BK = f"{LGPOS.size}s", f"{LOGTIME.size}s", f"{SIGNATURE.size}s", f"{BKINFO.size}s"

# (offset, code, le_ name, snake_case name, eseutil /mh label or "" when eseutil prints it inside another line)
FIELDS: tuple[tuple[int, str, str, str, str], ...] = (
    (0, "I", "le_ulChecksum", "checksum", "Checksum"),
    (4, "I", "le_ulMagic", "magic", "Format ulMagic"),
    (8, "I", "le_ulVersion", "version", "Format ulVersion"),
    (12, "I", "le_attrib", "attrib", "File Type"),
    (16, "Q", "le_dbtimeDirtied", "dbtime", "dbtime"),
    (24, SG, "signDb", "db_signature", "DB Signature"),
    (52, "I", "le_dbstate", "state", "State"),
    (56, LG, "le_lgposConsistent", "last_consistent", "Last Consistent"),
    (64, LT, "logtimeConsistent", "last_consistent_time", ""),
    (72, LT, "logtimeAttach", "last_attach_time", ""),
    (80, LG, "le_lgposAttach", "last_attach", "Last Attach"),
    (88, LT, "logtimeDetach", "last_detach_time", ""),
    (96, LG, "le_lgposDetach", "last_detach", "Last Detach"),
    (104, "I", "le_dbid", "dbid", "Dbid"),
    (108, SG, "signLog", "log_signature", "Log Signature"),
    (136, BK, "bkinfoFullPrev", "full_prev", "Previous Full Backup"),
    (160, BK, "bkinfoIncPrev", "inc_prev", "Previous Incremental Backup"),
    (184, BK, "bkinfoFullCur", "full_cur", "Current Full Backup"),
    (208, "I", "m_ulDbFlags", "db_flags", "Shadowed"),
    (212, "I", "le_objidLast", "objid_last", "Last Objid"),
    (216, "I", "dwMajorVersion", "os_major", "OS Version"),
    (220, "I", "dwMinorVersion", "os_minor", ""),
    (224, "I", "dwBuildNumber", "os_build", ""),
    (228, "i", "lSPNumber", "os_service_pack", ""),
    (232, "I", "le_ulDaeUpdateMajor", "update_major", ""),
    (236, "I", "le_cbPageSize", "page_size_field", "cbDbPage"),
    (240, "I", "le_ulRepairCount", "repair_count", "Repair Count"),
    (244, LT, "logtimeRepair", "repair_time", "Repair Date"),
    (252, SG, "rgbReservedSignSLV", "slv_signature", ""),
    (280, "Q", "le_dbtimeLastScrub", "scrub_dbtime", "Scrub Dbtime"),
    (288, LT, "logtimeScrub", "scrub_time", "Scrub Date"),
    (296, "i", "le_lGenMinRequired", "log_required_min", "Log Required"),
    (300, "i", "le_lGenMaxRequired", "log_required_max", ""),
    (304, "i", "le_cpgUpgrade55Format", "cpg_upgrade_55_format", "cpgUpgrade55Format"),
    (308, "i", "le_cpgUpgradeFreePages", "cpg_upgrade_free_pages", "cpgUpgradeFreePages"),
    (312, "i", "le_cpgUpgradeSpaceMapPages", "cpg_upgrade_space_map_pages", "cpgUpgradeSpaceMapPages"),
    (316, BK, "bkinfoSnapshotCur", "snapshot_cur", "Current Shadow copy backup"),
    (340, "I", "le_ulCreateVersion", "create_version", "Created ulVersion"),
    (344, "I", "le_ulCreateUpdate", "create_update", ""),
    (348, LT, "logtimeGenMaxCreate", "gen_max_create_time", "Gen. Max. Com. Creation Time"),
    (356, "I", "bkinfoTypeFullPrev", "full_prev_type", ""),
    (360, "I", "bkinfoTypeIncPrev", "inc_prev_type", ""),
    (364, "I", "le_ulRepairCountOld", "repair_count_old", "Old Repair Count"),
    (368, "I", "le_ulECCFixSuccess", "ecc_fix_success", "ECC Fix Success Count"),
    (372, LT, "logtimeECCFixSuccess", "ecc_fix_success_time", "Last ECC Fix Success Date"),
    (380, "I", "le_ulECCFixSuccessOld", "ecc_fix_success_old", "Old ECC Fix Success Count"),
    (384, "I", "le_ulECCFixFail", "ecc_fix_fail", "ECC Fix Error Count"),
    (388, LT, "logtimeECCFixFail", "ecc_fix_fail_time", "Last ECC Fix Error Date"),
    (396, "I", "le_ulECCFixFailOld", "ecc_fix_fail_old", "Old ECC Fix Error Count"),
    (400, "I", "le_ulBadChecksum", "bad_checksum", "Bad Checksum Error Count"),
    (404, LT, "logtimeBadChecksum", "bad_checksum_time", "Last Bad Checksum Error Date"),
    (412, "I", "le_ulBadChecksumOld", "bad_checksum_old", "Old bad Checksum Error Count"),
    (416, "i", "le_lGenMaxCommitted", "log_committed", "Log Committed"),
    (420, BK, "bkinfoCopyPrev", "copy_prev", "Previous Copy Backup"),
    (444, BK, "bkinfoDiffPrev", "diff_prev", "Previous Differential Backup"),
    (468, "I", "bkinfoTypeCopyPrev", "copy_prev_type", ""),
    (472, "I", "bkinfoTypeDiffPrev", "diff_prev_type", ""),
    (476, "I", "le_ulIncrementalReseedCount", "reseed_count", "Incremental Reseed Count"),
    (480, LT, "logtimeIncrementalReseed", "reseed_time", "Incremental Reseed Date"),
    (488, "I", "le_ulIncrementalReseedCountOld", "reseed_count_old", "Old Incremental Reseed Count"),
    (492, "I", "le_ulPagePatchCount", "page_patch_count", "Page Patch Count"),
    (496, LT, "logtimePagePatch", "page_patch_time", "Page Patch Date"),
    (504, "I", "le_ulPagePatchCountOld", "page_patch_count_old", "Old Page Patch Count"),
    (508, "Q", "le_qwSortVersion", "sort_version", ""),
    (516, LT, "logtimeDbscanPrev", "dbscan_prev_time", "Last Database Maintenance Finish Date"),
    (524, LT, "logtimeDbscanStart", "dbscan_start_time", "Current Database Maintenance Start Date"),
    (
        532,
        "I",
        "le_pgnoDbscanHighestContinuous",
        "dbscan_highest_continuous",
        "Highest Continuous Database Maintenance Page",
    ),
    (536, "i", "le_lGenRecovering", "log_recovering", "Log Recovering"),
    (540, "I", "le_ulExtendCount", "extend_count", "Extend Count"),
    (544, LT, "logtimeLastExtend", "extend_time", "Last Extend Date"),
    (552, "I", "le_ulShrinkCount", "shrink_count", "Shrink Count"),
    (556, LT, "logtimeLastShrink", "shrink_time", "Last Shrink Date"),
    (564, LT, "logtimeLastReAttach", "last_reattach_time", ""),
    (572, LG, "le_lgposLastReAttach", "last_reattach", "Last ReAttach"),
    (580, "I", "le_ulTrimCount", "trim_count", "Trim Count"),
    (584, SG, "signDbHdrFlush", "db_header_flush_signature", "Database Header Flush Signature"),
    (612, SG, "signFlushMapHdrFlush", "flush_map_header_flush_signature", "Flush Map Header Flush Signature"),
    (640, "i", "le_lGenMinConsistent", "log_consistent", "Log Consistent"),
    (644, "I", "le_ulDaeUpdateMinor", "update_minor", ""),
    (648, "I", "le_efvMaxBinAttachDiagnostic", "efv_attached_by", ""),
    (652, "I", "le_pgnoDbscanHighest", "dbscan_highest", "Highest Database Maintenance Page"),
    (656, LG, "le_lgposLastResize", "last_resize", "Last Resize"),
    (664, "3s", "(not described)", "reserved_664", ""),
    (667, "I", "le_filetype", "filetype", ""),
    (671, "1s", "(not described)", "reserved_671", ""),
    (672, LT, "logtimeGenMaxRequired", "gen_max_required_time", "Gen. Max. Req. Creation Time"),
    (680, "i", "le_lGenPreRedoMinConsistent", "pre_redo_min_consistent", ""),
    (684, "i", "le_lGenPreRedoMinRequired", "pre_redo_min_required", ""),
    (688, "60s", "(RBS and revert fields)", "revert_fields", ""),
)
DBFILEHDR = struct.Struct("<" + "".join(code for _, code, *_ in FIELDS))
assert DBFILEHDR.size == 748
assert all(struct.calcsize("<" + "".join(f[1] for f in FIELDS[:i])) == f[0] for i, f in enumerate(FIELDS))
LABELS = {name: label for *_, name, label in FIELDS if label}


def _decoder(code: str, ms_name: str) -> Any:
    """The sub-structure a field holds, from its size and Microsoft's name (LGPOS and LOGTIME are both 8 bytes)."""
    if code == LG and "lgpos" in ms_name:
        return EseLgPos.unpack_from
    if code == LT and "logtime" in ms_name:
        return LogTime.unpack_from
    return {SG: EseSignature.unpack_from, BK: EseBackupInfo.unpack_from}.get(code)


_DECODERS = {name: _decoder(code, ms) for _, code, ms, name, _label in FIELDS}

STATE_NAMES = {  # dbdump.cxx rgszDBState ("never change the wording"); any other value prints "Illegal"
    1: "Just Created",
    2: "Dirty Shutdown",
    3: "Clean Shutdown",
    4: "Being Converted",
    5: "Force Detach Replay Error",
    6: "Incremental Reseed In Progress",
    7: "Dirty and Patched Shutdown",
    8: "Database Revert in Progress",
}
DB_FLAG_SHADOWING_OFF = 0x01


@dataclass(frozen=True)
class EseDbHeader:
    """Every DBFILEHDR field, by its snake_case name in ``FIELDS`` (``fields``), with the values eseutil shows."""

    fields: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        if name == "fields":  # why: copy and pickle look attributes up before __init__ has run
            raise AttributeError(name)
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def page_size(self) -> int:
        return int(self.fields["page_size_field"]) or 4096

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.fields["state"], "Illegal")

    @property
    def shadowed(self) -> bool:
        return not self.fields["db_flags"] & DB_FLAG_SHADOWING_OFF


def unpack_db_header(block: bytes | bytearray | memoryview) -> EseDbHeader:
    """Decode the fields of one header copy (at least 748 bytes; its checksum is not checked here)."""
    raw = DBFILEHDR.unpack_from(block, 0)
    values: dict[str, Any] = {}
    for (*_, name, _label), value in zip(FIELDS, raw, strict=True):
        decode = _DECODERS[name]
        values[name] = decode(value) if decode is not None else value
    return EseDbHeader(values)


def pack_db_header(fields: dict[str, Any], page_size: int) -> bytearray:
    """One header page built from ``fields`` (snake_case names; missing ones are zero), unsealed: for tests."""
    values = []
    for _, code, _ms, name, _label in FIELDS:
        value = fields.get(name)
        if value is None:
            value = bytes(struct.calcsize(code)) if code.endswith("s") else 0
        values.append(value.pack() if hasattr(value, "pack") else value)
    page = bytearray(page_size)
    DBFILEHDR.pack_into(page, 0, *values)
    return page


# --- the two copies ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyState:
    """One header copy as found: where, and None or why it is not valid."""

    copy: int  # 0 primary, 1 shadow
    offset: int
    problem: str | None


@dataclass(frozen=True)
class DbHeaderRead:
    """The header read from the first valid copy, the page size found and the state of both copies."""

    header: EseDbHeader
    page_size: int
    copy_used: int
    copies: tuple[CopyState, CopyState]
    shadow_differs: bool  # both copies valid but not byte-equal


def has_ese_db_magic(head: bytes | bytearray | memoryview) -> bool:
    """Whether the primary (offset 0) or a shadow at any page size carries ulMagic 0x89ABCDEF at offset 4."""
    starts = (0, *PAGE_SIZES)
    return any(bytes(head[at + MAGIC_OFFSET : at + MAGIC_OFFSET + 4]) == ESE_DB_MAGIC for at in starts)


def _copy_problem(data: bytes, offset: int, page_size: int) -> str | None:
    block = data[offset : offset + page_size]
    if len(block) < page_size:
        return f"the file ends at {len(data)} bytes, inside this {page_size}-byte copy"
    if block[MAGIC_OFFSET : MAGIC_OFFSET + 4] != ESE_DB_MAGIC:
        return f"no database magic 0x{XOR_SEED:08x} at offset {offset + MAGIC_OFFSET}"
    problem = checksum_problem(block)
    if problem is not None:
        return problem
    (declared,) = struct.unpack_from("<I", block, PAGE_SIZE_OFFSET)
    if (declared or 4096) != page_size:
        return f"le_cbPageSize at offset {offset + PAGE_SIZE_OFFSET} says {declared or 4096}, not {page_size}"
    return None


def read_db_header(data: bytes, path: str) -> DbHeaderRead:
    """The header of the ESE database whose first bytes (two pages of the largest page size, or the whole file
    when shorter) are ``data``: the primary when valid, else the shadow.

    Raises InvalidParameterError when no copy carries the database magic (not an ESE database, a truncated file
    included) and ReadVerifyFailureError (-1018) naming the file and both copies' offsets when neither is valid.
    """
    if len(data) < DBFILEHDR.size or not has_ese_db_magic(data):
        raise InvalidParameterError(
            f"{path} is not a Windows ESE database: {_why_not(data)}",
            hint="check the path; 'eseutil /mh' reads database files (.edb, .mdb, .dat)",
            file=path,
        )
    for copy in (0, 1):
        for page_size in PAGE_SIZES:
            if _copy_problem(data, copy * page_size, page_size) is None:
                return _chosen(data, copy, page_size)
    claimed = _claimed_page_size(data)
    problems = [_copy_problem(data, copy * claimed, claimed) for copy in (0, 1)]
    raise ReadVerifyFailureError(
        f"{path}: both database header copies are damaged (page size {claimed} from le_cbPageSize): "
        f"copy 0 (primary, offset 0): {problems[0]}; copy 1 (shadow, offset {claimed}): {problems[1]}",
        hint="restore the database from a backup; the header cannot be read without a valid copy",
        file=path,
        offset=0,
    )


def _chosen(data: bytes, copy: int, page_size: int) -> DbHeaderRead:
    problems = [_copy_problem(data, c * page_size, page_size) for c in (0, 1)]
    states = (CopyState(0, 0, problems[0]), CopyState(1, page_size, problems[1]))
    both = problems[0] is None and problems[1] is None
    differs = both and data[:page_size] != data[page_size : 2 * page_size]
    header = unpack_db_header(data[copy * page_size : copy * page_size + page_size])
    return DbHeaderRead(header, page_size, copy, states, differs)


def _claimed_page_size(data: bytes) -> int:
    for offset in (0, *PAGE_SIZES):
        if data[offset + MAGIC_OFFSET : offset + MAGIC_OFFSET + 4] == ESE_DB_MAGIC:
            declared = int(struct.unpack_from("<I", data, offset + PAGE_SIZE_OFFSET)[0]) or 4096
            if declared in PAGE_SIZES:
                return declared
    return 4096


def _why_not(data: bytes) -> str:
    if not data:
        return "it is empty"
    if len(data) < DBFILEHDR.size:
        return f"it is {len(data)} bytes, shorter than a database header ({DBFILEHDR.size} bytes)"
    if not any(data):
        return f"it is zero-filled (the first {len(data)} bytes)"
    return f"no magic 0x{XOR_SEED:08x} at offset {MAGIC_OFFSET} (found {data[MAGIC_OFFSET : MAGIC_OFFSET + 4].hex()})"
