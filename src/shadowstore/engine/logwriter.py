"""Appending to a storage group's log stream: group commit, log roll, prepared and reserve log files.

Appending only lays a record out in memory (``append`` returns its exact log position at once); ``flush``
makes everything appended so far durable. Group commit: committers append under a short lock and then call
``flush``; the first one to find no flush running becomes the leader, writes every pending block and
fdatasyncs, while the others wait and are woken when their position is durable. A flush writes one block per
generation it touches, starting on a fresh sector, so no durable sector is ever rewritten.

The leader writes through engine/logdisk.py, which also rolls to a new generation when a record reaches the
end of a file or ``roll`` was called (its steps and crash points are listed there).

Commit times are given out here, under the append lock (``append(..., time_at=...)``), so that they rise in
log order, and each generation's creation time is fixed when records start going to it: every record of
generation g has a time in [created(g), created(g+1)). A restore to a point in time relies on both: it stops
at the first record after the time, and the logs up to g hold every commit made before created(g+1).

A shadow-copy freeze pauses the writer (``pause``/``resume``, engine/snapshot.py): appends go on in memory and
flushes wait for the thaw, so commits wait and are never refused; when not frozen it costs the leader one
attribute check.

After a roll into a reserve log the writer refuses updates with -529 LogDiskFull (event 428) so that the
storage group can dismount cleanly. Any I/O failure while flushing takes the writer offline for good (an fsync
that failed cannot be retried safely), and so does ``fail`` when another file of the storage group lost
writes; the storage group must be mounted again, which replays the log.
"""

from __future__ import annotations

import _thread
import functools
import struct
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from time import perf_counter_ns

from shadowstore.engine.flushwaits import FlushWaits
from shadowstore.engine.logdisk import Block, LogDisk, Roll
from shadowstore.errors import LogDiskFullError, StorageGroupOfflineError
from shadowstore.events import EventLog
from shadowstore.format.common import AttachInfo, LgPos, Signature, now_us
from shadowstore.format.logblock import (
    BLOCK_HEADER,
    FIRST,
    FRAGMENT_HEADER,
    FULL,
    LAST,
    MIDDLE,
    MIN_FRAGMENT_DATA,
    append_fragment,
    block_span,
    patch_fragment,
)
from shadowstore.format.logfile import (
    LOG_HEADER_SIZE,
    MAX_GENERATION,
    LogHeader,
)
from shadowstore.io.fs import FileHandle, FileSystem

_TIME = struct.Struct("<Q")
_new_lgpos = functools.partial(tuple.__new__, LgPos)  # LgPos without NamedTuple's Python __new__ (hot path)


