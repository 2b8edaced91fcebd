"""Watching the log folder of a mounted storage group.

``LogFolderWatch.check`` compares what is on disk with what the engine wrote: every archived generation it
knows (by device, inode, size and modification time recorded when the file was closed) and the current log
(the path must still lead to the file the engine holds open, with the header it wrote). It returns findings;
the storage group decides what to do (events, and advancing the checkpoint when a needed log is affected).
Each problem is reported once.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from shadowstore.format.logfile import archived_log_name, current_log_name
from shadowstore.io.fs import FileHandle, FileStat, FileSystem

MISSING = "missing"
REPLACED = "replaced"


@dataclass(frozen=True)
class Finding:
    generation: int
    path: str
    problem: str  # MISSING or REPLACED
    current: bool  # the file is (was) E00.log, held open by the log writer


def _identity(st: FileStat) -> tuple[int, int, int, int]:
    return st.dev, st.ino, st.size, st.mtime_ns


class LogFolderWatch:
    def __init__(self, fs: FileSystem, log_dir: str, base: str) -> None:
        self.fs = fs
        self.log_dir = log_dir
        self.base = base
        self._known: dict[int, tuple[int, int, int, int]] = {}
        self._reported: set[tuple[int, str]] = set()
        # why: the maintenance thread checks while a backup thread truncates; a generation forgotten before it
        # is deleted must not be seen as missing by a check already running
        self._lock = threading.Lock()

    def remember(self, generation: int, st: FileStat | None = None) -> None:
        """Record the identity of archived generation ``generation``: ``st`` if given (taken from the open
        file when it was closed), else the file's as it is now."""
        if st is None:
            st = self.fs.stat(os.path.join(self.log_dir, archived_log_name(self.base, generation)))
        if st is not None:
            with self._lock:
                self._known[generation] = _identity(st)

    def forget_below(self, generation: int) -> None:
        """Generations below this are about to be removed on purpose (circular logging, backup truncation):
        call it before deleting them."""
        with self._lock:
            for gen in [g for g in self._known if g < generation]:
                del self._known[gen]

    def check(self, current_gen: int, current: FileHandle | None, header_bytes: bytes | None) -> list[Finding]:
        findings = []
        with self._lock:
            for gen, identity in sorted(self._known.items()):
                path = os.path.join(self.log_dir, archived_log_name(self.base, gen))
                st = self.fs.stat(path)
                problem = MISSING if st is None else REPLACED if _identity(st) != identity else None
                if problem is not None:
                    findings.append(Finding(gen, path, problem, False))
        if current is not None:
            path = os.path.join(self.log_dir, current_log_name(self.base))
            problem = self._current_problem(path, current, header_bytes)
            if problem is not None:
                findings.append(Finding(current_gen, path, problem, True))
        fresh = [f for f in findings if (f.generation, f.problem) not in self._reported]
        self._reported.update((f.generation, f.problem) for f in fresh)
        return fresh

    def _current_problem(self, path: str, current: FileHandle, header_bytes: bytes | None) -> str | None:
        st = self.fs.stat(path)
        if st is None:
            return MISSING
        held = current.stat()
        if (st.dev, st.ino) != (held.dev, held.ino) or held.nlink == 0:
            return REPLACED
        if header_bytes is not None and current.pread(len(header_bytes), 0) != header_bytes:
            return REPLACED
        return None
