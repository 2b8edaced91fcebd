"""The per-run backup report, ``<home>/reports/backupNN.log``, written as the run goes (like NTBackup's).

A person reads it: when it started, each file with its size, each error in the shape "The 'Information Store'
returned '<message>' from a call to '<call>()' additional data '<code>'", and how it ended. A run that was
killed leaves its report up to the last line written.
"""

from __future__ import annotations

import datetime as dt
import os
import re

from shadowstore.errors import ShadowStoreError
from shadowstore.io.fs import FileSystem


class BackupReport:
    """The report of one run. Creating it creates its file, ``backupNN.log`` with the next free number.

    Raises OSError when the reports folder cannot be made or the file cannot be created; after that, lines
    that cannot be written are dropped (the report must never be the reason a backup fails).
    """

    def __init__(self, fs: FileSystem, home: str) -> None:
        self.fs = fs
        self.folder = os.path.join(home, "reports")
        fs.makedirs(self.folder)
        self.path = self._create()
        self.errors = 0

    def _create(self) -> str:
        """Create the next ``backupNN.log`` exclusively and return its path. Why exclusively: two runs started
        together list the same numbers; the one that loses the race to create a file takes the next number."""
        number = self._highest_number() + 1
        while True:
            path = os.path.join(self.folder, f"backup{number:02d}.log")
            try:
                self.fs.open(path, create=True, exclusive=True).close()
            except FileExistsError:
                number += 1
                continue
            return path

    def _highest_number(self) -> int:
        names = self.fs.listdir(self.folder)
        return max((int(m.group(1)) for n in names if (m := re.fullmatch(r"backup(\d+)\.log", n))), default=0)

    def line(self, text: str = "") -> None:
        try:
            self.fs.append(self.path, (text + "\n").encode())
        except OSError:
            return  # the report must never be the reason a backup fails

    def started(self, target: str, kind: str, groups: list[str]) -> None:
        now = dt.datetime.now(dt.UTC)
        self.line("Backup Status")
        self.line("Operation: Backup")
        self.line(f"Active backup destination: {target}")
        self.line(f"Backup type: {kind} (streaming)")
        self.line(f"Storage groups: {', '.join(groups)}")
        self.line()
        self.line(f"Backup started on {now:%m/%d/%Y} at {now:%H:%M:%S} UTC.")

    def storage_group(self, name: str, backup_id: str) -> None:
        self.line()
        self.line(f'Backup of "{name}" into set {backup_id}')

    def file(self, source: str, size: int, stored: str, stored_size: int) -> None:
        self.line(f"  {source:<24} {size:>15,} bytes  ->  {stored} ({stored_size:,} bytes stored)")

    def note(self, text: str) -> None:
        self.line(f"  {text}")

    def error(self, call: str, exc: ShadowStoreError) -> None:
        """One line for ``exc`` (its message's line breaks become spaces: an UnexpectedError's too, whose
        traceback is never written here), then a line with its hint if it has one."""
        self.errors += 1
        code = f"{exc.code} {exc.code_name}" if exc.code else type(exc).__name__
        message = " ".join(exc.message.split())
        self.line(f"The 'Information Store' returned '{message}' from a call to '{call}()' additional data '{code}'")
        if exc.hint:
            self.line(f"  What to do: {' '.join(exc.hint.split())}")

    def finished(self, files: int, total: int, seconds: float) -> None:
        now = dt.datetime.now(dt.UTC)
        self.line()
        status = "completed" if self.errors == 0 else f"failed with {self.errors} error(s)"
        self.line(f"Backup {status} on {now:%m/%d/%Y} at {now:%H:%M:%S} UTC.")
        self.line(f"Files:            {files}")
        self.line(f"Bytes:            {total:,}")
        self.line(f"Time:             {seconds:.1f} seconds")
        self.line("-" * 60)