class LogWriter:
    """The appending side of one log stream. Thread-safe."""

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
        waits: FlushWaits | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.file_size = file_size
        self.events = events
        self.sg = sg
        self.on_disk_full: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._waiters: list[tuple[LgPos, _thread.LockType]] = []
        # Layout state (under _lock).
        self._gen = 0
        self._next_offset = LOG_HEADER_SIZE
        self._next_number = 0
        self._block: Block | None = None
        self._queue: list[Block | Roll] = []
        self._appended = LgPos(0, 0)
        self._flushed = LgPos(0, 0)
        self._flushing = False
        self._handed: _thread.LockType | None = None  # the waiter the lead was handed to, until it leads
        self._writing = False  # a leader is writing or syncing the file (close waits for it)
        self._closing = False
        self._written = threading.Condition(self._lock)  # notified when a leader stops writing, while closing
        # A shadow-copy freeze (engine/snapshot.py) holds every log write: the flush leader waits in _lead.
        self._paused = False
        self._resumed = threading.Condition(self._lock)
        self._failed: BaseException | None = None
        self._refusing_updates = False
        self._last_time = 0  # the newest commit time given out (or generation creation time fixed)
        self._created: dict[int, int] = {}  # creation time fixed for generations not yet on disk
        self.bytes_appended = 0
        self.flushes = 0  # flushes written (each one fdatasync per generation touched)
        self.waits = waits or FlushWaits()  # how long flushes that had to wait waited (a paced backup reads it)
        # The disk side, touched only by the flush leader.
        self._disk = LogDisk(
            fs=fs,
            log_dir=log_dir,
            base=base,
            signature=signature,
            file_size=file_size,
            page_size=page_size,
            circular=circular,
            events=events,
            sg=sg,
            attached=attached,
            checkpoint=checkpoint,
            created=self._created,
        )
        self._disk.on_reserve = lambda _path: self._enter_disk_full()  # a roll went into a reserve log
        # called by the flush leader after each roll with the new generation and the closed file's identity
        self.on_roll = self._disk.on_roll

    # --- life cycle -----------------------------------------------------------------------------------

    def start(
        self, header: LogHeader, handle: FileHandle, end_offset: int, next_block: int, last_time: int = 0
    ) -> None:
        """Continue the stream in ``handle`` (E00.log, generation ``header.generation``) at ``end_offset``; the
        times given out from here are after ``last_time``, the newest the stream already holds."""
        self._gen = header.generation
        self._next_offset = end_offset
        self._next_number = next_block
        self._appended = self._flushed = LgPos(header.generation, end_offset)
        self._last_time = max(header.created_us, last_time)
        self._disk.start(header, handle)

    def close(self) -> None:
        """Flush what was appended, stop the preparation thread and close the current file.

        A flush leader still writing (after a failure fenced the stream, say) is waited for: closing the file
        under it would let its next write land in whatever file reuses the descriptor."""
        try:
            if self._failed is None:
                self.flush()
        finally:
            with self._lock:
                self._closing = True
                while self._writing:
                    self._written.wait()
            self._disk.close()

    # --- state ------------------------------------------------------------------------------------------

    @property
    def tail(self) -> LgPos:
        """Position after the last appended record: where the stream continues."""
        return self._appended

    @property
    def flushed(self) -> LgPos:
        return self._flushed

    @property
    def generation(self) -> int:
        """The generation new records go to (may be ahead of the file named E00.log until the next flush)."""
        return self._gen

    @property
    def disk_generation(self) -> int:
        """The generation of the file named E00.log: on disk, its header durable."""
        return self._disk.generation

    @property
    def current_header(self) -> LogHeader | None:
        return self._disk.header

    @property
    def rolls(self) -> int:
        return self._disk.rolls

    @property
    def last_time(self) -> int:
        """Every record appended so far has a commit time at or before this (microseconds since 1970)."""
        return self._last_time

    @property
    def refusing_updates(self) -> bool:
        return self._refusing_updates

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    def current_file(self) -> FileHandle | None:
        return self._disk.file

    def stable_current(self) -> AbstractContextManager[tuple[FileHandle | None, LogHeader | None, int]]:
        """(current file, its header, its generation) with no log roll in progress while the block runs."""
        return self._disk.stable()

    # --- appending --------------------------------------------------------------------------------------

    def append(
        self, record: bytes | bytearray, *, update: bool = True, time_at: int | None = None
    ) -> tuple[LgPos, LgPos]:
        """Lay ``record`` out in the stream; returns (start, end) positions. Not durable until ``flush``.

        With ``time_at`` the record (a bytearray) gets its commit time, 8 bytes little-endian at that offset,
        given out now: later than every earlier record's and than its generation's creation time. It is also
        written into ``record`` itself, where the caller can read it.

        Raises StorageGroupOfflineError after an I/O failure, LogDiskFullError for an update while the log
        disk is full.
        """
        with self._lock:
            if self._failed is not None or self._disk.file is None or (update and self._refusing_updates):
                self._check_open(update)
            block = self._block or self._open_block()
            size = len(record)
            used = block.offset + len(block.data)
            if self.file_size - used - FRAGMENT_HEADER.size >= size:
                # Fast path: the whole record fits in the open block.
                if time_at is not None:
                    _TIME.pack_into(record, time_at, self._next_time())
                append_fragment(block.data, FULL, record)
                block.fragments += 1
                self._appended = end = _new_lgpos((block.gen, used + FRAGMENT_HEADER.size + size))
                self.bytes_appended += size
                return _new_lgpos((block.gen, used)), end
            if not update or self._disk_has_room(size, used):
                return self._lay_out(record, size, time_at)
        # why outside the lock: entering the disk-full state emits event 428 and starts the orderly dismount
        self._enter_disk_full()
        raise LogDiskFullError(
            f"storage group {self.sg} is refusing updates: its log disk ({self.log_dir}) is full, with no room for "
            "the log files this transaction needs beside the reserve logs, which are kept for a clean shutdown"
        )

    def _disk_has_room(self, size: int, used: int) -> bool:
        """Whether each generation a record of ``size`` bytes would reach past the layout's open file (``used``
        bytes of it taken) has a file to go to: the prepared one or room on the disk. The reserve logs are left
        out: they are for the records already laid out and the shutdown, and a record laid out into more
        generations than there are files takes the storage group offline. Requires: ``_lock`` is held."""
        per_file = (self.file_size - LOG_HEADER_SIZE) * 7 // 8  # why 7/8: block headers and padding, guessed high
        beyond = size - max(0, self.file_size - used - FRAGMENT_HEADER.size)
        last = self._gen + -(-beyond // per_file)
        return last - self._disk.generation <= self._disk.room()

    def _lay_out(self, record: bytes | bytearray, size: int, time_at: int | None) -> tuple[LgPos, LgPos]:
        """The slow path of ``append``: ``record`` in fragments across blocks and generations. Requires:
        ``_lock`` is held."""
        view = memoryview(record)
        start: LgPos | None = None
        first: tuple[Block, int] | None = None  # the block and offset of the first fragment
        while True:
            block = self._block or self._open_block()
            used = block.offset + len(block.data)
            room = self.file_size - used - FRAGMENT_HEADER.size
            if room >= len(view):
                if first is None:
                    start, first = LgPos(block.gen, used), (block, len(block.data))
                append_fragment(block.data, FULL if len(view) == size else LAST, view)
                block.fragments += 1
                end = LgPos(block.gen, used + FRAGMENT_HEADER.size + len(view))
                break
            if room >= MIN_FRAGMENT_DATA:
                if first is None:
                    start, first = LgPos(block.gen, used), (block, len(block.data))
                append_fragment(block.data, FIRST if len(view) == size else MIDDLE, view[:room])
                block.fragments += 1
                view = view[room:]
            self._seal_block()
            self._advance_generation()
        assert start is not None and first is not None
        if time_at is not None:
            # why after the layout: a record that reaches into a new generation must be younger than it
            stamp = _TIME.pack(self._next_time())
            assert isinstance(record, bytearray)
            record[time_at : time_at + _TIME.size] = stamp  # for the caller to read
            patch_fragment(first[0].data, first[1], time_at, stamp)
        self._appended = end
        self.bytes_appended += len(record)
        return start, end

    def fail(self, error: BaseException) -> bool:
        """Stop the stream for good because another file of the storage group lost writes: from now on every
        append and every flush not yet covered raises StorageGroupOfflineError. Returns whether this was the
        first failure."""
        with self._lock:
            if self._failed is not None:
                return False
            self._failed = error
            self._resumed.notify_all()  # why: a leader held by a freeze must find the failure, not write
            waiters, self._waiters = self._waiters, []
        for _target, waiter in waiters:
            waiter.release()  # each one finds the failure, or that a flush running now covered it
        return True

    def pause(self) -> None:
        """Hold every log write until ``resume`` (a shadow-copy freeze, engine/snapshot.py). Appends go on in
        memory; a flush, so a durable commit, waits (the leader in ``_lead``, the others behind it) and is not
        refused. Returns once no leader is writing: from then on no byte reaches the log files."""
        with self._lock:
            self._paused = True
            while self._writing:
                self._written.wait()

    def resume(self) -> None:
        """End ``pause``: the waiting leader writes everything appended meanwhile in one flush."""
        with self._lock:
            self._paused = False
            self._resumed.notify_all()

    def roll(self) -> LgPos:
        """Start a new generation now (the next flush performs the roll); returns the new tail."""
        with self._lock:
            self._check_open(update=False)
            self._seal_block()
            self._advance_generation()
            self._queue.append(Roll(self._gen))
            self._appended = LgPos(self._gen, LOG_HEADER_SIZE)
            return self._appended

    def _check_open(self, update: bool) -> None:
        if self._failed is not None:
            raise StorageGroupOfflineError(
                f"the log stream of {self.sg} is offline after an earlier failure: {self._failed}"
            )
        if self._disk.file is None:
            raise StorageGroupOfflineError(f"the log stream of {self.sg} is closed")
        if update and self._refusing_updates:
            raise LogDiskFullError(
                f"storage group {self.sg} is refusing updates: its log disk ({self.log_dir}) is full"
            )

    def _open_block(self) -> Block:
        if self._next_offset + BLOCK_HEADER.size + FRAGMENT_HEADER.size + MIN_FRAGMENT_DATA > self.file_size:
            self._advance_generation()
        self._block = Block(self._gen, self._next_offset, self._next_number)
        return self._block

    def _seal_block(self) -> None:
        block = self._block
        if block is None:
            return
        self._queue.append(block)
        self._block = None
        self._next_offset = block.offset + block_span(len(block.data) - BLOCK_HEADER.size)
        self._next_number = block.number + 1

    def _advance_generation(self) -> None:
        if self._gen + 1 > MAX_GENERATION:
            raise StorageGroupOfflineError(f"the log stream of {self.sg} has used every generation number")
        self._gen += 1
        self._next_offset = LOG_HEADER_SIZE
        self._next_number = 0
        self._created[self._gen] = self._next_time()

    def _next_time(self) -> int:
        # Requires: _lock is held.
        self._last_time = max(now_us(), self._last_time + 1)
        return self._last_time

    # --- flushing ---------------------------------------------------------------------------------------

    def flush(self, upto: LgPos | None = None) -> LgPos:
        """Make the stream durable at least up to ``upto`` (default: everything appended). Group commit.

        Raises StorageGroupOfflineError (or LogDiskFullError) if this or an earlier flush failed.
        """
        with self._lock:
            target = self._appended if upto is None else upto
            if self._flushed >= target:
                return self._flushed
            self._check_healthy()
            if not self._flushing:
                self._flushing = True
                waiter = None
            else:
                # Wait to be released by a leader: either our records are durable, or the flush failed, or we
                # were handed the lead because our records arrived after the leader took its batch.
                waiter = _thread.allocate_lock()
                waiter.acquire()
                self._waiters.append((target, waiter))
        started = perf_counter_ns()
        flushed = self._durable(target, waiter)
        self.waits.record(perf_counter_ns() - started)
        return flushed

    def _durable(self, target: LgPos, waiter: _thread.LockType | None) -> LgPos:
        """Lead the flush (``waiter`` None) or wait behind the leader until ``target`` is durable."""
        if waiter is not None:
            waiter.acquire()
            with self._lock:
                if self._flushed >= target:
                    return self._flushed
                if self._handed is waiter:
                    self._handed = None
                    if self._failed is not None:  # why: the lead it was handed ends here, unused
                        self._flushing = False
                self._check_healthy()
        return self._lead()

    def _lead(self) -> LgPos:
        """Flush as the leader, then release the waiters it satisfied and hand the lead to one it did not."""
        with self._lock:
            if self._paused:  # why: a freeze holds log writes (engine/snapshot.py); one check when not frozen
                self._wait_resumed()
            self._seal_block()
            work, self._queue = self._queue, []
            end = self._appended
            self._writing = True
        try:
            self._disk.write(work)
        except BaseException as exc:
            with self._lock:
                if self._failed is None:
                    self._failed = exc
                self._flushing = self._writing = False
                if self._closing or self._paused:
                    self._written.notify_all()
                waiters, self._waiters = self._waiters, []
            for _target, waiter in waiters:
                waiter.release()
            if isinstance(exc, OSError):
                raise StorageGroupOfflineError(
                    f"writing the log of {self.sg} failed: {exc}; the storage group is offline"
                ) from exc
            raise
        with self._lock:
            self.flushes += 1
            self._flushed = flushed = max(self._flushed, end)
            self._writing = False
            if self._closing or self._paused:  # why paused: ``pause`` waits for this write to end
                self._written.notify_all()
            if not self._waiters:  # the common case with a single committer
                self._flushing = False
                return flushed
            ready = [w for t, w in self._waiters if t <= flushed]
            self._waiters = [(t, w) for t, w in self._waiters if t > flushed]
            successor = self._waiters.pop(0)[1] if self._waiters else None
            self._handed = successor
            if successor is None:
                self._flushing = False
        for waiter in ready:
            waiter.release()
        if successor is not None:
            successor.release()
        return flushed

    def _wait_resumed(self) -> None:
        # Requires: _lock is held, by the flush leader. Raises (giving up the lead) if the stream failed meanwhile.
        while self._paused and self._failed is None:
            self._resumed.wait()
        if self._failed is not None:
            self._flushing = False
            self._check_healthy()

    def _check_healthy(self) -> None:
        # Requires: _lock is held.
        if self._failed is not None:
            if isinstance(self._failed, LogDiskFullError):
                raise LogDiskFullError(str(self._failed.message))
            raise StorageGroupOfflineError(
                f"the log stream of {self.sg} is offline after an earlier failure: {self._failed}"
            )

    def _enter_disk_full(self) -> None:
        with self._lock:
            first = not self._refusing_updates
            self._refusing_updates = True
        if first:
            self.events.emit(428, sg=self.sg)
            for callback in self.on_disk_full:
                callback()
