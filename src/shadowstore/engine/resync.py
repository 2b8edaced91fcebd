"""Making durable what a mount is about to build on.

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

from shadowstore.config import SgConfig
from shadowstore.engine.logreader import Generation
from shadowstore.io.fs import FileSystem, opened


def sync_folders(fs: FileSystem, config: SgConfig) -> None:
    """fsync the log, system and data folders of ``config`` (each once)."""
    for folder in dict.fromkeys((config.log_dir, config.system_dir, config.data_dir)):
        fs.fsync_dir(folder)


def resync_last_block(fs: FileSystem, path: str, scan: Generation) -> None:
    """Rewrite the last valid block of the current log ``path`` (scanned as ``scan``) and fdatasync it."""
    if scan.last_block is None:
        return
    with opened(fs, path, readonly=False) as handle:
        length = scan.end_offset - scan.last_block
        handle.pwrite(handle.pread(length, scan.last_block), scan.last_block)
        handle.fdatasync()
