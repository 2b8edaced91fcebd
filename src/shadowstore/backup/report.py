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
    def __init__(self, fs: FileSystem, home: str) -> None:
        self.fs = fs
        self.folder = os.path.join(home, "reports")
        fs.makedirs(self.folder)
        self.path = os.path.join(self.folder, f"backup{self._next_number():02d}.log")
        self.errors = 0

    def _next_number(self) -> int:
        numbers = [int(m.group(1)) for n in self.fs.listdir(self.folder) if (m := re.fullmatch(r"backup(\d+)\.log", n))]
        return max(numbers, default=0) + 1

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
        self.errors += 1
        code = f"{exc.code} {exc.code_name}" if exc.code else type(exc).__name__
        self.line(
            f"The 'Information Store' returned '{exc.message}' from a call to '{call}()' additional data '{code}'"
        )
        if exc.hint:
            self.line(f"  What to do: {exc.hint}")

    def finished(self, files: int, total: int, seconds: float) -> None:
        now = dt.datetime.now(dt.UTC)
        self.line()
        status = "completed" if self.errors == 0 else f"failed with {self.errors} error(s)"
        self.line(f"Backup {status} on {now:%m/%d/%Y} at {now:%H:%M:%S} UTC.")
        self.line(f"Files:            {files}")
        self.line(f"Bytes:            {total:,}")
        self.line(f"Time:             {seconds:.1f} seconds")
        self.line("-" * 60)
