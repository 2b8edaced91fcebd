"""The ShadowStore error family.

Every error the engine raises derives from :class:`ShadowStoreError`. A class carries the ESE error code and
name where the original engine has one (``research/ese.md`` section 7), a message that names the file, offset
or generation involved, and a hint that tells the user what to do next. The command line maps each class to
an exit code in bands: 0 ok, 1 warning, 2 error, 3-99 specific errors (see ``ExitCode``).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``shadowstore`` command, in bands."""

    OK = 0
    WARNING = 1
    ERROR = 2
    USAGE = 3  # bad command line or bad input value
    NOT_FOUND = 4  # server home, storage group, store or file does not exist
    BUSY = 5  # another process owns the storage group
    LOG_MISSING = 10  # a log generation that is needed is not there
    LOG_DAMAGED = 11  # a log file is corrupt, foreign or out of sequence
    DATABASE_DAMAGED = 12  # a page or header failed verification
    DATABASE_STATE = 13  # a store is in the wrong state for the request
    DISK_FULL = 14
    IO_ERROR = 15
    BACKUP_FAILED = 20  # a backup failed or was refused (the message says why and what to do)
    BACKUP_TARGET = 21  # the backup target cannot be used
    BACKUP_SET_DAMAGED = 22  # a backup set is incomplete, damaged or inconsistent
    RESTORE_FAILED = 23  # a restore was refused (the plan cannot reach the target) or failed
    WORKLOAD_MISMATCH = 30  # `workload check` found missing or partial transactions
    INTERRUPTED = 99
    CONFIG_MISMATCH = 6  # the configuration does not match the storage group's files (a changed log base or folder)
    TARGET_NOT_FOUND = 24  # the backup target named does not exist or is not a folder (or its bucket is missing)
    SERVICE = 7  # the Information Store service is needed and not running, or refused the caller


class ShadowStoreError(Exception):
    """Root of every error ShadowStore raises on purpose.

    ``code``/``code_name`` are the ESE error code and its JET name (0/"" when ESE has none), ``hint`` is one
    sentence telling the user what to do, and ``exit_code`` is the command-line exit code.
    """

    code: int = 0
    code_name: str = ""
    default_hint: str = ""
    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None, code: int | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.details = details  # structured facts (file, generation, offset, ...) for --json and events
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        prefix = f"[{self.code} {self.code_name}] " if self.code else ""
        return f"{prefix}{self.message}"

    def to_dict(self) -> dict[str, object]:
        """The error as plain data, for ``--json`` output and event parameters: the ESE code and its name (null
        when ESE has none for it, rather than a 0 that reads as success) and the exit code the CLI returns."""
        return {
            "error": type(self).__name__,
            "code": self.code or None,
            "code_name": self.code_name or None,
            "exit_code": int(self.exit_code),
            "message": self.message,
            "hint": self.hint,
            **{k: v for k, v in self.details.items() if isinstance(v, str | int | float | bool | list)},
        }


# --- usage and configuration -------------------------------------------------------------------------------


class InvalidParameterError(ShadowStoreError):
    code, code_name = -1003, "JET_errInvalidParameter"
    exit_code = ExitCode.USAGE


class NotFoundError(ShadowStoreError):
    """A server home, storage group, store, table or file that was named does not exist."""

    exit_code = ExitCode.NOT_FOUND


class DatabaseNotFoundError(NotFoundError):
    code, code_name = -1203, "JET_errDatabaseNotFound"


class FileNotFoundError_(NotFoundError):
    code, code_name = -1811, "JET_errFileNotFound"


class TableNotFoundError(NotFoundError):
    code, code_name = -1305, "JET_errObjectNotFound"


class TableExistsError(ShadowStoreError):
    code, code_name = -1303, "JET_errTableDuplicate"
    exit_code = ExitCode.USAGE


class KeyTooLargeError(InvalidParameterError):
    code, code_name = -1609, "JET_errKeyTruncated"


class StorageGroupBusyError(ShadowStoreError):
    """Another process holds the storage group open."""

    exit_code = ExitCode.BUSY
    default_hint = "stop the other process (or use the service it runs) before opening the storage group here"


# --- state errors -------------------------------------------------------------------------------------------


class NotMountedError(ShadowStoreError):
    code, code_name = -1029, "JET_errNotInitialized"
    exit_code = ExitCode.DATABASE_STATE
    default_hint = "mount the storage group first"


