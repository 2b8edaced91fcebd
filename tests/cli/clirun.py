"""Running the command line in-process for tests."""

from __future__ import annotations

import json
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
