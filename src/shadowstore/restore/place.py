"""Putting recovered store files in their place, and giving them a log stream to continue on.

Every step here is a rename or the creation of a new file, and each can run again after a crash: a store file
still in the staging folder is moved into place (what was there first goes to the quarantine folder, never
deleted); the log stream is replaced by moving every log file, the reserve logs and the checkpoint file of the
old stream into the quarantine folder and writing the first generation of a new one with a new log signature.
"""

from __future__ import annotations

import os
from contextlib import suppress

from shadowstore.config import SgConfig
from shadowstore.engine import layout
from shadowstore.engine.checkpointfile import CheckpointFile
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.errors import RestoreError, ShadowStoreError
from shadowstore.format.checkpoint import Checkpoint
from shadowstore.format.common import LgPos, now_us
from shadowstore.format.logfile import FLAG_CIRCULAR, LOG_HEADER_SIZE, LogHeader, checkpoint_name
from shadowstore.io.fs import FileSystem


def move_store_into_place(fs: FileSystem, staged: str, destination: str, quarantine: str) -> bool:
    """Move ``staged`` to ``destination``; a file already there goes to ``quarantine`` first. Returns False when
    there was nothing left to move (an earlier run moved it). Raises RestoreError when both the destination and
    its quarantined copy exist while the staged file is still there: someone changed the files between runs,
    and guessing which to keep could lose one. Each move is durable before the next step: both folders it
    touched are synced."""
    if not fs.exists(staged):
        return False
    if fs.exists(destination):
        kept = os.path.join(quarantine, os.path.basename(destination))
        if fs.exists(kept):
            raise RestoreError(
                f"{destination} and {kept} both exist while {staged} waits to be restored",
                hint="move one of them away and run the restore again",
            )
        fs.makedirs(quarantine)
        fs.rename(destination, kept)
        fs.fsync_dir(quarantine)
        fs.fsync_dir(os.path.dirname(destination))
    fs.rename(staged, destination)
    fs.fsync_dir(os.path.dirname(destination))
    fs.fsync_dir(os.path.dirname(staged))
    return True


def replace_log_stream(
    fs: FileSystem,
    config: SgConfig,
    quarantine: str,
    first_gen: int,
    *,
    checkpoint_quarantine: str | None = None,
    after_us: int = 0,
) -> LogHeader:
    """Quarantine the storage group's log files (into ``quarantine``/logs, on the log folder's file system) and
    checkpoint (into ``checkpoint_quarantine``, on the system folder's; default: beside the logs), then start a
    new stream at ``first_gen`` with a new log signature, its reserve logs and a checkpoint file. Safe to run
    again after a crash (a new stream that was half made is quarantined too).

    The new stream is created after ``after_us`` and after the stream it replaces, whatever the clock says:
    its backups are the newest (format/common.Signature.new)."""
    logs = LogSet.scan(fs, config.log_dir, config.log_base)
    for path in (logs.current, logs.archived.get(max(logs.archived, default=0))):
        if path is not None:
            with suppress(ShadowStoreError):  # why: a damaged log leaves the other times to follow
                after_us = max(after_us, read_header(fs, path).signature.created_us)
    old = [(path, os.path.join(quarantine, "logs")) for path in (*logs.archived.values(), logs.current, logs.tmp)]
    old += [(path, os.path.join(quarantine, "logs")) for path in logs.reserves]
    checkpoint = os.path.join(config.system_dir, checkpoint_name(config.log_base))
    old.append((checkpoint, os.path.join(checkpoint_quarantine or quarantine, "logs")))
    touched: set[str] = set()
    for path, folder in old:
        if path is not None and fs.exists(path):
            fs.makedirs(folder)
            fs.rename(path, layout.free_name(fs, os.path.join(folder, os.path.basename(path))))
            touched |= {folder, os.path.dirname(path)}
    for folder in sorted(touched):
        fs.fsync_dir(folder)
    header = layout.start_log_stream(fs, config, first_gen, after_us)
    fs.fsync_dir(config.log_dir)
    CheckpointFile.create(
        fs,
        os.path.join(config.system_dir, checkpoint_name(config.log_base)),
        Checkpoint(
            sequence=1,
            checkpoint=LgPos(first_gen, LOG_HEADER_SIZE),
            signature=header.signature,
            base=config.log_base,
            written_us=now_us(),
            log_file_size=config.log_file_size,
            flags=FLAG_CIRCULAR if config.circular_logging else 0,
        ),
    )
    return header


def highest_generation(fs: FileSystem, config: SgConfig) -> int:
    """The newest generation in the log folder, the current log's included (0 when there is none)."""
    logs = LogSet.scan(fs, config.log_dir, config.log_base)
    high = max(logs.archived, default=0)
    if logs.current is not None:
        with suppress(ShadowStoreError):  # why: a damaged current log still leaves the archived numbers
            high = max(high, read_header(fs, logs.current).generation)
    return high
