"""Creating the files of a storage group: a new log stream, reserve logs, new store files.

Each file appears whole or not at all: it is written under a temporary name, synced, renamed into place, and
its directory synced. A file set aside goes to ``<log folder>/quarantine``, durably, and is never written over.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable

from shadowstore.config import SgConfig
from shadowstore.errors import DiskFullError, DiskIOError, InvalidParameterError, LogDiskFullError, ShadowStoreError
from shadowstore.format.common import LgPos, Signature, now_us
from shadowstore.format.dbheader import (
    HEADER_PAGES,
    STATE_CLEAN_SHUTDOWN,
    DbHeader,
)
from shadowstore.format.logfile import (
    FLAG_CIRCULAR,
    LOG_HEADER_SIZE,
    RESERVE_LOG_NAMES,
    LogHeader,
    archived_log_name,
    current_log_name,
)
from shadowstore.io.fs import FileHandle, FileStat, FileSystem
from shadowstore.io.replace import replace_durably

_ZEROS = bytes(1 << 20)


def write_zero_file(fs: FileSystem, path: str, size: int, head: bytes = b"") -> None:
    """Create ``path`` as ``head`` followed by zeros up to ``size``, durably, through a temporary file of its
    own (:func:`shadowstore.io.replace.replace_durably`).

    Raises OSError (ENOSPC when the disk is full); the temporary file is removed on failure.
    """

    def fill(handle: FileHandle) -> None:
        zero_fill(handle, size)
        if head:
            handle.pwrite(head, 0)

    replace_durably(fs, path, fill)


def zero_fill(handle: FileHandle, size: int) -> None:
    """Write zeros over ``[0, size)`` of ``handle`` (really written, so later writes need no allocation)."""
    offset = 0
    while offset < size:
        n = min(len(_ZEROS), size - offset)
        handle.pwrite(_ZEROS if n == len(_ZEROS) else _ZEROS[:n], offset)
        offset += n


def create_log_stream(
    fs: FileSystem,
    log_dir: str,
    base: str,
    file_size: int,
    page_size: int,
    circular: bool,
    first_gen: int = 1,
    after_us: int = 0,
) -> LogHeader:
    """Write the first generation ``E00.log`` of a new stream with a new log signature, created after
    ``after_us`` (the creation time of the newest stream it follows: format/common.Signature.new)."""
    header = LogHeader(
        generation=first_gen,
        file_size=file_size,
        page_size=page_size,
        created_us=now_us(),
        prev_created_us=0,
        signature=Signature.new(after_us),
        checkpoint=LgPos(first_gen, LOG_HEADER_SIZE),
        flags=FLAG_CIRCULAR if circular else 0,
        base=base,
        attached=[],
    )
    try:
        write_zero_file(fs, os.path.join(log_dir, current_log_name(base)), file_size, header.pack())
    except OSError as exc:
        raise _disk_error(exc, f"creating the first log file in {log_dir}") from exc
    return header


def start_log_stream(fs: FileSystem, config: SgConfig, first_gen: int = 1, after_us: int = 0) -> LogHeader:
    """A new log stream for storage group ``config``: its first log ``E00.log`` (generation ``first_gen``,
    a new log signature created after ``after_us``) and the reserve logs. The caller writes the checkpoint
    file."""
    header = create_log_stream(
        fs,
        config.log_dir,
        config.log_base,
        config.log_file_size,
        config.page_size,
        config.circular_logging,
        first_gen=first_gen,
        after_us=after_us,
    )
    ensure_reserve_logs(fs, config.log_dir, config.log_file_size)
    return header


def ensure_reserve_logs(fs: FileSystem, log_dir: str, file_size: int) -> list[str]:
    """Create missing reserve logs; returns the names created. Raises LogDiskFullError when there is no room."""
    created = []
    for name in RESERVE_LOG_NAMES:
        path = os.path.join(log_dir, name)
        st = fs.stat(path)
        if st is not None and st.size == file_size:
            continue
        try:
            write_zero_file(fs, path, file_size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise LogDiskFullError(
                    f"there is no room in {log_dir} for the reserve log {name} ({file_size} bytes)",
                    hint="free space on the log disk, or move the storage group to a disk with room: shadowstore "
                    "sg move '<storage group>' --to <folder>; then mount it again",
                ) from exc
            raise _disk_error(exc, f"creating reserve log {path}") from exc
        created.append(name)
    return created


def quarantine(fs: FileSystem, path: str, log_dir: str) -> str:
    """Move ``path`` into ``<log folder>/quarantine`` under a unique name (never delete); returns the new path.

    The move is durable when this returns: the quarantine folder and the folder ``path`` left are synced, so
    the caller may put something else under ``path`` at once. Raises OSError."""
    folder = os.path.join(log_dir, "quarantine")
    fs.makedirs(folder)
    target = free_name(fs, os.path.join(folder, f"{os.path.basename(path)}.{now_us()}"))
    fs.rename(path, target)
    fs.fsync_dir(folder)
    fs.fsync_dir(os.path.dirname(path))
    return target


def free_name(fs: FileSystem, path: str) -> str:
    """``path``, or ``path.1``, ``path.2`` ...: the first that does not exist (for files set aside, never
    written over)."""
    candidate, n = path, 1
    while fs.exists(candidate):
        candidate = f"{path}.{n}"
        n += 1
    return candidate


def install_generation(
    fs: FileSystem,
    log_dir: str,
    base: str,
    held: FileHandle,
    held_gen: int,
    prepared: str,
    file_size: int,
    on_write_back: Callable[[str, str], None],
) -> FileStat | None:
    """Steps 4-6 of a log roll: archive the current log ``held`` (generation ``held_gen``) under its own name,
    move the ``prepared`` next log (header written and synced) to the current name, sync the folder. Returns
    what the archived file is, from the open file (it may be deleted before anyone looks by name).

    If someone deleted, moved or replaced the current log while it was open, the file held still has every
    record of its generation: it is written back under its archived name (``on_write_back(current, archived)``)
    so that the stream stays whole, and whatever took its name is quarantined, as is a stray file that sits
    where the archived log goes.
    """
    current = os.path.join(log_dir, current_log_name(base))
    archived = os.path.join(log_dir, archived_log_name(base, held_gen))
    if fs.exists(archived):
        # why: never let a stray file take a place in the stream; keep it for the user to look at.
        quarantine(fs, archived, log_dir)
    closed: FileStat | None
    st, mine = fs.stat(current), held.stat()
    if st is not None and (st.dev, st.ino) == (mine.dev, mine.ino):
        fs.rename(current, archived)
        closed = held.stat()
    else:
        if fs.exists(current):
            quarantine(fs, current, log_dir)
        write_zero_file(fs, archived, 0, held.pread(file_size, 0))
        on_write_back(current, archived)
        closed = fs.stat(archived)
    fs.crash_point("log.roll.after_archive_rename")
    fs.rename(prepared, current)
    fs.crash_point("log.roll.after_current_rename")
    fs.fsync_dir(log_dir)
    fs.crash_point("log.roll.after_dir_sync")
    return closed


def release_spare_reserve(fs: FileSystem, log_dir: str) -> str | None:
    """Delete the reserve log that is not in use (the storage group is shutting down on a full disk).

    It holds nothing but zeros; the next mount creates it again. Returns its name, or None if none is left.
    """
    for name in reversed(RESERVE_LOG_NAMES):
        path = os.path.join(log_dir, name)
        if fs.exists(path):
            fs.unlink(path)
            fs.fsync_dir(log_dir)
            return name
    return None


def create_store_file(
    fs: FileSystem, path: str, page_size: int, dbid: int, log_signature: Signature, consistent_at: LgPos
) -> DbHeader:
    """A new, empty store in Clean Shutdown (no tables), bound to ``log_signature``."""
    if fs.exists(path):
        raise InvalidParameterError(f"{path} already exists; choose another file name or move it aside")
    now = now_us()
    header = DbHeader(
        page_size=page_size,
        state=STATE_CLEAN_SHUTDOWN,
        sequence=1,
        dbid=dbid,
        db_signature=Signature.new(),
        log_signature=log_signature,
        last_consistent=consistent_at,
        last_consistent_us=now,
        page_count=HEADER_PAGES,
        created_us=now,
    )
    page = header.pack()
    try:
        write_zero_file(fs, path, 0, page + page)
    except OSError as exc:
        raise _disk_error(exc, f"creating {path}", DiskFullError) from exc
    return header


def _disk_error(exc: OSError, doing: str, full: type[ShadowStoreError] = LogDiskFullError) -> ShadowStoreError:
    if exc.errno == errno.ENOSPC:
        return full(f"no space left while {doing}")
    return DiskIOError(f"I/O error while {doing}: {os.strerror(exc.errno or 0)}")


def delete_generations(
    fs: FileSystem,
    config: SgConfig,
    generations: Iterable[int],
    deleted: list[int],
    missing: list[int],
    crash_point: str | None = None,
) -> None:
    """Delete archived generations of ``config``'s log stream, appending each to ``deleted`` or, when it was
    already gone, to ``missing``. Not synced: the caller syncs the folder. Raises DiskIOError when one cannot
    be deleted (those before it are)."""
    for gen in generations:
        path = os.path.join(config.log_dir, archived_log_name(config.log_base, gen))
        try:
            fs.unlink(path)
            deleted.append(gen)
        except FileNotFoundError:
            missing.append(gen)
        except OSError as exc:
            raise DiskIOError(f"could not delete log file {path}: {os.strerror(exc.errno or 0)}") from exc
        if crash_point is not None:
            fs.crash_point(crash_point)
