"""The disk side of the log writer: flush blocks written into the current file, synced, and log rolls.

Only the flush leader of engine/logwriter.py calls ``write`` (one at a time), with the blocks and roll markers
laid out since the last flush. A block goes to its generation's file at its offset, starting on a fresh
sector, so no durable sector is ever rewritten; before anything goes to a new generation the current one is
synced and the stream rolls. A roll:

1. syncs the current generation;
2. takes the prepared ``E00tmp.log`` (zero-filled ahead of time by a background thread, engine/nextlog.py), or
   prepares it now, or, if the disk is full, a reserve log ``res1.log``/``res2.log``;
3. writes and syncs the new generation's header (generation, signature, creation time, previous creation
   time, checkpoint, attached stores): crash point ``log.roll.after_new_header``;
4. renames ``E00.log`` to its archived name: ``log.roll.after_archive_rename``;
5. renames the new file to ``E00.log``: ``log.roll.after_current_rename``;
6. fsyncs the log folder: ``log.roll.after_dir_sync``.

Mounting completes a roll cut between steps 4 and 5 (engine/mountlog.py). Any OSError propagates to the
leader, which takes the writer offline for good.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shadowstore.engine import layout
from shadowstore.engine.nextlog import NextLogFiles
from shadowstore.events import EventLog
from shadowstore.format.common import AttachInfo, LgPos, Signature, now_us
from shadowstore.format.logblock import BLOCK_HEADER, pack_block_header_into
from shadowstore.format.logfile import FLAG_CIRCULAR, FLAG_RESERVE_LOG, LogHeader, current_log_name
from shadowstore.io.fs import FileHandle, FileStat, FileSystem


class Block:
    """A flush block being assembled: ``data`` is the 32-byte header (filled at flush time) and the fragments."""

    __slots__ = ("data", "fragments", "gen", "number", "offset")

    def __init__(self, gen: int, offset: int, number: int) -> None:
        self.gen = gen
        self.offset = offset
        self.number = number
        self.data = bytearray(BLOCK_HEADER.size)
        self.fragments = 0


class Roll:
    """Queue marker: move to generation ``gen`` even if no record is written there yet."""

    __slots__ = ("gen",)

    def __init__(self, gen: int) -> None:
        self.gen = gen


class LogDisk:
    """The current log file and the rolls to the next ones. Not thread-safe: the flush leader owns it, and
    ``stable`` lets another thread look at the current file with no roll in progress."""

    def __init__(
        self,
        *,
        fs: FileSystem,
        log_dir: str,
        base: str,
        signature: Signature,
        file_size: int,
        page_size: int,
        circular: bool,
        events: EventLog,
        sg: str,
        attached: Callable[[], list[AttachInfo]],
        checkpoint: Callable[[], LgPos],
        created: dict[int, int],
    ) -> None:
        self.fs = fs
        self.log_dir = log_dir
        self.base = base
        self.signature = signature
        self.file_size = file_size
        self.page_size = page_size
        self.circular = circular
        self.events = events
        self.sg = sg
        self._attached = attached
        self._checkpoint = checkpoint
        self._created = created  # creation times the writer fixed for generations not yet on disk
        # called after each roll with the new generation and the closed file's identity
        self.on_roll: list[Callable[[int, FileStat | None], None]] = []
        self.on_reserve: Callable[[str], None] = lambda path: None  # a roll went into a reserve log
        self.generation = 0
        self.file: FileHandle | None = None
        self.header: LogHeader | None = None
        self.rolls = 0
        self._dirty = False
        self._next = NextLogFiles(fs, log_dir, base, file_size, events, sg)

    def start(self, header: LogHeader, handle: FileHandle) -> None:
        """Continue in ``handle``, the current log of generation ``header.generation``."""
        self.generation = header.generation
        self.file = handle
        self.header = header
        self._next.start()

    def close(self) -> None:
        """Stop preparing the next file and close the current one. Requires: no ``write`` is running."""
        self._next.stop()
        if self.file is not None:
            self.file.close()
            self.file = None

    def room(self) -> int:
        """Generations past the current file the disk has files for, the reserve logs left out."""
        return self._next.room()

    @contextmanager
    def stable(self) -> Iterator[tuple[FileHandle | None, LogHeader | None, int]]:
        """(current file, its header, its generation) with no log roll in progress while the block runs."""
        with self._next.lock:
            yield self.file, self.header, self.generation

    def write(self, work: list[Block | Roll]) -> None:
        """Write and sync ``work``, rolling as it reaches new generations. Raises OSError."""
        assert self.file is not None
        crash_point = self.fs.crash_point
        for item in work:
            if item.gen != self.generation:
                self._sync_current()
                while self.generation < item.gen:
                    self._roll_to(self.generation + 1)
            if isinstance(item, Roll):
                continue
            data = item.data
            length = len(data) - BLOCK_HEADER.size
            pack_block_header_into(data, item.gen, item.number, length, item.fragments, now_us())
            # The rest of the last sector is not written: the file is zero-filled before it becomes current
            # (and a torn tail is zeroed at mount), so those bytes are zeros on disk already.
            self.file.pwrite(data, item.offset)
            self._dirty = True
            crash_point("log.flush.after_write")
        self._sync_current()
        crash_point("log.flush.after_sync")

    def _sync_current(self) -> None:
        if self._dirty:
            assert self.file is not None
            self.file.fdatasync()
            self._dirty = False

    def _roll_to(self, gen: int) -> None:
        assert self.header is not None and self.file is not None
        # The preparation lock is held from taking the next file until it is E00.log (see nextlog.py).
        with self._next.lock:
            handle, path, from_reserve = self._next.take(gen)
            flags = FLAG_CIRCULAR if self.circular else 0
            if from_reserve:
                flags |= FLAG_RESERVE_LOG
            header = LogHeader(
                generation=gen,
                file_size=self.file_size,
                page_size=self.page_size,
                created_us=max(self._created.pop(gen, 0), self.header.created_us + 1),
                prev_created_us=self.header.created_us,
                signature=self.signature,
                checkpoint=self._checkpoint(),
                flags=flags,
                base=self.base,
                attached=self._attached(),
            )
            handle.pwrite(header.pack(), 0)
            handle.fdatasync()
            self.fs.crash_point("log.roll.after_new_header")
            closed = layout.install_generation(
                self.fs, self.log_dir, self.base, self.file, self.generation, path, self.file_size, self._wrote_back
            )
            handle.path = os.path.join(self.log_dir, current_log_name(self.base))  # its name from now on
            old = self.file
            self.file, self.header, self.generation = handle, header, gen
            self.rolls += 1
            old.close()
        for callback in self.on_roll:
            callback(gen, closed)
        if from_reserve:
            self.on_reserve(path)
        else:
            self._next.want()

    def _wrote_back(self, current: str, archived: str) -> None:
        self.events.emit(
            1011,
            sg=self.sg,
            file=current,
            gen=self.generation,
            detail=f"Its content was written back as {os.path.basename(archived)} from the open file.",
        )
