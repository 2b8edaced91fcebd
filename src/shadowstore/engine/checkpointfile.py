"""Reading and writing ``E00.chk`` (format: format/checkpoint.py).

Durability: the file is created whole through a temporary name; after that each update writes the primary
copy, fsyncs, writes the shadow copy, fsyncs (crash points ``chk.after_primary_write``,
``chk.after_primary_sync``). A reader takes the valid copy with the higher sequence number. A failed update is
final, as a store file's is (engine/dbfile.py): ``on_lost_writes`` hears of it before the error is raised.
"""

from __future__ import annotations

import os

from shadowstore.config import SgConfig
from shadowstore.engine.dbfile import LostWrites
from shadowstore.errors import CheckpointCorruptError, CheckpointNotFoundError, DiskIOError
from shadowstore.format.checkpoint import (
    CHECKPOINT_COPY_SIZE,
    Checkpoint,
    CheckpointCopyError,
    choose_checkpoint,
)
from shadowstore.format.common import LGPOS_ZERO, AttachInfo, LgPos, Signature, now_us
from shadowstore.format.logfile import FLAG_CIRCULAR
from shadowstore.io.fs import FileHandle, FileSystem, read_file
from shadowstore.io.replace import atomic_write


def read_checkpoint(fs: FileSystem, path: str) -> tuple[Checkpoint, list[CheckpointCopyError]]:
    """The newest valid copy and the problems of the other one.

    Raises CheckpointNotFoundError (-542) or CheckpointCorruptError (-533, naming both offsets).
    """
    if not fs.exists(path):
        raise CheckpointNotFoundError(f"checkpoint file {path} does not exist")
    data = read_file(fs, path)
    try:
        return choose_checkpoint(data)
    except CheckpointCopyError as exc:
        raise CheckpointCorruptError(f"{path}: both checkpoint copies are damaged: {exc}", file=path) from None


class CheckpointFile:
    """An open checkpoint file that the storage group updates as its checkpoint advances."""

    def __init__(self, fs: FileSystem, path: str, sequence: int, on_lost_writes: LostWrites | None = None) -> None:
        self.fs = fs
        self.path = path
        self.sequence = sequence
        self.on_lost_writes = on_lost_writes
        self._handle: FileHandle | None = None

    @classmethod
    def create(
        cls, fs: FileSystem, path: str, checkpoint: Checkpoint, on_lost_writes: LostWrites | None = None
    ) -> CheckpointFile:
        """Write a new checkpoint file atomically (both copies identical)."""
        copy = checkpoint._replace(sequence=max(1, checkpoint.sequence)).pack()
        try:
            atomic_write(fs, path, copy + copy)
        except OSError as exc:
            raise DiskIOError(f"could not write checkpoint file {path}: {os.strerror(exc.errno or 0)}") from exc
        return cls(fs, path, max(1, checkpoint.sequence), on_lost_writes)

    def write(self, checkpoint: Checkpoint) -> Checkpoint:
        """Store ``checkpoint`` with the next sequence number, primary copy first. Returns what was written."""
        self.sequence += 1
        written = checkpoint._replace(sequence=self.sequence)
        data = written.pack()
        try:
            if self._handle is None:
                self._handle = self.fs.open(self.path)
            self._handle.pwrite(data, 0)
            self.fs.crash_point("chk.after_primary_write")
            self._handle.fdatasync()
            self.fs.crash_point("chk.after_primary_sync")
            self._handle.pwrite(data, CHECKPOINT_COPY_SIZE)
            self._handle.fdatasync()
        except OSError as exc:
            error = DiskIOError(
                f"could not update checkpoint file {self.path}: {os.strerror(exc.errno or 0)}; writes to it may be lost"
            )
            if self.on_lost_writes is not None:
                self.on_lost_writes(self.path, error)
            raise error from exc
        return written

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def checkpoint_record(
    config: SgConfig,
    position: LgPos,
    signature: Signature,
    attached: list[AttachInfo],
    full: tuple[LgPos, int] | None,
    inc: tuple[LgPos, int] | None,
) -> Checkpoint:
    """The record E00.chk holds for a storage group: its checkpoint, log stream, attached stores and the marks
    of the last full and incremental backups (mark, time)."""
    full = full or (LGPOS_ZERO, 0)
    inc = inc or (LGPOS_ZERO, 0)
    return Checkpoint(
        sequence=0,
        checkpoint=position,
        signature=signature,
        base=config.log_base,
        full_backup=full[0],
        full_backup_us=full[1],
        inc_backup=inc[0],
        inc_backup_us=inc[1],
        written_us=now_us(),
        log_file_size=config.log_file_size,
        flags=FLAG_CIRCULAR if config.circular_logging else 0,
        attached=attached,
    )