class DatabaseDirtyShutdownError(ShadowStoreError):
    code, code_name = -550, "JET_errDatabaseDirtyShutdown"
    exit_code = ExitCode.DATABASE_STATE
    default_hint = "mount the storage group (or run 'shadowstore eseutil /r') so soft recovery can replay its logs"


class ReadOnlyTransactionError(ShadowStoreError):
    code, code_name = -1008, "JET_errTransReadOnly"
    exit_code = ExitCode.USAGE


class TransactionClosedError(ShadowStoreError):
    code, code_name = -1054, "JET_errNotInTransaction"
    exit_code = ExitCode.USAGE


class TransactionAbortedError(ShadowStoreError):
    """The engine aborted a write transaction that held its store's writer latch too long (nothing of it was
    written)."""

    exit_code = ExitCode.DATABASE_STATE


class StorageGroupOfflineError(ShadowStoreError):
    """The storage group stopped accepting work after an unrecoverable I/O failure."""

    code, code_name = -510, "JET_errLogWriteFail"
    exit_code = ExitCode.IO_ERROR
    default_hint = (
        "check the event log and the disk; then mount the storage group again (soft recovery replays every "
        "committed transaction)"
    )


# --- log stream --------------------------------------------------------------------------------------------


class LogError(ShadowStoreError):
    """A problem with a transaction log file."""

    exit_code = ExitCode.LOG_DAMAGED
    default_hint = "run 'shadowstore eseutil /ml' on the log folder to see the whole log set"


class LogFileCorruptError(LogError):
    code, code_name = -501, "JET_errLogFileCorrupt"
    default_hint = (
        "the log file is damaged; restore it from a backup, or restore the storage group from its last backup"
    )


class MissingLogFileError(LogError):
    code, code_name = -528, "JET_errMissingLogFile"
    exit_code = ExitCode.LOG_MISSING
    default_hint = "put the missing log file back in the log folder, or restore the storage group from a backup"


class RequiredLogFilesMissingError(LogError):
    code, code_name = -543, "JET_errRequiredLogFilesMissing"
    exit_code = ExitCode.LOG_MISSING
    default_hint = "put the missing log files back in the log folder, or restore the storage group from a backup"


class BadLogSignatureError(LogError):
    code, code_name = -530, "JET_errBadLogSignature"
    default_hint = "a log file from another storage group or another log stream is in the log folder; move it out"


class LogGenerationMismatchError(LogError):
    code, code_name = -513, "JET_errLogGenerationMismatch"
    default_hint = "a log file was renamed; give it back its own name (its header names its generation)"


class InvalidLogSequenceError(LogError):
    code, code_name = -515, "JET_errInvalidLogSequence"
    default_hint = (
        "a log file was replaced by one from another point of the stream; put the original back or restore "
        "from a backup"
    )


class LogDiskFullError(LogError):
    code, code_name = -529, "JET_errLogDiskFull"
    exit_code = ExitCode.DISK_FULL
    default_hint = (
        "move the storage group to a disk with room, with no file moved by hand: shadowstore sg move "
        "'<storage group>' --to <folder> (it copies the files, switches the configuration and keeps the old "
        "files), then mount it again; do not delete log files by hand"
    )


class LogFileSizeMismatchError(LogError):
    code, code_name = -541, "JET_errLogFileSizeMismatch"


class BadLogVersionError(LogError):
    code, code_name = -514, "JET_errBadLogVersion"


# --- checkpoint --------------------------------------------------------------------------------------------


class CheckpointCorruptError(ShadowStoreError):
    code, code_name = -533, "JET_errCheckpointCorrupt"
    exit_code = ExitCode.LOG_DAMAGED
    default_hint = "move the checkpoint file aside; mounting rebuilds it from the database headers"


class CheckpointNotFoundError(NotFoundError):
    code, code_name = -542, "JET_errCheckpointFileNotFound"


class BadCheckpointSignatureError(ShadowStoreError):
    code, code_name = -532, "JET_errBadCheckpointSignature"
    exit_code = ExitCode.LOG_DAMAGED
    default_hint = "the checkpoint file belongs to another log stream; move it aside"


# --- databases ---------------------------------------------------------------------------------------------


class DatabaseError(ShadowStoreError):
    exit_code = ExitCode.DATABASE_DAMAGED
    default_hint = "run 'shadowstore eseutil /mh' on the file; restore the store from a backup if it is damaged"


class ReadVerifyFailureError(DatabaseError):
    code, code_name = -1018, "JET_errReadVerifyFailure"


class DatabaseCorruptedError(DatabaseError):
    code, code_name = -1206, "JET_errDatabaseCorrupted"


