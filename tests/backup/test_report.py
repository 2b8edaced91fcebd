"""The backup report file: each run gets a file of its own, and each error is one line in it."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shadowstore.backup.report import BackupReport
from shadowstore.errors import BackupTargetError, unexpected
from shadowstore.io.fs import OsFileSystem

RUNS = 16  # reports created at the same instant


def reports_in(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "reports").iterdir())


def test_two_reports_made_before_either_writes_get_their_own_files(tmp_path: Path) -> None:
    fs = OsFileSystem()
    first, second = BackupReport(fs, str(tmp_path)), BackupReport(fs, str(tmp_path))
    first.line("first run")
    second.line("second run")
    assert reports_in(tmp_path) == ["backup01.log", "backup02.log"]
    assert Path(first.path).read_text() == "first run\n"
    assert Path(second.path).read_text() == "second run\n"


def test_reports_created_at_once_by_many_threads_get_their_own_files(tmp_path: Path) -> None:
    fs = OsFileSystem()
    start = threading.Barrier(RUNS)

    def run(number: int) -> str:
        start.wait()
        report = BackupReport(fs, str(tmp_path))
        start.wait()  # why: every run has its report before any writes a line, as when runs start together
        report.line(f"run {number}")
        return report.path

    with ThreadPoolExecutor(RUNS) as pool:
        paths = list(pool.map(run, range(RUNS)))
    assert len(set(paths)) == RUNS
    assert reports_in(tmp_path) == [f"backup{n:02d}.log" for n in range(1, RUNS + 1)]
    assert sorted(Path(path).read_text() for path in paths) == sorted(f"run {n}\n" for n in range(RUNS))


MAKE_REPORT = """
import os, sys
from shadowstore.backup.report import BackupReport
from shadowstore.io.fs import OsFileSystem

sys.stdin.readline()
report = BackupReport(OsFileSystem(), sys.argv[1])
print(report.path, flush=True)
sys.stdin.readline()  # why: both processes have their report before either writes a line
report.line(f"pid {os.getpid()}")
"""


def test_two_processes_started_together_write_two_reports(tmp_path: Path) -> None:
    command = [sys.executable, "-c", MAKE_REPORT, str(tmp_path)]
    procs = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]

    def tell_all(word: str) -> None:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{word}\n")
            proc.stdin.flush()

    tell_all("make your report")
    paths = [proc.stdout.readline().strip() for proc in procs if proc.stdout is not None]
    tell_all("write to it")
    for proc in procs:
        proc.communicate(timeout=60)
    assert [proc.returncode for proc in procs] == [0, 0]
    assert sorted(paths) == [str(tmp_path / "reports" / f"backup0{n}.log") for n in (1, 2)]
    assert sorted(Path(path).read_text() for path in paths) == sorted(f"pid {proc.pid}\n" for proc in procs)


class ListsTooEarly(OsFileSystem):
    """Lists the reports folder as another run saw it just before this one created its file."""

    def listdir(self, path: str) -> list[str]:
        return [name for name in super().listdir(path) if name != "backup03.log"]


def test_a_number_taken_since_the_listing_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    for name in ("backup01.log", "backup02.log", "backup03.log", "crash-20261125T084500Z-42.log"):
        (tmp_path / "reports" / name).write_text(f"{name}\n")
    report = BackupReport(ListsTooEarly(), str(tmp_path))
    report.line("new run")
    assert Path(report.path).name == "backup04.log"
    assert (tmp_path / "reports" / "backup03.log").read_text() == "backup03.log\n"  # untouched
    assert Path(report.path).read_text() == "new run\n"


def test_an_unexpected_error_is_one_line_with_what_to_do(tmp_path: Path) -> None:
    report = BackupReport(OsFileSystem(), str(tmp_path))
    report.error("copy_databases", unexpected(ValueError("first line\nsecond  line"), "copying priv1.edb"))
    assert Path(report.path).read_text().splitlines() == [
        "The 'Information Store' returned 'unexpected failure while copying priv1.edb: ValueError: first line "
        "second line (a bug in ShadowStore)' from a call to 'copy_databases()' additional data 'UnexpectedError'",
        "  What to do: this is a bug in ShadowStore; please report it with the command you ran and this message",
    ]
    assert report.errors == 1


def test_an_error_message_over_several_lines_becomes_one(tmp_path: Path) -> None:
    report = BackupReport(OsFileSystem(), str(tmp_path))
    report.error("write_manifest", BackupTargetError("cannot write\nmanifest.json", hint="check\nthe target"))
    assert Path(report.path).read_text().splitlines() == [
        "The 'Information Store' returned 'cannot write manifest.json' from a call to 'write_manifest()' "
        "additional data 'BackupTargetError'",
        "  What to do: check the target",
    ]
