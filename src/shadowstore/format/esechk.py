"""The checkpoint file of a real Windows ESE instance (``edb.chk``; CHECKPOINT_FIXED, research/ese.md §4.2).

The file is 8192 bytes: a 4096-byte copy at offset 0 and an identical shadow at 4096, each checksummed with the
old-format XOR over its 4096 bytes (format/esetypes.py). Like a log it has no magic: le_filetype at offset 667 is 4.
The primary is used when valid, else the shadow.

    off size field (Microsoft's name)
      0   4  le_ulChecksum
      4   8  le_lgposLastFullBackupCheckpoint
     12   8  le_lgposCheckpoint        where recovery starts
     20  28  signLog                   SIGNATURE of the log stream
     48 567  dbms_param                DBMS_PARAM
    615   8  le_lgposFullBackup        (this and the next three are zero in every real sample seen)
    623   8  logtimeFullBackup
    631   8  le_lgposIncBackup
    639   8  logtimeIncBackup
    647   1  fVersion                  0x1: attach info present
    648   8  le_lgposDbConsistency
    656  11  (not described)
    667   4  le_filetype               4
    671   8  (not described)
    679 2048 rgbAttach                 ATTACHINFO list, ended by a zero dbid
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from shadowstore.errors import CheckpointCorruptError, InvalidParameterError
from shadowstore.format.esetypes import (
    DBMS_PARAM,
    FILETYPE_CHECKPOINT,
    LGPOS,
    LOGTIME,
    SIGNATURE,
    AttachListError,
    DbmsParam,
    EseAttachInfo,
    EseLgPos,
    EseSignature,
    LogTime,
    checksum_problem,
    filetype_of,
    unpack_attach_list,
)

CHECKPOINT_COPY_SIZE = 4096
CHECKPOINT_FILE_SIZE = 2 * CHECKPOINT_COPY_SIZE
_LG, _LT = f"{LGPOS.size}s", f"{LOGTIME.size}s"
CHECKPOINT_FIXED = struct.Struct(
    f"<I{_LG}{_LG}{SIGNATURE.size}s{DBMS_PARAM.size}s{_LG}{_LT}{_LG}{_LT}B{_LG}11sI8s2048s"
)
assert CHECKPOINT_FIXED.size == 2727
ATTACH_AREA = (679, 679 + 2048)


class EseCheckpoint(NamedTuple):
    last_full_backup_checkpoint: EseLgPos
    checkpoint: EseLgPos
    signature: EseSignature
    params: DbmsParam
    full_backup: EseLgPos
    full_backup_time: LogTime
    inc_backup: EseLgPos
    inc_backup_time: LogTime
    version_flags: int
    db_consistency: EseLgPos
    attached: list[EseAttachInfo]
    checksum: int = 0

    def pack(self) -> bytearray:
        """One 4096-byte copy with these fields, unsealed (seal it with esetypes.seal_xor_checksum): for tests."""
        attach = b"".join(item.pack() for item in self.attached) + b"\0"
        fields = (
            *(self.checksum, self.last_full_backup_checkpoint.pack(), self.checkpoint.pack()),
            *(self.signature.pack(), self.params.pack(), self.full_backup.pack(), self.full_backup_time.pack()),
            *(self.inc_backup.pack(), self.inc_backup_time.pack(), self.version_flags, self.db_consistency.pack()),
            *(b"", FILETYPE_CHECKPOINT, b"", attach),
        )
        block = bytearray(CHECKPOINT_COPY_SIZE)
        CHECKPOINT_FIXED.pack_into(block, 0, *fields)
        return block


@dataclass(frozen=True)
class CheckpointRead:
    """The checkpoint from the first valid copy, and why each copy is not valid (None when it is)."""

    checkpoint: EseCheckpoint
    copy_used: int
    problems: tuple[str | None, str | None]
    shadow_differs: bool


def unpack_checkpoint(block: bytes) -> EseCheckpoint:
    """Decode one verified copy. Raises AttachListError for an attach list that runs past its area."""
    raw = CHECKPOINT_FIXED.unpack_from(block, 0)
    return EseCheckpoint(
        last_full_backup_checkpoint=EseLgPos.unpack_from(raw[1]),
        checkpoint=EseLgPos.unpack_from(raw[2]),
        signature=EseSignature.unpack_from(raw[3]),
        params=DbmsParam.unpack_from(raw[4]),
        full_backup=EseLgPos.unpack_from(raw[5]),
        full_backup_time=LogTime.unpack_from(raw[6]),
        inc_backup=EseLgPos.unpack_from(raw[7]),
        inc_backup_time=LogTime.unpack_from(raw[8]),
        version_flags=raw[9],
        db_consistency=EseLgPos.unpack_from(raw[10]),
        attached=unpack_attach_list(block, *ATTACH_AREA),
        checksum=raw[0],
    )


def _copy_problem(data: bytes, copy: int) -> str | None:
    block = data[copy * CHECKPOINT_COPY_SIZE : (copy + 1) * CHECKPOINT_COPY_SIZE]
    if len(block) < CHECKPOINT_COPY_SIZE:
        return f"the file ends at {len(data)} bytes, inside this copy"
    problem = checksum_problem(block)
    if problem is not None:
        return problem
    if filetype_of(block) != FILETYPE_CHECKPOINT:
        return f"le_filetype at offset {copy * CHECKPOINT_COPY_SIZE + 667} is {filetype_of(block)}, not 4"
    try:
        unpack_attach_list(block, *ATTACH_AREA)
    except AttachListError as exc:
        return str(exc)
    return None


def read_checkpoint(data: bytes, path: str) -> CheckpointRead:
    """The checkpoint of the file ``path`` whose bytes are ``data``: the primary when valid, else the shadow.

    Raises InvalidParameterError when neither copy says it is a checkpoint (le_filetype 4 at offset 667 or
    4096 + 667: an empty, truncated, zero-filled or other file) and CheckpointCorruptError (-533) naming the file
    and both offsets when both copies are damaged.
    """
    if not any(filetype_of(data[c * CHECKPOINT_COPY_SIZE :]) == FILETYPE_CHECKPOINT for c in (0, 1)):
        raise InvalidParameterError(
            f"{path} is not a Windows ESE checkpoint file: {_why_not(data)}",
            hint="check the path; 'eseutil /mk' reads checkpoint files (edb.chk, E00.chk)",
            file=path,
        )
    problems = (_copy_problem(data, 0), _copy_problem(data, 1))
    if problems[0] is not None and problems[1] is not None:
        raise CheckpointCorruptError(
            f"{path}: both checkpoint copies are damaged: copy 0 (primary, offset 0): {problems[0]}; "
            f"copy 1 (shadow, offset {CHECKPOINT_COPY_SIZE}): {problems[1]}",
            file=path,
            offset=0,
        )
    used = 0 if problems[0] is None else 1
    block = data[used * CHECKPOINT_COPY_SIZE : (used + 1) * CHECKPOINT_COPY_SIZE]
    differs = (
        problems == (None, None) and data[:CHECKPOINT_COPY_SIZE] != data[CHECKPOINT_COPY_SIZE:CHECKPOINT_FILE_SIZE]
    )
    return CheckpointRead(unpack_checkpoint(block), used, problems, differs)


def _why_not(data: bytes) -> str:
    if not data:
        return "it is empty"
    if len(data) < 671:
        return f"it is {len(data)} bytes, too short to hold a checkpoint header (le_filetype is at offset 667)"
    if not any(data):
        return f"it is zero-filled (all of its {len(data)} bytes)"
    return f"le_filetype at offset 667 is {filetype_of(data)}, not {FILETYPE_CHECKPOINT}"
