"""The files the next log generation can go to: ``E00tmp.log``, prepared ahead, and the reserve logs.

A background thread zero-fills ``E00tmp.log`` to the log size and syncs it after every roll, so that a roll
only writes a header and renames. If it is not ready when a roll needs it, the roll prepares it itself; if the
disk is full, a reserve log (``res1.log``, ``res2.log``: zero-filled at mount) is taken instead.

``lock`` is held by a roll from taking the file until it is ``E00.log``, so that the thread never recreates
``E00tmp.log`` under a rename in progress (the health check takes it too, to see no roll half done).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading

from shadowstore.engine import layout
from shadowstore.errors import LogDiskFullError
from shadowstore.events import EventLog
from shadowstore.format.logfile import RESERVE_LOG_NAMES, current_log_name, tmp_log_name
from shadowstore.io.fs import FileHandle, FileSystem


class NextLogFiles:
    """Prepares ``E00tmp.log`` ahead of time and hands out the file for the next generation."""

    def __init__(self, fs: FileSystem, log_dir: str, base: str, file_size: int, events: EventLog, sg: str) -> None:
        self.fs = fs
        self.log_dir = log_dir
        self.base = base
        self.file_size = file_size
        self.events = events
        self.sg = sg
        self.lock = threading.Lock()
        self.tmp_path = os.path.join(log_dir, tmp_log_name(base))
        self._prepared: FileHandle | None = None
        self._wanted = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"log-prepare {self.sg}", daemon=True)
        self._thread.start()
        self._wanted.set()

    def stop(self) -> None:
        self._stop = True
        self._wanted.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self.lock:
            if self._prepared is not None:
                self._prepared.close()
                self._prepared = None

    def room(self) -> int:
        """How many more generations have a file: the prepared ``E00tmp.log`` and as many log files as the free
        space holds, the reserve logs left out. Looks without ``lock``: a file being prepared counts as space
        taken, so this may be one off either way; the reserve logs cover that."""
        ready = 1 if self._prepared is not None else 0
        try:
            return ready + self.fs.free_space(self.log_dir) // self.file_size
        except OSError:
            return 1 << 30  # why: no answer is no reason to refuse; a roll still finds the disk full itself

    def want(self) -> None:
        """Prepare the next ``E00tmp.log`` now (after a roll used the last one)."""
        self._wanted.set()

    def take(self, generation: int) -> tuple[FileHandle, str, bool]:
        """The file generation ``generation`` goes to: (handle, path, whether it is a reserve log).

        Requires: ``lock`` is held. Raises LogDiskFullError (event 429) when the disk is full and no reserve
        log is left, OSError for other failures.
        """
        if self._prepared is not None:
            handle, self._prepared = self._prepared, None
            return handle, self.tmp_path, False
        try:
            return self._prepare(), self.tmp_path, False
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        for name in RESERVE_LOG_NAMES:
            path = os.path.join(self.log_dir, name)
            st = self.fs.stat(path)
            if st is not None and st.size == self.file_size:
                return self.fs.open(path), path, True
        self.events.emit(429, sg=self.sg, file=current_log_name(self.base))
        raise LogDiskFullError(
            f"the log disk of {self.sg} ({self.log_dir}) is full and no reserve log is left for generation {generation}"
        )

    def _prepare(self) -> FileHandle:
        """Create E00tmp.log zero-filled to the log size and synced. Requires: ``lock`` is held."""
        path = self.tmp_path
        if self.fs.exists(path):
            self.fs.unlink(path)
        handle = self.fs.open(path, create=True)
        try:
            layout.zero_fill(handle, self.file_size)
            handle.fdatasync()
        except OSError:
            handle.close()
            with contextlib.suppress(OSError):
                self.fs.unlink(path)
            raise
        return handle

    def _loop(self) -> None:
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._stop:
                    return
                with self.lock:
                    if self._prepared is not None:
                        continue
                    try:
                        self._prepared = self._prepare()
                    except OSError:
                        # why: a full disk is handled by the roll itself (reserve logs); so is anything else.
                        continue
        except BaseException:
            # why: a simulated power loss in tests (or interpreter exit) ends the thread quietly.
            return
