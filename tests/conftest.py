"""Shared fixtures: server homes on the real file system and on the fault-injecting one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem

# Maintenance that never runs by itself: tests drive checkpoints and health checks explicitly.
QUIET = MaintenancePolicy(
    interval=3600.0, checkpoint_generations=1 << 30, checkpoint_bytes=1 << 60, checkpoint_seconds=1e9
)
HOME = "/home/shadowstore"


@pytest.fixture
def home(tmp_path: os.PathLike[str]) -> Iterator[ServerHome]:
    """A fresh server home on disk with 64 KiB logs and quiet maintenance; dismounted at the end."""
    h = ServerHome.init(os.path.join(tmp_path, "home"), log_file_size=64 * 1024, policy=QUIET)
    yield h
    h.close()


def fault_home(fs: FaultFileSystem | None = None, *, log_file_size: int = 64 * 1024, **kw: object) -> ServerHome:
    """A new home on a fault-injecting file system."""
    fs = fs or FaultFileSystem(seed=1)
    return ServerHome.init(HOME, fs=fs, log_file_size=log_file_size, policy=QUIET, **kw)  # type: ignore[arg-type]


def reopen(fs: FaultFileSystem) -> ServerHome:
    return ServerHome.open(HOME, fs=fs, policy=QUIET)
