"""The log side of a mount: refuse a storage group a restore is half-way through replacing, find the current
log, finish a roll a crash cut short, start a new stream when there are no logs at all, and set a torn tail
aside.

Pure decisions plus the few file operations they need; ``StorageGroup.mount`` calls them in order.
"""

from __future__ import annotations

import json
import os
from contextlib import suppress

from shadowstore.config import SgConfig
from shadowstore.engine import layout
from shadowstore.engine.logreader import Generation, RecordAssembler, scan_generation
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.errors import (
    MissingLogFileError,
    RequiredLogFilesMissingError,
    RestoreInProgressError,
    ShadowStoreError,
)
from shadowstore.events import EventLog
from shadowstore.format.logfile import LogHeader, current_log_name
from shadowstore.format.logrecord import KIND_TXN, txn_header
from shadowstore.io.fs import FileHandle, FileSystem, read_file


def restore_journal_path(config: SgConfig) -> str:
    """Where a restore into this storage group keeps its journal (restore/run.py writes it)."""
    return os.path.join(config.system_dir, "restore", "restore.json")


def refuse_interrupted_restore(fs: FileSystem, config: SgConfig) -> None:
    """A restore killed while moving files into the storage group leaves some stores restored and some not:
    mounting that mix would serve data from two points in time. Raises RestoreInProgressError then; a restore
    interrupted earlier has not touched the storage group and does not stop a mount."""
    path = restore_journal_path(config)
    if not fs.exists(path):
        return
    try:
        journal = json.loads(read_file(fs, path))
    except ValueError:
        return  # why: the journal is replaced atomically; a damaged one predates any placing of files
    if journal.get("phase") == "place":
        plan = journal.get("plan", {})
        raise RestoreInProgressError(
            f"a restore of {plan.get('sg')!r} into {config.name!r} was interrupted while putting its files in "
            f"place ({path}); mounting now would mix restored and unrestored stores",
            hint=f"finish it: shadowstore restore finish --sg {config.name!r} (or run the same restore again)",
        )


def complete_interrupted_roll(fs: FileSystem, config: SgConfig, logs: LogSet) -> LogSet:
    """A crash between renaming E00.log away and renaming the next file in leaves E00tmp.log holding the next
    generation's header and no E00.log: finish that rename. Anything else is left as it is."""
    if logs.current is not None or logs.tmp is None or not logs.archived:
        return logs
    try:
        tmp_header = read_header(fs, logs.tmp)
        last = read_header(fs, logs.archived[max(logs.archived)])
    except ShadowStoreError:
        return logs
    if tmp_header.generation == last.generation + 1 and tmp_header.prev_created_us == last.created_us:
        fs.rename(logs.tmp, os.path.join(config.log_dir, current_log_name(config.log_base)))
        fs.fsync_dir(config.log_dir)
        return LogSet.scan(fs, config.log_dir, config.log_base)
    return logs


def open_current_log(
    fs: FileSystem, config: SgConfig, logs: LogSet, dirty_stores: list[str], events: EventLog, after_us: int = 0
) -> tuple[LogHeader, LogSet]:
    """The current log's header. With no log at all and no store in Dirty Shutdown, a new stream is started,
    created after ``after_us`` (the creation time of the stream the stores were last attached to).

    Raises MissingLogFileError (-528, event 450) when E00.log is missing but archived generations exist, and
    RequiredLogFilesMissingError (-543) when stores in Dirty Shutdown (``dirty_stores``) need logs that are gone.
    """
    if logs.current is not None:
        return read_header(fs, logs.current), logs
    current = os.path.join(config.log_dir, current_log_name(config.log_base))
    if logs.archived or dirty_stores:
        events.emit(450, sg=config.name, file=current_log_name(config.log_base))
        error = MissingLogFileError if logs.archived else RequiredLogFilesMissingError
        raise error(
            f"the current log file {current} is missing"
            + (f"; archived generations {min(logs.archived)}-{max(logs.archived)} exist" if logs.archived else "")
            + (f"; stores in Dirty Shutdown need it: {', '.join(dirty_stores)}" if dirty_stores else ""),
        )
    layout.start_log_stream(fs, config, after_us=after_us)
    logs = LogSet.scan(fs, config.log_dir, config.log_base)
    assert logs.current is not None
    return read_header(fs, logs.current), logs


def quarantine_torn_tail(fs: FileSystem, config: SgConfig, scan: Generation, handle: FileHandle) -> None:
    """Copy the bytes of a torn last flush to ``<log folder>/quarantine``, then zero them (durably), so that no
    later reader mistakes them for anything and new blocks may be written over them.

    The copy is durable before the bytes are zeroed (the folder is made durably, the copy written through a
    synced temporary file and the folder synced); a copy an earlier mount made of the same place is kept."""
    if scan.torn is None or scan.torn.dropped <= 0:
        return
    data = handle.pread(scan.torn.dropped, scan.torn.offset)
    folder = os.path.join(config.log_dir, "quarantine")
    fs.makedirs(folder)
    name = f"{config.log_base}-gen{scan.header.generation:X}-offset{scan.torn.offset}.torn"
    layout.write_zero_file(fs, layout.free_name(fs, os.path.join(folder, name)), 0, data)
    handle.pwrite(bytes(len(data)), scan.torn.offset)
    handle.fdatasync()


def newest_time(fs: FileSystem, logs: LogSet, current: Generation) -> int:
    """The newest time the stream has given out: the current generation's creation or the commit time of a
    transaction in it (the generation before it is read too, for a record begun there), as the log writer
    gives out both in log order. The writer goes on after it, so that commit times rise in log order (a
    restore to a point in time relies on that) even when the clock is now behind the stream's last commits,
    and a store copy records its newest commit from it. Not a block's flush time: that is later than the
    commits, and a copy that claimed to hold commits that late would be refused for a restore to its own
    last commit."""
    newest = current.header.created_us
    feed = [current]
    before = logs.archived.get(current.header.generation - 1)
    if before is not None:
        with suppress(ShadowStoreError, OSError):  # why: a damaged earlier log only hides a record begun there
            feed.insert(
                0, scan_generation(before, read_file(fs, before), read_header(fs, before), tolerate_torn_tail=False)
            )
    assembler = RecordAssembler()
    for gen in feed:
        for record in assembler.feed(gen):
            if record.data[0] == KIND_TXN:
                newest = max(newest, txn_header(record.data).commit_us)
    return newest
