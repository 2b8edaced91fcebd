"""Loop-mounted btrfs, XFS (reflink=1) and ext4 file systems for the shadow-copy tests.

Each file system is a sparse image in the session's temporary folder, attached with ``losetup --find --show``
and mounted on a mount point of its own (unique per pytest worker), made once per session. Teardown always runs
every step that setup reached, in reverse (unmount, detach, delete), even when a later step or a test failed;
an unmount that finds the file system busy falls back to a lazy one so the loop device is still released.

The fixtures skip only when this process is not root or a tool is genuinely absent, and the skip says which.
CI (``.ci/run``) installs btrfs-progs and xfsprogs, so there they run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pytest

GiB = 1 << 30
MKFS = {
    # -K / nodiscard: a discard of a fresh sparse image is wasted time
    "btrfs": ["mkfs.btrfs", "-q", "-f", "-K"],
    "xfs": ["mkfs.xfs", "-q", "-f", "-K", "-m", "reflink=1"],  # XFS needs >= 300 MiB
    "ext4": ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard"],
}
PACKAGES = {"mkfs.btrfs": "btrfs-progs", "mkfs.xfs": "xfsprogs", "mkfs.ext4": "e2fsprogs"}
SIZES = {"btrfs": 2 * GiB, "xfs": 1 * GiB, "ext4": GiB // 2}


@dataclass(frozen=True)
class LoopFs:
    kind: str  # "btrfs" | "xfs" | "ext4"
    mountpoint: str
    device: str
    image: str


def missing_facility(kind: str) -> str | None:
    """Why a ``kind`` loop file system cannot be made here (not root, a tool absent), or None."""
    if os.geteuid() != 0:
        return f"needs root to attach and mount a loop device (euid is {os.geteuid()})"
    mkfs = MKFS[kind][0]
    for tool in ("losetup", "mount", "umount", mkfs):
        if shutil.which(tool) is None:
            package = PACKAGES.get(tool, "mount")
            return f"{tool} is not installed (apt-get install {package}; .ci/run does this)"
    return None


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")


def _unmount(mountpoint: str) -> None:
    if subprocess.run(["umount", mountpoint], capture_output=True, check=False).returncode != 0:
        # why lazy: a test that failed may hold a file open; the loop device is freed once it lets go
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)


@contextmanager
def loop_mounted(kind: str, folder: str, size: int | None = None) -> Iterator[LoopFs]:
    """A new ``kind`` file system of ``size`` bytes (sparse image) mounted in ``folder``, removed afterwards."""
    image = os.path.join(folder, f"{kind}.img")
    mountpoint = os.path.join(folder, f"mnt-{kind}")
    with ExitStack() as undo:
        with open(image, "wb") as f:
            f.truncate(size or SIZES[kind])
        undo.callback(os.unlink, image)
        attached = subprocess.run(["losetup", "--find", "--show", image], capture_output=True, text=True, check=False)
        if attached.returncode != 0:
            raise RuntimeError(f"losetup --find --show {image} failed: {attached.stderr.strip()}")
        device = attached.stdout.strip()
        undo.callback(subprocess.run, ["losetup", "-d", device], capture_output=True, check=False)
        _run(*MKFS[kind], device)
        os.mkdir(mountpoint)
        undo.callback(os.rmdir, mountpoint)
        _run("mount", device, mountpoint)
        undo.callback(_unmount, mountpoint)
        yield LoopFs(kind, mountpoint, device, image)


def _fixture(kind: str, factory: pytest.TempPathFactory) -> Iterator[LoopFs]:
    missing = missing_facility(kind)
    if missing:
        pytest.skip(missing)
    with loop_mounted(kind, str(factory.mktemp(f"loopfs-{kind}"))) as fs:
        yield fs


@pytest.fixture(scope="session")
def btrfs_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopFs]:
    """A 2 GiB btrfs file system (its top-level subvolume mounted)."""
    yield from _fixture("btrfs", tmp_path_factory)


@pytest.fixture(scope="session")
def xfs_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopFs]:
    """A 1 GiB XFS file system made with reflink=1."""
    yield from _fixture("xfs", tmp_path_factory)


@pytest.fixture(scope="session")
def ext4_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopFs]:
    """A 512 MiB ext4 file system (it cannot clone)."""
    yield from _fixture("ext4", tmp_path_factory)
