"""Inputs found by probing ``shadowstore eseutil`` and ``shadowstore doctor`` that hung or crashed: a FIFO where a
file is expected (named, or among the logs of a folder), a log file extended into a huge sparse file, and /g given
a file that is not a store.

A FIFO is opened only by a separate process with a timeout: opened for reading it waits for a writer forever, and
a test that hangs would stop the suite. The huge files are sparse: they take no disk space, but reading one whole
exhausts memory (MemoryError), which is what the dumps did.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shadowstore.errors import ExitCode
from tests.cli.clirun import run, worked_home

SG = "First Storage Group"
HUGE = 1 << 40  # 1 TiB, sparse: no malloc can hold it
SECONDS = 30  # far more than any of these commands takes when it answers


def shadowstore(*args: str) -> subprocess.CompletedProcess[str]:
    """``shadowstore ARGS`` in a new process; fails the test when it has not answered within SECONDS."""
    code = "import sys; from shadowstore.cli.main import main; sys.exit(main(sys.argv[1:]))"
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"'shadowstore {' '.join(args)}' did not answer within {SECONDS} s (a FIFO waited on?)")


@pytest.fixture(scope="module")
def home_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home (64 KiB logs) after 200 workload transactions, dismounted cleanly: closed logs and a checkpoint."""
    base = tmp_path_factory.mktemp("probe")
    home = base / "home"
    assert shadowstore("--home", str(home), "init", "--log-file-size", "64K").returncode == 0
    done = shadowstore("--home", str(home), "workload", "run", "--txns", "200", "--seed", "1")
    assert done.returncode == 0, done.stderr
    return home


def copy_home(home: Path, tmp_path: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(home, target)
    return target


@pytest.mark.parametrize("mode", ["/mh", "/ml", "/mk", "/k", "/g"])
def test_eseutil_refuses_a_fifo_instead_of_waiting_on_it(tmp_path: Path, mode: str) -> None:
    fifo = tmp_path / "priv1.edb"
    os.mkfifo(fifo)
    done = shadowstore("eseutil", mode, str(fifo))
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    assert "is a FIFO (named pipe)" in done.stderr


def test_eseutil_ml_of_a_folder_holding_a_fifo_log_refuses_it(home_copy: Path, tmp_path: Path) -> None:
    home = copy_home(home_copy, tmp_path)
    os.mkfifo(home / SG / "E0000009.log")
    done = shadowstore("eseutil", "/ml", str(home / SG))
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    assert "E0000009.log is a FIFO (named pipe)" in done.stderr


@pytest.mark.parametrize("name", ["E0000009.log", "E00.chk"])
def test_doctor_reports_a_fifo_in_the_log_folder_instead_of_waiting_on_it(
    home_copy: Path, tmp_path: Path, name: str
) -> None:
    home = copy_home(home_copy, tmp_path)
    path = home / SG / name
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    done = shadowstore("--home", str(home), "doctor")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{name} is a FIFO (named pipe)" in done.stdout or f"{name} has a log file's name but is a FIFO" in (
        done.stdout
    )


def test_ml_of_a_log_extended_into_a_huge_sparse_file_reads_what_its_header_gives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = worked_home(tmp_path, capsys, 200)
    log = tmp_path / "E0000001.log"
    shutil.copyfile(os.path.join(home, SG, "E0000001.log"), log)
    os.truncate(log, HUGE)
    code, out, err = run(capsys, "eseutil", "/ml", str(log))
    assert code == 0, out + err
    assert f"is {HUGE} bytes, longer than the 65536 bytes its header gives" in out


def test_k_of_a_huge_file_named_like_a_log_is_refused_not_read_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "E0000001.log"
    log.touch()
    os.truncate(log, HUGE)
    code, _out, err = run(capsys, "eseutil", "/k", str(log))
    assert code == ExitCode.USAGE, err
    assert "larger than any ShadowStore log file can be" in err


@pytest.mark.parametrize("name", ["E00.log", "E00.chk"])
def test_g_of_a_log_or_checkpoint_is_a_usage_error_not_a_damaged_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    home = worked_home(tmp_path, capsys, 50)
    copy = tmp_path / name
    shutil.copyfile(os.path.join(home, SG, name), copy)
    code, _out, err = run(capsys, "eseutil", "/g", str(copy))
    assert code == ExitCode.USAGE, err
    assert "not a store" in err


def test_doctor_reports_a_cure_that_a_kill_left_unfinished(home_copy: Path, tmp_path: Path) -> None:
    """Killed after the cure set the logs aside and mounted, before its full backup: the folder looks healthy,
    but the cure is not done (no full backup of the new log stream); doctor must say so, and --fix finish it."""
    home = copy_home(home_copy, tmp_path)
    (home / SG / "E00.chk").unlink()  # a finding the cure mends
    code = "import sys; from shadowstore.cli.main import main; sys.exit(main(sys.argv[1:]))"
    fixing = subprocess.Popen(
        [sys.executable, "-c", code, "--home", str(home), "doctor", "--fix"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SHADOWSTORE_PAUSE_AT": "doctor.mount.before_record"},
    )
    assert fixing.stderr is not None
    try:
        lines = iter(fixing.stderr.readline, "")  # the progress lines go to stderr too
        assert any(line.startswith("paused at doctor.mount.before_record") for line in lines)
    finally:
        fixing.kill()
        fixing.wait()
    done = shadowstore("--home", str(home), "doctor")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "warning cure-unfinished:" in done.stdout
    assert "left mount, backup" in done.stdout
    assert shadowstore("--home", str(home), "doctor", "--fix").returncode == 0
    healthy = shadowstore("--home", str(home), "doctor")
    assert healthy.returncode == 0, healthy.stdout
