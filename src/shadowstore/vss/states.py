"""Writer states and failures with VSS's numbers and names (research/vss.md §1.3-1.4), and how
``vss writers`` words them (§1.7: ``State: [1] Stable``, ``Last error: No error``).

A failed state is what the writer reports after a job that failed; it never blocks the next job: the next
Identify starts from Stable (DESIGN §6).
"""

from __future__ import annotations

from enum import IntEnum


class WriterState(IntEnum):
    UNKNOWN = 0
    STABLE = 1
    WAITING_FOR_FREEZE = 2
    WAITING_FOR_THAW = 3
    WAITING_FOR_POST_SNAPSHOT = 4
    WAITING_FOR_BACKUP_COMPLETE = 5
    FAILED_AT_IDENTIFY = 6
    FAILED_AT_PREPARE_BACKUP = 7
    FAILED_AT_PREPARE_SNAPSHOT = 8
    FAILED_AT_FREEZE = 9
    FAILED_AT_THAW = 10
    FAILED_AT_POST_SNAPSHOT = 11
    FAILED_AT_BACKUP_COMPLETE = 12
    FAILED_AT_PRE_RESTORE = 13
    FAILED_AT_POST_RESTORE = 14
    FAILED_AT_BACKUPSHUTDOWN = 15

    @property
    def failed(self) -> bool:
        return self >= WriterState.FAILED_AT_IDENTIFY

    @property
    def words(self) -> str:
        """As ``vssadmin list writers`` prints it after the number."""
        if self.failed:
            return "Failed"
        return _WORDS[self]


_WORDS = {
    WriterState.UNKNOWN: "Unknown",
    WriterState.STABLE: "Stable",
    WriterState.WAITING_FOR_FREEZE: "Waiting for freeze",
    WriterState.WAITING_FOR_THAW: "Waiting for thaw",
    WriterState.WAITING_FOR_POST_SNAPSHOT: "Waiting for post snapshot",
    WriterState.WAITING_FOR_BACKUP_COMPLETE: "Waiting for completion",
}


class WriterFailure(IntEnum):
    """The HRESULTs a writer sets when it vetoes (VSS_E_WRITERERROR_*)."""

    NONE = 0
    INCONSISTENT_SNAPSHOT = 0x800423F0
    OUT_OF_RESOURCES = 0x800423F1
    TIMEOUT = 0x800423F2
    RETRYABLE = 0x800423F3
    NON_RETRYABLE = 0x800423F4

    @property
    def words(self) -> str:
        return _FAILURE_WORDS[self]

    @property
    def retryable(self) -> bool:
        """Whether the requestor may retry the job (VSS's guidance: wait, then retry up to three times)."""
        return self in (WriterFailure.OUT_OF_RESOURCES, WriterFailure.TIMEOUT, WriterFailure.RETRYABLE)


_FAILURE_WORDS = {
    WriterFailure.NONE: "No error",
    WriterFailure.INCONSISTENT_SNAPSHOT: "Inconsistent shadow copy",
    WriterFailure.OUT_OF_RESOURCES: "Out of resources",
    WriterFailure.TIMEOUT: "Timed out",
    WriterFailure.RETRYABLE: "Retryable error",
    WriterFailure.NON_RETRYABLE: "Non-retryable error",
}

# The state a writer reports when the named step fails.
FAILED_AT = {
    "identify": WriterState.FAILED_AT_IDENTIFY,
    "prepare_backup": WriterState.FAILED_AT_PREPARE_BACKUP,
    "prepare_snapshot": WriterState.FAILED_AT_PREPARE_SNAPSHOT,
    "freeze": WriterState.FAILED_AT_FREEZE,
    "thaw": WriterState.FAILED_AT_THAW,
    "post_snapshot": WriterState.FAILED_AT_POST_SNAPSHOT,
    "backup_complete": WriterState.FAILED_AT_BACKUP_COMPLETE,
    "pre_restore": WriterState.FAILED_AT_PRE_RESTORE,
    "post_restore": WriterState.FAILED_AT_POST_RESTORE,
    "backup_shutdown": WriterState.FAILED_AT_BACKUPSHUTDOWN,
}

# Backup kinds (VSS_BACKUP_TYPE) as ShadowStore names them.
BACKUP_TYPES = {"full": 1, "incremental": 2, "differential": 3, "copy": 5}
