"""The progress shown by ``backup run``, ``backup verify`` and ``restore run``: drawn on a terminal, on stderr
only, and never into a pipe or a file, where it would end up in a script's input or a log."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from tests.cli.clirun import run

SG = "First Storage Group"
CLI = "import sys; from shadowstore.cli.main import main; sys.exit(main())"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_terminal(*args: str) -> tuple[int, str, str]:
    """Run ``shadowstore ARGS`` with stderr on a pseudo-terminal 160 columns wide and stdout on a pipe;
    returns (exit code, stdout, everything the terminal received with its escape sequences removed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")} | {"TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    received: list[bytes] = []
    failed: list[OSError] = []

    def drain() -> None:  # why a thread: a terminal that nobody reads blocks the writer once its buffer is full
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer has closed the terminal
                if exc.errno != errno.EIO:
                    failed.append(exc)
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    code = proc.wait(timeout=120)
    reader.join(timeout=30)
    os.close(master)
    assert not failed, failed
    return code, out, ANSI.sub("", b"".join(received).decode(errors="replace"))


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A home whose Mailbox Store holds ~24 MB, so a backup reads it in several blocks."""
    path = str(tmp_path / "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "1M")[0] == 0
    workload = ("workload", "run", "--txns", "400", "--seed", "1", "--value-size", "60000")
    code, _out, err = run(capsys, "--home", path, *workload)
    assert code == 0, err
    return path


def test_backup_run_shows_file_bytes_and_rate_on_a_terminal(home: str) -> None:
    code, out, screen = on_terminal("--home", home, "backup", "run", "--sg", SG, "--kind", "full")
    assert code == 0, screen
    # each file by name, with the bytes done of its size and the rate: "priv1.edb ━━━ 42.0/50.8 MB 567.4 MB/s"
    assert re.search(r"priv1\.edb +━+╺?━* \d+\.\d/\d+\.\d MB \d+(\.\d)? [kMG]B/s", screen), screen
    assert re.search(r"E00[0-9A-F]{5}\.log +━+ \d+\.\d/\d+\.\d MB", screen), screen  # and each log
    # stdout holds the summary alone: a script reading it gets no frames of the bar
    assert out.startswith(f"{SG}: full backup "), out
    assert "━" not in out
    assert "B/s" not in out


def test_backup_run_draws_no_bar_into_a_pipe_or_for_json(home: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLI, "--home", home, "backup", "run", "--sg", SG, "--kind", "full"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "━" not in done.stderr + done.stdout
    code, out, screen = on_terminal("--home", home, "backup", "run", "--sg", SG, "--kind", "copy", "--json")
    assert code == 0, screen
    assert json.loads(out)["backups"][0]["kind"] == "copy"  # stdout is nothing but the JSON document
    assert "━" not in screen


def test_restore_run_shows_fetch_and_replay_progress_on_a_terminal(home: str) -> None:
    code, _out, screen = on_terminal("--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--quiet")
    assert code == 0, screen
    assert "━" not in screen  # --quiet draws nothing
    code, out, screen = on_terminal("--home", home, "restore", "run", "--sg", SG, "--into-recovery-group")
    assert code == 0, screen
    assert re.search(r"fetch +━+ (\d+)/\1 MB", screen), screen  # fetched all of it
    assert re.search(r"replay +━+ 1/1 generations", screen), screen
    assert out.startswith(f"Restored Mailbox Store, Public Folder Store of {SG!r}"), out
    assert re.search(r"Replayed generation \d+ and stopped", out), out  # one generation is not "45-45"
    assert "━" not in out


def test_backup_verify_shows_each_file_on_a_terminal(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--json")
    assert code == 0
    backup_id = json.loads(out)["backups"][0]["id"]
    code, out, screen = on_terminal("--home", home, "backup", "verify", backup_id)
    assert code == 0, screen
    assert re.search(r"priv1\.edb +━+ \d+\.\d/\d+\.\d MB \d+(\.\d)? [kMG]B/s", screen), screen
    assert out.startswith(f"Backup set {backup_id} of {SG!r} (full)"), out
    assert "━" not in out
    for quiet in (("--quiet",), ("--json",)):
        code, _out, screen = on_terminal("--home", home, "backup", "verify", backup_id, *quiet)
        assert code == 0
        assert "━" not in screen
