"""Running the command line in-process for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shadowstore.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``shadowstore ARGS``; returns (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code, out, _err = run(capsys, *args)
    return code, json.loads(out)


def worked_home(tmp_path: Path, capsys: pytest.CaptureFixture[str], txns: int) -> str:
    """A new home (64 KiB logs) whose first storage group committed ``txns`` workload transactions: logs, a
    checkpoint and stores in use."""
    path = str(tmp_path / "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "64K")[0] == 0
    code, _out, err = run(capsys, "--home", path, "workload", "run", "--txns", str(txns), "--seed", "1")
    assert code == 0, err
    return path