class BadDbSignatureError(DatabaseError):
    code, code_name = -531, "JET_errBadDbSignature"


class DatabaseLogSetMismatchError(DatabaseError):
    code, code_name = -539, "JET_errDatabaseLogSetMismatch"
    default_hint = "the store belongs to another storage group's log stream; put the right database file back"


class PageSizeMismatchError(DatabaseError):
    code, code_name = -1213, "JET_errPageSizeMismatch"
    exit_code = ExitCode.CONFIG_MISMATCH  # why: the file is whole; it disagrees with what it is opened as


class DiskFullError(ShadowStoreError):
    code, code_name = -1808, "JET_errDiskFull"
    exit_code = ExitCode.DISK_FULL
    default_hint = (
        "free space on the database disk, or move the storage group to a disk with room: shadowstore sg move "
        "'<storage group>' --to <folder> (--data-dir <folder> for the stores alone), then mount it again"
    )


class DiskIOError(ShadowStoreError):
    code, code_name = -1022, "JET_errDiskIO"
    exit_code = ExitCode.IO_ERROR
    default_hint = "check the disk and the system log; then mount the storage group again"


# --- backup -------------------------------------------------------------------------------------------------


class BackupError(ShadowStoreError):
    """A backup, its session or a backup set."""

    exit_code = ExitCode.BACKUP_FAILED


class BackupInProgressError(BackupError):
    code, code_name = -505, "JET_errBackupInProgress"
    exit_code = ExitCode.BUSY
    default_hint = (
        "wait for it to end, or end it with 'shadowstore backup abort --sg NAME' if its owner is gone "
        "(a session whose lease lapsed is ended by the engine itself)"
    )


class NoBackupError(BackupError):
    code, code_name = -520, "JET_errNoBackup"
    default_hint = "there is no backup session to end; nothing needs to be done"


class InvalidBackupSequenceError(BackupError):
    code, code_name = -521, "JET_errInvalidBackupSequence"
    default_hint = "the backup session is still usable; make the calls in order"


class InvalidBackupError(BackupError):
    code, code_name = -526, "JET_errInvalidBackup"
    default_hint = "incremental and differential backups need circular logging off; take a full backup instead"


class MissingFullBackupError(BackupError):
    code, code_name = -560, "JET_errMissingFullBackup"
    default_hint = "take a full backup first"


class MissingFileToBackupError(BackupError):
    code, code_name = -569, "JET_errMissingFileToBackup"
    default_hint = "take a full backup: it does not need the missing logs"


class LogReadVerifyFailureError(BackupError):
    code, code_name = -612, "JET_errLogReadVerifyFailure"
    default_hint = "a log file to back up is damaged; take a full backup after checking the disk"


class BackupAbortedError(BackupError):
    code, code_name = -800, "JET_errBackupAbortByCaller"
    default_hint = "the backup was ended before it completed; run it again"


class OSSnapshotTimeOutError(BackupError):
    """A shadow-copy freeze lasted longer than its deadline (or could not be put in place within it): the
    storage group thawed by itself (event 2004) and the shadow copy cannot be trusted."""

    code, code_name = -2402, "JET_errOSSnapshotTimeOut"
    default_hint = (
        "commits have resumed; run the backup again (it is retryable), and if it times out again use a faster "
        "snapshot provider or a longer freeze timeout"
    )


class OSSnapshotNotAllowedError(BackupError):
    """A shadow-copy freeze is refused: a streaming backup session runs on the storage group, it is already
    frozen, or it is not mounted (recovering). Retryable (VSS_E_WRITERERROR_RETRYABLE)."""

    code, code_name = -2403, "JET_errOSSnapshotNotAllowed"
    default_hint = (
        "wait for the streaming backup to end, or end it with 'shadowstore backup abort --sg NAME', then retry "
        "(this error is retryable)"
    )


class BackupTargetError(BackupError):
    """The backup target failed (unreachable, unwritable, I/O error)."""

    exit_code = ExitCode.BACKUP_TARGET
    default_hint = "check that the backup target exists, is writable and reachable, then run the backup again"


class BackupTargetFullError(BackupTargetError):
    exit_code = ExitCode.DISK_FULL
    default_hint = "free space on the backup target (shadowstore backup prune) and run the backup again"


class BackupTargetNotFoundError(BackupTargetError):
    exit_code = ExitCode.NOT_FOUND
    default_hint = "run 'shadowstore backup list' to see the backup sets in the target"


