"""The catalogue of events: ID, source, category, type and description template.

ESE events keep the IDs and the wording of the originals (``research/ese.md`` section 6) with our
parameters in braces. Events of source ``ShadowStore`` (IDs 1000 and up) are our own, for what the original
engine had no event for.
"""

from __future__ import annotations

from shadowstore.eventspec import ERR, INFO, WARN, EventSpec, EventType
from shadowstore.ownevents import OWN_EVENTS

__all__ = ["CATALOG", "ERR", "INFO", "WARN", "EventSpec", "EventType"]


_LR = "Logging/Recovery"
_BK = "Backup"
_GEN = "General"
_SC = "ShadowCopy"
_VSS = "Exchange VSS Writer"

_ESE: dict[int, EventSpec] = {
    # --- ESE, backup ---------------------------------------------------------------------------------------
    200: EventSpec("ESE", _BK, INFO, "START_FULL_BACKUP_ID", "The database engine is starting a full backup."),
    201: EventSpec(
        "ESE", _BK, INFO, "START_INCREMENTAL_BACKUP_ID", "The database engine is starting an incremental backup."
    ),
    202: EventSpec(
        "ESE", _BK, INFO, "STOP_BACKUP_ID", "The database engine has completed the backup procedure successfully."
    ),
    203: EventSpec(
        "ESE", _BK, ERR, "STOP_BACKUP_ERROR_ID", "The database engine has stopped the backup with error {error}."
    ),
    206: EventSpec(
        "ESE",
        _BK,
        ERR,
        "DATABASE_MISS_FULL_BACKUP_ERROR_ID",
        "Database {db} cannot be incrementally backed-up. You must first perform a full backup before performing "
        "an incremental backup.",
    ),
    210: EventSpec("ESE", _BK, INFO, "START_FULL_BACKUP_INSTANCE_ID", "A {kind} backup is starting."),
    211: EventSpec("ESE", _BK, INFO, "START_INCREMENTAL_BACKUP_INSTANCE_ID", "An {kind} backup is starting."),
    213: EventSpec(
        "ESE", _BK, INFO, "STOP_BACKUP_INSTANCE_ID", "The backup procedure has been successfully completed."
    ),
    214: EventSpec("ESE", _BK, ERR, "STOP_BACKUP_ERROR_INSTANCE_ID", "The backup has stopped with error {error}."),
    215: EventSpec(
        "ESE",
        _BK,
        ERR,
        "STOP_BACKUP_ERROR_ABORT_BY_CALLER_INSTANCE_ID",
        "The backup has been stopped because it was halted by the client or the connection with the client "
        "failed. {detail}",
    ),
    217: EventSpec(
        "ESE",
        _BK,
        ERR,
        "BACKUP_ERROR_FOR_ONE_DATABASE",
        "Error ({error}) during backup of a database (file {file}). The database will be unable to restore.",
    ),
    218: EventSpec("ESE", _BK, ERR, "BACKUP_ERROR_READ_FILE", "Error ({error}) during copy or backup of file {file}."),
    220: EventSpec(
        "ESE", _BK, INFO, "BACKUP_FILE_START", "Starting the copy or backup of the file {file} (size {size})."
    ),
    221: EventSpec("ESE", _BK, INFO, "BACKUP_FILE_STOP_OK", "Ending the copy or backup of the file {file}."),
    223: EventSpec(
        "ESE", _BK, INFO, "BACKUP_LOG_FILES_START", "Starting the backup of log files (range {low} - {high})."
    ),
    224: EventSpec("ESE", _BK, INFO, "BACKUP_TRUNCATE_LOG_FILES", "Deleting log files {low} to {high}."),
    225: EventSpec("ESE", _BK, INFO, "BACKUP_NO_TRUNCATE_LOG_FILES", "No log files can be truncated."),
    226: EventSpec(
        "ESE",
        _BK,
        WARN,
        "STOP_BACKUP_ERROR_ABORT_BY_SERVER_INSTANCE_ID",
        "The backup has been stopped prematurely (possibly because the instance is terminating).",
    ),
    227: EventSpec(
        "ESE",
        _BK,
        WARN,
        "BACKUP_TRUNCATE_FOUND_MISSING_LOG_FILES",
        "There were {count} log file(s) not found in the log range we attempted to truncate ({missing}).",
    ),
    459: EventSpec(
        "ESE", _BK, ERR, "BACKUP_LOG_FILE_MISSING_ERROR_ID", "The file {file} is missing and could not be backed-up."
    ),
    # --- ESE, shadow copy (OS snapshot): engine/snapshot.py and the store writer ------------------------------
    2000: EventSpec("ESE", _SC, INFO, "OS_SNAPSHOT_TRACE_ID", "Shadow copy function {function}() = {result}."),
    2001: EventSpec("ESE", _SC, INFO, "OS_SNAPSHOT_FREEZE_START_ID", "Shadow copy instance {instance} freeze started."),
    2002: EventSpec(
        "ESE",
        _SC,
        ERR,
        "OS_SNAPSHOT_FREEZE_START_ERROR_ID",
        "Shadow copy instance {instance} encountered error {error} on freeze.",
    ),
    2003: EventSpec("ESE", _SC, INFO, "OS_SNAPSHOT_FREEZE_STOP_ID", "Shadow copy instance {instance} freeze ended."),
    2004: EventSpec(
        "ESE", _SC, ERR, "OS_SNAPSHOT_TIME_OUT_ID", "Shadow copy instance {instance} freeze timed-out ({ms} ms)."
    ),
    2005: EventSpec(
        "ESE",
        _SC,
        INFO,
        "OS_SNAPSHOT_PREPARE_FULL_ID",
        "Shadow copy instance {instance} starting. This will be a Full shadow copy.",
    ),
    2006: EventSpec("ESE", _SC, INFO, "OS_SNAPSHOT_END_ID", "Shadow copy instance {instance} completed successfully."),
    2007: EventSpec("ESE", _SC, ERR, "OS_SNAPSHOT_ABORT_ID", "Shadow copy instance {instance} aborted."),
    2008: EventSpec(
        "ESE",
        _SC,
        INFO,
        "OS_SNAPSHOT_PREPARE_INCREMENTAL_ID",
        "Shadow copy instance {instance} starting. This will be an Incremental shadow copy.",
    ),
    2009: EventSpec(
        "ESE",
        _SC,
        INFO,
        "OS_SNAPSHOT_PREPARE_COPY_ID",
        "Shadow copy instance {instance} starting. This will be a Copy shadow copy.",
    ),
    2010: EventSpec(
        "ESE",
        _SC,
        INFO,
        "OS_SNAPSHOT_PREPARE_DIFFERENTIAL_ID",
        "Shadow copy instance {instance} starting. This will be a Differential shadow copy.",
    ),
    # --- MSExchangeIS, the store writer (KB 933779: 0xfffff69d is -2403) ------------------------------------
    9611: EventSpec(
        "MSExchangeIS", _VSS, ERR, "VSS_WRITER_FREEZE_ERROR", "Error code {error} when freezing the Storage groups."
    ),
    # --- ESE, restore -------------------------------------------------------------------------------------
    204: EventSpec(
        "ESE",
        _LR,
        INFO,
        "START_RESTORE_ID",
        "The database engine is restoring from backup. Restore will begin replaying logfiles in folder {folder} "
        "and continue rolling forward logfiles in folder {live}.",
    ),
    205: EventSpec("ESE", _LR, INFO, "STOP_RESTORE_ID", "The database engine has stopped restoring."),
    433: EventSpec(
        "ESE",
        _LR,
        ERR,
        "RESTORE_LOG_FILE_BAD_SIGNATURE_ID",
        "The restored logfile {file} does not have the correct log signature.",
    ),
    434: EventSpec(
        "ESE",
        _LR,
        ERR,
        "RESTORE_LOG_FILE_BAD_TIMESTAMP_ID",
        "The timestamp for restored logfile {file} does not match the timestamp recorded in the logfile "
        "previous to it.",
    ),
    435: EventSpec("ESE", _LR, ERR, "RESTORE_LOG_FILE_MISSING_ID", "The restored logfile {file} is missing."),
    454: EventSpec(
        "ESE", _LR, ERR, "RESTORE_DATABASE_FAIL_ID", "Database recovery/restore failed with unexpected error {error}."
    ),
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
}

CATALOG: dict[int, EventSpec] = {**_ESE, **OWN_EVENTS}
