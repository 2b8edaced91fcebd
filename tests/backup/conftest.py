"""Backup fixtures: one fresh target of every type.

The ``target`` fixture is parametrized over a local directory, ``memory://`` and ``s3://`` on the moto server
(tests/s3server.py, a session fixture of tests/conftest.py), so every test that takes it is a conformance test
run against each backend.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from shadowstore.backup.fsspectarget import FsspecTarget
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.target import Target
from tests.s3server import S3Server


@pytest.fixture(params=["local", "memory", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A fresh, empty target of each type. The folder that holds it is fresh and empty too, so a test can
    check that nothing was written beside the target."""
    unique = f"t-{uuid.uuid4().hex}"
    made: Target
    if request.param == "local":
        made = LocalTarget(str(tmp_path / "target"))
    elif request.param == "memory":
        made = FsspecTarget(f"memory://{unique}/target")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        made = FsspecTarget(f"s3://{server.bucket}/{unique}/target")
    yield made
    if request.param == "memory":  # why: memory:// is global to the process; free what the test stored
        import fsspec

        with suppress(FileNotFoundError):
            fsspec.filesystem("memory").rm(f"/{unique}", recursive=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (needs root: skipped, saying why, when it cannot be mounted)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MiB tmpfs needs root (mount(2) needs CAP_SYS_ADMIN)")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)