class BackupSetError(BackupError):
    """A backup set is incomplete, damaged or inconsistent (verify, restore)."""

    exit_code = ExitCode.BACKUP_SET_DAMAGED
    default_hint = "do not use this backup set; take a new backup and verify it"


# --- restore ------------------------------------------------------------------------------------------------


class RestoreError(ShadowStoreError):
    """A restore was refused or failed; nothing was written to a live storage group."""

    exit_code = ExitCode.RESTORE_FAILED
    default_hint = "run 'shadowstore restore plan' to see what the backups can restore"


class NoRestorableBackupError(RestoreError):
    """No full (or copy) backup can start the restore: none exists, or none is old enough for the target."""

    code, code_name = -560, "JET_errMissingFullBackup"
    default_hint = "choose a later target, or restore from a target that holds an older full backup"


class MissingRestoreLogFilesError(RestoreError):
    """The chain of backups (and live logs) does not reach the target: a set or a generation is missing."""

    code, code_name = -557, "JET_errMissingRestoreLogFiles"
    default_hint = "choose an earlier target, or find the missing backup set; 'shadowstore backup list' shows them"


class RestoreInProgressError(RestoreError):
    code, code_name = -506, "JET_errRestoreInProgress"
    exit_code = ExitCode.BUSY
    default_hint = "wait for the other restore to finish, or run the same command again after it was killed"


class WorkloadMismatchError(ShadowStoreError):
    """``workload check`` found a committed transaction missing or a transaction present only in part."""

    exit_code = ExitCode.WORKLOAD_MISMATCH


# --- bugs ---------------------------------------------------------------------------------------------------


class UnexpectedError(ShadowStoreError):
    """An exception that is not a ShadowStoreError reached a place that reports errors: a bug. Made by
    :func:`unexpected`, raised ``from`` the original so its traceback stays reachable."""

    exit_code = ExitCode.ERROR
    default_hint = "this is a bug in ShadowStore; please report it with the command you ran and this message"


MAX_UNEXPECTED_TEXT = 500  # characters of the exception's text kept in the one-line message


def unexpected(exc: BaseException, doing: str) -> UnexpectedError:
    """``exc`` as an UnexpectedError whose message is one line: ``unexpected failure while <doing>: <Type>:
    <text> (a bug in ShadowStore)``. The text's line breaks and runs of blanks become single spaces and a long
    text is cut (why: a report entry and the CLI's error are one line; the traceback goes elsewhere). Raise it
    ``from exc``."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    text = " ".join(str(exc).split())
    if len(text) > MAX_UNEXPECTED_TEXT:
        text = text[: MAX_UNEXPECTED_TEXT - 3] + "..."
    what = f"{name}: {text}" if text else name
    return UnexpectedError(f"unexpected failure while {' '.join(doing.split())}: {what} (a bug in ShadowStore)")


# --- configuration and backup targets -----------------------------------------------------------------------


class ConfigMismatchError(ShadowStoreError):
    """The configuration of a storage group does not match its files: its log base or a folder was changed in
    shadowstore.toml while the storage group has logs. Opening it would start a second log stream beside the
    first (or lose track of a store), so it is refused; the message names what the configuration says and what
    the disk holds."""

    exit_code = ExitCode.CONFIG_MISMATCH
    default_hint = "put the old value back in shadowstore.toml (see shadowstore.toml.previous)"


class TargetNotFoundError(BackupTargetError):
    """The backup target named for reading does not exist, is not a folder, or its bucket does not exist."""

    exit_code = ExitCode.TARGET_NOT_FOUND
    default_hint = "check the target's path or URL (a mistyped --to or --from, or a disk that is not mounted)"


# --- the Information Store service --------------------------------------------------------------------------


class ServiceError(ShadowStoreError):
    """The Information Store service is needed but not running, refused the caller, or answered something
    that is not a ShadowStore error (the message quotes it)."""

    exit_code = ExitCode.SERVICE
    default_hint = "start it with 'shadowstore serve' (or 'systemctl start shadowstore'), see docs/operations.md"


class AccessDeniedError(ShadowStoreError):
    """A request names something the service may not touch for its caller: a path outside the server home and
    the backup target, or a token file others can read."""

    exit_code = ExitCode.USAGE


class SnapshotProviderError(BackupError):
    """The shadow-copy provider could not make the snapshot (it failed, or did not finish within its bound)."""


class SnapshotJobRunningError(BackupError):
    """A shadow-copy job is already running in the service (one runs at a time)."""

    exit_code = ExitCode.BUSY
