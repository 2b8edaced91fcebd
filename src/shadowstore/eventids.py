"""The catalogue of events: ID, source, category, type and description template.

ESE events keep the IDs and the wording of the originals (``research/ese.md`` section 6) with our
parameters in braces. Events of source ``ShadowStore`` (IDs 1000 and up) are our own, for what the original
engine had no event for.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple


class EventType(Enum):
    INFORMATION = "Information"
    WARNING = "Warning"
    ERROR = "Error"


class EventSpec(NamedTuple):
    source: str
    category: str
    type: EventType
    symbol: str
    template: str


INFO, WARN, ERR = EventType.INFORMATION, EventType.WARNING, EventType.ERROR
_LR = "Logging/Recovery"
_GEN = "General"

CATALOG: dict[int, EventSpec] = {
    # --- ESE, recovery ------------------------------------------------------------------------------------
    300: EventSpec("ESE", _LR, INFO, "START_REDO_ID", "The database engine is initiating recovery steps."),
    301: EventSpec("ESE", _LR, INFO, "STATUS_REDO_ID", "The database engine has finished replaying logfile {file}."),
    302: EventSpec("ESE", _LR, INFO, "STOP_REDO_ID", "The database engine has successfully completed recovery steps."),
    425: EventSpec(
        "ESE",
        _LR,
        ERR,
        "LOG_DATABASE_MISMATCH_ERROR_ID",
        "The database signature does not match the log signature for database {db}.",
    ),
    428: EventSpec(
        "ESE",
        _LR,
        ERR,
        "LOW_LOG_DISK_SPACE",
        "The database engine is rejecting update operations due to low free disk space on the log disk.",
    ),
    429: EventSpec(
        "ESE",
        _LR,
        ERR,
        "LOG_DISK_FULL",
        "The database engine log disk is full. Deleting logfiles to recover disk space may make your database "
        "unstartable if the database file(s) are not in a Clean Shutdown state. Do not move {file}.",
    ),
    440: EventSpec(
        "ESE",
        _LR,
        ERR,
        "LOG_FILE_CORRUPTED_ID",
        "The log file {file} is damaged, invalid, or inaccessible (error {error}) and cannot be used. {detail}",
    ),
    450: EventSpec(
        "ESE",
        _LR,
        ERR,
        "CURRENT_LOG_FILE_MISSING_ERROR_ID",
        "A gap in the logfile sequence was detected. Logfile {file} is missing.",
    ),
    452: EventSpec(
        "ESE",
        _LR,
        ERR,
        "REDO_MISSING_LOW_LOG_ERROR_ID",
        "Database {db} requires logfiles {low}-{high} in order to recover successfully. Recovery could only "
        "locate logfiles starting at {found}.",
    ),
    453: EventSpec(
        "ESE",
        _LR,
        ERR,
        "REDO_MISSING_HIGH_LOG_ERROR_ID",
        "Database {db} requires logfiles {low}-{high} in order to recover successfully. Recovery could only "
        "locate logfiles up to {found}.",
    ),
    455: EventSpec("ESE", _LR, ERR, "LOG_OPEN_FILE_ERROR_ID", "Error {error} occurred while opening logfile {file}."),
    456: EventSpec(
        "ESE",
        _GEN,
        WARN,
        "PRIMARY_PAGE_READ_FAIL_ID",
        "The primary header page of file {file} was damaged. The shadow header page ({size} bytes) was used instead.",
    ),
    465: EventSpec(
        "ESE",
        _LR,
        ERR,
        "LOG_CORRUPTION_DURING_SOFT_RECOVERY_ID",
        "Corruption was detected during soft recovery in logfile {file}. The failing checksum record is located "
        "at position {lgpos}. Data not matching the log-file fill pattern first appeared in sector {sector}. "
        "This logfile has been damaged and is unusable.",
    ),
    472: EventSpec(
        "ESE",
        _GEN,
        WARN,
        "SHADOW_PAGE_READ_FAIL_ID",
        "The shadow header page of file {file} was damaged. The primary header page ({size} bytes) was used instead.",
    ),
    474: EventSpec(
        "ESE",
        _GEN,
        ERR,
        "DATABASE_PAGE_CHECKSUM_MISMATCH_ID",
        'The database page read from the file "{file}" at offset {offset} (database page {pgno}) for {size} '
        "bytes failed verification due to a page checksum mismatch. The stored checksum was {stored} and the "
        "computed checksum was {computed}. The read operation will fail with error {error}.",
    ),
    496: EventSpec(
        "ESE",
        _LR,
        ERR,
        "REDO_HIGH_LOG_MISMATCH_ERROR_ID",
        "Database {db} requires logfile {file} created at {expected} in order to recover successfully. "
        "Recovery found the logfile created at {found}.",
    ),
    514: EventSpec(
        "ESE",
        _LR,
        WARN,
        "ALMOST_OUT_OF_LOG_SEQUENCE_ID",
        "Log sequence numbers for this instance have almost been completely consumed. The current log "
        "generation is {gen}.",
    ),
    518: EventSpec(
        "ESE",
        _LR,
        WARN,
        "LOG_FILE_MISSING_ID",
        "The log file {file} is missing (error {error}) and cannot be used. {detail}",
    ),
    558: EventSpec(
        "ESE",
        _LR,
        WARN,
        "GAP_LOG_FILE_GEN_ID",
        "There is a gap in sequence number following logfile generation {gen}. Highest logfile generation "
        "present is {high}.",
    ),
    # --- ShadowStore's own ----------------------------------------------------------------------------------
    1000: EventSpec("ShadowStore", "Storage Group", INFO, "SG_MOUNTED", "Storage group {sg} is mounted ({stores})."),
    1001: EventSpec("ShadowStore", "Storage Group", INFO, "SG_DISMOUNTED", "Storage group {sg} was dismounted."),
    1002: EventSpec(
        "ShadowStore",
        "Storage Group",
        INFO,
        "STORE_MOUNTED",
        "Store {store} ({file}) is mounted at log position {lgpos}.",
    ),
    1003: EventSpec(
        "ShadowStore",
        "Storage Group",
        INFO,
        "STORE_DISMOUNTED",
        "Store {store} ({file}) was dismounted cleanly at log position {lgpos}; it is in Clean Shutdown.",
    ),
    1004: EventSpec(
        "ShadowStore",
        "Storage Group",
        ERR,
        "STORE_DISMOUNTED_DIRTY",
        "Store {store} ({file}) could not be brought to Clean Shutdown ({error}); it stays in Dirty Shutdown and "
        "the next mount replays its logs.",
    ),
    1010: EventSpec(
        "ShadowStore",
        "Log Health",
        WARN,
        "LOG_FILE_REPLACED",
        "Log file {file} (generation {gen}) was replaced or changed while the storage group was mounted.",
    ),
    1011: EventSpec(
        "ShadowStore",
        "Log Health",
        WARN,
        "LOG_FILE_REMOVED",
        "Log file {file} (generation {gen}) was deleted or moved out of the log folder while the storage group "
        "was mounted. {detail}",
    ),
    1012: EventSpec(
        "ShadowStore",
        "Log Health",
        INFO,
        "CHECKPOINT_ADVANCED_FOR_HEALTH",
        "The checkpoint was advanced to {checkpoint} so that crash recovery no longer needs log generations "
        "{low}-{high} ({reason}). A full backup is advised: incremental backups need an unbroken log chain.",
    ),
    1020: EventSpec(
        "ShadowStore",
        "Storage Group",
        ERR,
        "SG_OFFLINE",
        "Storage group {sg} stopped accepting work after an I/O failure ({error}). Mount it again to run soft "
        "recovery.",
    ),
    1021: EventSpec(
        "ShadowStore",
        "Storage Group",
        WARN,
        "DISK_FULL_DISMOUNT",
        "Storage group {sg} ran out of log disk space and was dismounted; the reserve log now named {file} holds "
        "its last records (spare reserve released for the shutdown: {released}). Free space and mount it again: "
        "nothing committed was lost.",
    ),
    1022: EventSpec(
        "ShadowStore",
        "Storage Group",
        INFO,
        "RESERVE_LOGS_READY",
        "Reserve log files for storage group {sg} were created ({files}).",
    ),
    1023: EventSpec(
        "ShadowStore",
        "Storage Group",
        WARN,
        "RESERVE_LOGS_MISSING",
        "Reserve log files for storage group {sg} could not be created ({error}); the storage group has no "
        "reserve for a full disk.",
    ),
    1030: EventSpec(
        "ShadowStore",
        "Logging",
        INFO,
        "CIRCULAR_LOG_DELETE",
        "Circular logging deleted log generations {low}-{high}, which are below the checkpoint {checkpoint}.",
    ),
    1031: EventSpec(
        "ShadowStore",
        "Logging",
        WARN,
        "CHECKPOINT_FILE_REBUILT",
        "Checkpoint file {file} was {problem}; it was rebuilt from the database headers.",
    ),
}
