"""The catalogue of ShadowStore's own events (source ``ShadowStore``, IDs 1000 and up): what the original engine
had no event for (mounts and dismounts, I/O failures that take a storage group offline, the service, doctor).
eventids.py merges them with ESE's events into one catalogue."""

from __future__ import annotations

from shadowstore.eventspec import ERR, INFO, WARN, EventSpec

OWN_EVENTS: dict[int, EventSpec] = {
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
