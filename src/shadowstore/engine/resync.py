"""What a mount does before it reads anything it will build on: clear the temporary files a crash left, and
make durable what it reads.

A file is replaced through a temporary file beside it (io/replace.py ``replace_durably``: ``.<name>.tmp-<hex>``),
and a crash can leave one behind. Under the storage group's lock nobody else replaces its files, so the mount
removes those of its own files (the logs, reserve logs, E00.chk and the stores) and nothing else.

After a failed fsync Linux reports the error once and marks the unsynced pages clean: the program, and every
program after it until the machine restarts, still reads the lost writes from the page cache. A storage group
mounted again after such a failure (in the same process, or in another one before a reboot) would build on
bytes that are not on the disk: append log blocks after a block that was never written, or let a checkpoint
reuse pages that the header on disk still names. A later power loss then leaves a hole in the log (-501) or a
store whose header points at overwritten pages.

So a mount first makes durable exactly what it read and will rely on:

* the storage group's folders (renames a failed folder fsync left pending);
* the last block of the current log: the writer stops at its first failed fsync, and each flush writes at most
  one block per generation, so only that block can be missing from the disk. It is rewritten from what was
  read and synced; a crash during the rewrite can only tear that last block, which is the normal torn tail;
* each store's header, both copies, from the copy chosen (``DatabaseFile.write_header``; the pages a header
  names were synced before it was written).

Each costs one fsync; a mount that follows no failure rewrites bytes that are already on the disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shadowstore.config import SgConfig
from shadowstore.engine.logreader import Generation
from shadowstore.errors import DiskIOError
from shadowstore.format.logfile import (
    RESERVE_LOG_NAMES,
    checkpoint_name,
    current_log_name,
    parse_archived_log_name,
    tmp_log_name,
)
from shadowstore.io.fs import FileHandle, FileSystem
from shadowstore.io.replace import remove_temporaries_in


def sweep_temporaries(fs: FileSystem, config: SgConfig) -> list[str]:
    """Remove the temporary files a crash left beside this storage group's files; returns their paths.
    Requires: the storage group's lock is held (no one is replacing its files)."""
    removed: list[str] = []
    with _disk_error(f"removing temporary files in {config.log_dir}"):
        _sweep(fs, config, removed)
    return removed


def _sweep(fs: FileSystem, config: SgConfig, removed: list[str]) -> None:
    base = config.log_base
    logs = {current_log_name(base), tmp_log_name(base), *RESERVE_LOG_NAMES}
    system = {checkpoint_name(base), f"{base}.backup.json"}  # E00.chk, a backup session's status file
    stores = {os.path.basename(config.store_path(store)) for store in config.stores}

    def ours(folder: str) -> Callable[[str], bool]:
        def replaces(name: str) -> bool:
            return (
                (folder == config.log_dir and (name in logs or parse_archived_log_name(base, name) is not None))
                or (folder == config.system_dir and name in system)
                or (folder == config.data_dir and name in stores)
            )

        return replaces

    for folder in dict.fromkeys((config.log_dir, config.system_dir, config.data_dir)):
        removed += remove_temporaries_in(fs, folder, ours(folder))


def sync_folders(fs: FileSystem, config: SgConfig) -> None:
    """fsync the log, system and data folders of ``config`` (each once). Raises DiskIOError."""
    for folder in dict.fromkeys((config.log_dir, config.system_dir, config.data_dir)):
        with _disk_error(f"syncing the folder {folder}"):
            fs.fsync_dir(folder)


def resync_last_block(handle: FileHandle, scan: Generation) -> None:
    """Rewrite the last valid block of the current log open as ``handle`` (scanned as ``scan``) and fdatasync
    it. Raises DiskIOError."""
    if scan.last_block is None:
        return
    with _disk_error(f"rewriting the last block of {handle.path}"):
        length = scan.end_offset - scan.last_block
        handle.pwrite(handle.pread(length, scan.last_block), scan.last_block)
        handle.fdatasync()


@contextmanager
def _disk_error(doing: str) -> Iterator[None]:
    """OSError as the DiskIOError a mount fails with: nothing was mounted, and the next mount starts over."""
    try:
        yield
    except OSError as exc:
        raise DiskIOError(
            f"I/O error while {doing} before mounting: {os.strerror(exc.errno or 0)}",
            hint="check the disk, then mount again: nothing was changed that a mount needs",
        ) from exc
