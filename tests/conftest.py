"""Shared fixtures: server homes on the real file system and on the fault-injecting one."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.engine.store import Store
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem
from tests.s3server import s3_server

__all__ = ["s3_server"]  # the one moto server of the session, for every test folder

# Maintenance that never runs by itself: tests drive checkpoints and health checks explicitly. A test that
# needs it (an exact list of truncated generations, say) asks for it by name.
QUIET = MaintenancePolicy(
    interval=3600.0, checkpoint_generations=1 << 30, checkpoint_bytes=1 << 60, checkpoint_seconds=1e9
)
# What the fixtures below use: QUIET, or the production defaults (checkpoints by themselves every few
# generations, during backups and commits) when SHADOWSTORE_TEST_MAINTENANCE=production, as the second pass of
# `make test` runs the engine, backup and restore suites. A quiet run must never be the only way a behaviour
# is tested.
PRODUCTION = os.environ.get("SHADOWSTORE_TEST_MAINTENANCE", "quiet") == "production"
POLICY = MaintenancePolicy() if PRODUCTION else QUIET
HOME = "/home/shadowstore"

# Property tests: in CI every run draws the same examples (derandomized), so a failure is a change in the code,
# not luck; with SHADOWSTORE_LONG=1 hypothesis explores new examples on every run, ten times as many, and keeps
# failing ones in .hypothesis/ to try first next time.
LONG = os.environ.get("SHADOWSTORE_LONG", "") not in ("", "0")
settings.register_profile("ci", derandomize=True, deadline=None, database=None)
settings.register_profile("long", derandomize=False, deadline=None)
settings.load_profile("long" if LONG else "ci")


def examples(count: int) -> int:
    """How many examples a property test draws: ``count`` in CI, ten times as many in the long mode."""
    return count * 10 if LONG else count


@pytest.fixture
def home(tmp_path: os.PathLike[str]) -> Iterator[ServerHome]:
    """A fresh server home on disk with 64 KiB logs and the test policy (POLICY); dismounted at the end."""
    h = ServerHome.init(os.path.join(tmp_path, "home"), log_file_size=64 * 1024, policy=POLICY)
    yield h
    h.close()


class PausingFS(FaultFileSystem):
    """A fault-injecting file system that stops the thread reaching crash point ``pause_at`` (once) until
    ``resume`` is set: a way to hold one thread at an exact instant while another acts."""

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.pause_at: str | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def crash_point(self, name: str) -> None:
        super().crash_point(name)
        if name == self.pause_at:
            self.pause_at = None
            self.paused.set()
            self.resume.wait(30)


class SlowSyncFS(FaultFileSystem):
    """A fault-injecting file system whose log flushes take ``delay`` seconds after their write while ``delay``
    is set: a disk that has fallen behind."""

    def __init__(self, *, seed: int = 3) -> None:
        super().__init__(seed=seed)
        self.delay = 0.0

    def crash_point(self, name: str) -> None:
        super().crash_point(name)
        if name == "log.flush.after_write" and self.delay:
            time.sleep(self.delay)


def fault_home(fs: FaultFileSystem | None = None, *, log_file_size: int = 64 * 1024, **kw: object) -> ServerHome:
    """A new home on a fault-injecting file system."""
    fs = fs or FaultFileSystem(seed=1)
    kw.setdefault("policy", POLICY)
    return ServerHome.init(HOME, fs=fs, log_file_size=log_file_size, **kw)  # type: ignore[arg-type]


def mounted_with_table(fs: FaultFileSystem, table: str = "t") -> tuple[ServerHome, StorageGroup, Store]:
    """A new home on ``fs``, its storage group mounted, and ``table`` created in Mailbox Store."""
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table(table)
    return home, sg, store


def reopen(fs: FaultFileSystem, policy: MaintenancePolicy | None = None) -> ServerHome:
    return ServerHome.open(HOME, fs=fs, policy=policy or POLICY)


def _loop_facility_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a loop device"
    for tool in ("mkfs.ext4", "mount", "umount", "losetup"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/dev/loop-control"):
        return "this kernel offers no loop devices (/dev/loop-control is absent)"
    return None


@pytest.fixture
def small_ext4(tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A 24 MiB ext4 file system on a loop device, mounted for the test (CI runs as root; skipped, saying
    why, only where loop devices or the tools are genuinely absent)."""
    missing = _loop_facility_missing()
    if missing:
        pytest.skip(missing)
    image = os.path.join(tmp_path, "disk.img")
    mountpoint = os.path.join(tmp_path, "mnt")
    os.makedirs(mountpoint)
    with open(image, "wb") as f:
        f.truncate(24 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", image], check=True)
    subprocess.run(["mount", "-o", "loop", image, mountpoint], check=True)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", mountpoint], check=False, capture_output=True).returncode != 0:
            # why: a test that failed may still hold files open there; detach it anyway, not leave it mounted
            subprocess.run(["umount", "--lazy", mountpoint], check=False)


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $TMPDIR, where the command line saves a crash file, and SHADOWSTORE_DEBUG unset."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.delenv("SHADOWSTORE_DEBUG", raising=False)
    return folder
