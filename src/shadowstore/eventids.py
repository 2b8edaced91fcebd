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
_BK = "Backup"
_GEN = "General"
_SC = "ShadowCopy"
_VSS = "Exchange VSS Writer"

CATALOG: dict[int, EventSpec] = {
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
    1005: EventSpec(
        "ShadowStore",
        "Storage Group",
        ERR,
        "STORE_DISMOUNT_FAILED",
        "Store {store} ({file}) of a mounted storage group could not be dismounted ({error}); it stays mounted and "
        "in use, and nothing of it changed. Dismount it again once the cause is fixed.",
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
        "Storage group {sg} went offline and stopped accepting work ({error}). Mount it again to run soft recovery.",
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
    1024: EventSpec(
        "ShadowStore",
        "Storage Group",
        ERR,
        "SG_FILE_WRITES_LOST",
        "A write to {file} failed ({error}). What the file holds on disk is no longer known: the operating system "
        "may have dropped writes it had accepted, and a retry would only seem to succeed. Storage group {sg} "
        "stops accepting work now; check the disk, then mount it again to recover from its last durable state.",
    ),
    1025: EventSpec(
        "ShadowStore",
        "Storage Group",
        ERR,
        "SG_MAINTENANCE_FAILED",
        "The maintenance of storage group {sg} failed unexpectedly ({error}), so lazy commits, checkpoints and "
        "backup leases cannot be looked after. The storage group stops accepting work now; mount it again.",
    ),
    1026: EventSpec(
        "ShadowStore",
        "Storage Group",
        WARN,
        "TRANSACTION_ABORTED_LATCH_TIMEOUT",
        "A write transaction on store {store} held its writer latch for {seconds} s and was aborted ({why}); "
        "nothing of it was written, and its client gets an error at its next call.",
    ),
    1027: EventSpec(
        "ShadowStore",
        "Storage Group",
        INFO,
        "SG_TEMPORARIES_REMOVED",
        "Mounting storage group {sg} removed temporary files an interrupted write had left beside its files: "
        "{files}. They held nothing the storage group needs.",
    ),
    1028: EventSpec(
        "ShadowStore",
        "Storage Group",
        WARN,
        "SG_LOCK_FILE_CHANGED",
        "The lock file {file} of storage group {sg} was deleted or replaced while the storage group is mounted. "
        "The storage group is still locked against other processes; dismount and mount it to make the file again.",
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
    1040: EventSpec(
        "ShadowStore",
        "Restore",
        INFO,
        "RESTORE_STOPPED_AT",
        "The restore of {sg} stopped {where}: the stores are in Clean Shutdown, consistent at log position "
        "{lgpos}; the last transaction replayed was committed at {last_commit}.",
    ),
    1041: EventSpec(
        "ShadowStore",
        "Restore",
        WARN,
        "RESTORE_NEW_LOG_STREAM",
        "The restored stores of {sg} stop before the end of its log stream, so the stream was restarted with a new "
        "log signature; the files it replaced were moved to {quarantine}. Take a full backup: incremental backups "
        "cannot continue across a restore.",
    ),
    1050: EventSpec(
        "ShadowStore",
        "Storage Group",
        INFO,
        "SG_FILES_MOVED",
        "The files of storage group {sg} were moved ({moved}): {files} files, {bytes} bytes copied and synced. The "
        "configuration now names the new folders; the old files were kept in {quarantine}.",
    ),
    1060: EventSpec(
        "ShadowStore",
        "Service",
        INFO,
        "SERVICE_STARTED",
        "The Information Store service started ({detail}). Mounted: {mounted}. Listening on {endpoints}.",
    ),
    1061: EventSpec(
        "ShadowStore",
        "Service",
        INFO,
        "SERVICE_STOPPED",
        "The Information Store service stopped ({detail}); every storage group it had mounted was dismounted.",
    ),
    1062: EventSpec(
        "ShadowStore",
        "Service",
        WARN,
        "SNAPSHOT_JOB_ABANDONED",
        "The shadow-copy job of {owner} was ended: its requestor stopped calling within its lease (it died or lost "
        "its connection). The writers were thawed and shut down; the next job can start.",
    ),
    # doctor --fix (tools/doctorfix.py): the support article's cure as one command. Why events of its own: no
    # engine event says that logs were set aside on purpose or why a cure stopped; the engine's own events
    # (dismount, recovery, mount, backup) still come from the engine as each step runs.
    1070: EventSpec(
        "ShadowStore",
        "Doctor",
        INFO,
        "DOCTOR_CURE_STARTED",
        "doctor --fix began the cure of storage group {sg}: {steps}. Its journal is {journal}; if it is interrupted, "
        "run 'shadowstore doctor --fix' again to finish it.",
    ),
    1071: EventSpec(
        "ShadowStore",
        "Doctor",
        INFO,
        "DOCTOR_STEP_DONE",
        "doctor --fix finished step {step} of storage group {sg}: {detail}.",
    ),
    1072: EventSpec(
        "ShadowStore",
        "Doctor",
        WARN,
        "DOCTOR_LOGS_SET_ASIDE",
        "doctor --fix moved {files} log, checkpoint and reserve files of storage group {sg} into {quarantine}: every "
        "store was in Clean Shutdown, so none of them is needed to mount. The next mount starts a new log stream; "
        "only a full backup starts a backup chain on it. Nothing was deleted.",
    ),
    1073: EventSpec(
        "ShadowStore",
        "Doctor",
        ERR,
        "DOCTOR_CURE_STOPPED",
        "doctor --fix stopped the cure of storage group {sg} at step {step}: {error}. What to do: {hint}",
    ),
    1074: EventSpec(
        "ShadowStore",
        "Doctor",
        INFO,
        "DOCTOR_CURE_DONE",
        "doctor --fix completed the cure of storage group {sg} ({steps}). Set aside: {quarantine}. Full backup: "
        "{backup}.",
    ),
}
