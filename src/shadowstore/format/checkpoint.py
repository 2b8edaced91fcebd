"""The checkpoint file ``E00.chk``: the oldest log position a storage group needs after a crash.

The file holds two 4096-byte copies of the checkpoint (primary at 0, shadow at 4096). A writer updates the
primary, fsyncs, updates the shadow, fsyncs; a reader takes the valid copy with the higher sequence number,
so a crash in the middle of an update leaves either the old or the new checkpoint. See docs/formats.md.

Each copy:

    off size field
      0   4  checksum: CRC-32C of bytes 4..4095 of this copy
      4   8  magic b"SHSTCHK\\x1a"
     12   2  format major version
     14   2  format minor version
     16   8  sequence number (increases with every write)
     24   8  checkpoint (LGPOS)
     32  28  log signature
     60   4  base name ("E00")
     64   8  LGPOS of the last full backup
     72   8  time of the last full backup (us)
     80   8  LGPOS of the last incremental backup
     88   8  time of the last incremental backup (us)
     96   8  time this copy was written (us)
    104   4  log file size
    108   4  flags: 0x02 circular logging
    112 ...  attach list of the stores mounted when it was written (ATTACHINFO entries, 0-terminated)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from shadowstore.format.common import (
    LGPOS_ZERO,
    AttachInfo,
    LgPos,
    Signature,
    pack_attach_list,
    seal_checksum,
    stored_and_computed_checksum,
    unpack_attach_list,
)

CHECKPOINT_MAGIC = b"SHSTCHK\x1a"
CHECKPOINT_COPY_SIZE = 4096
CHECKPOINT_FILE_SIZE = 2 * CHECKPOINT_COPY_SIZE
CHECKPOINT_FORMAT = (1, 0)

CHECKPOINT = struct.Struct("<I8sHHQQ28s4sQQQQQII")
assert CHECKPOINT.size == 112


class Checkpoint(NamedTuple):
    sequence: int
    checkpoint: LgPos
    signature: Signature
    base: str
    full_backup: LgPos = LGPOS_ZERO
    full_backup_us: int = 0
    inc_backup: LgPos = LGPOS_ZERO
    inc_backup_us: int = 0
    written_us: int = 0
    log_file_size: int = 0
    flags: int = 0
    attached: tuple[AttachInfo, ...] | list[AttachInfo] = ()

    def pack(self) -> bytes:
        buf = bytearray(CHECKPOINT_COPY_SIZE)
        CHECKPOINT.pack_into(
            buf,
            0,
            0,
            CHECKPOINT_MAGIC,
            *CHECKPOINT_FORMAT,
            self.sequence,
            self.checkpoint.pack_u64(),
            self.signature.pack(),
            self.base.encode("ascii"),
            self.full_backup.pack_u64(),
            self.full_backup_us,
            self.inc_backup.pack_u64(),
            self.inc_backup_us,
            self.written_us,
            self.log_file_size,
            self.flags,
        )
        attach = pack_attach_list(list(self.attached), CHECKPOINT_COPY_SIZE - CHECKPOINT.size)
        buf[CHECKPOINT.size : CHECKPOINT.size + len(attach)] = attach
        seal_checksum(buf)
        return bytes(buf)


class CheckpointCopyError(ValueError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def unpack_checkpoint_copy(buf: bytes | bytearray | memoryview, base_offset: int = 0) -> Checkpoint:
    """Parse one copy; raises CheckpointCopyError naming the file offset of the problem."""
    if len(buf) < CHECKPOINT_COPY_SIZE:
        raise CheckpointCopyError(f"copy is {len(buf)} bytes, expected {CHECKPOINT_COPY_SIZE}", base_offset)
    stored, computed = stored_and_computed_checksum(memoryview(buf)[:CHECKPOINT_COPY_SIZE])
    if stored != computed:
        raise CheckpointCopyError(
            f"checksum mismatch at offset {base_offset}: stored 0x{stored:08x}, computed 0x{computed:08x}",
            base_offset,
        )
    fields = CHECKPOINT.unpack_from(buf, 0)
    (_c, magic, major, _minor, seq, ckpt, sig, base, full, full_us, inc, inc_us, written, size, flags) = fields
    if magic != CHECKPOINT_MAGIC:
        raise CheckpointCopyError(f"not a ShadowStore checkpoint (magic {magic!r})", base_offset + 4)
    if major != CHECKPOINT_FORMAT[0]:
        raise CheckpointCopyError(f"checkpoint format version {major} is not supported", base_offset + 12)
    try:
        attached = unpack_attach_list(buf, CHECKPOINT.size, CHECKPOINT_COPY_SIZE)
    except ValueError as exc:
        raise CheckpointCopyError(str(exc), base_offset + CHECKPOINT.size) from None
    return Checkpoint(
        seq,
        LgPos.from_u64(ckpt),
        Signature.unpack_from(sig),
        base.rstrip(b"\0").decode("ascii", "replace"),
        LgPos.from_u64(full),
        full_us,
        LgPos.from_u64(inc),
        inc_us,
        written,
        size,
        flags,
        list(attached),
    )


def choose_checkpoint(data: bytes) -> tuple[Checkpoint, list[CheckpointCopyError]]:
    """The newest valid copy in a checkpoint file and the errors of the copies that were not valid.

    Raises CheckpointCopyError describing both copies when neither is valid.
    """
    copies: list[Checkpoint] = []
    errors: list[CheckpointCopyError] = []
    for index in range(2):
        start = index * CHECKPOINT_COPY_SIZE
        try:
            copies.append(unpack_checkpoint_copy(data[start : start + CHECKPOINT_COPY_SIZE], start))
        except CheckpointCopyError as exc:
            errors.append(exc)
    if not copies:
        raise CheckpointCopyError("; ".join(f"copy at offset {e.offset}: {e}" for e in errors), errors[0].offset)
    return max(copies, key=lambda c: c.sequence), errors
