"""The home's commit waits (engine/flushwaits.py) in shared memory, so that a paced backup reads them for free.

A backup copying with ``--max-rate auto`` reads the waits ten times a second. Over the API each reading would
cost the service a request (about a millisecond of its time, in which a delivery waits): measured on the
reference machine, ten requests a second beside one-message deliveries raised their p99 by 10-25%, a fifth of
the headroom the pacing exists to keep (docs/performance.md). So the service keeps the counts in a file of
``SIZE`` bytes under ``/dev/shm`` (memory, never written to a disk: a commit's count must not wait for
writeback), mode 0600, named by the home's id and path, and ``GET /v1/health`` says where. A backup program maps it
read-only. A file left by a service that crashed is taken over by the next; ``stop`` removes it.

Where there is no ``/dev/shm``, or the file cannot be made or is not the service's, the counts stay in the
service's memory and a backup program reads them through ``GET /v1/flush-waits``.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
from collections.abc import Callable
from pathlib import Path

from shadowstore.engine.flushwaits import SIZE, FlushWaits

SHM = "/dev/shm"


def shared_waits_path(home_id: str, home_path: str) -> str:
    """The file of the home ``home_id`` at ``home_path``: named by both, since a copied home keeps its id."""
    where = hashlib.sha256(os.path.realpath(home_path).encode()).hexdigest()[:12]
    return os.path.join(SHM, f"shadowstore-{home_id}-{where}.waits")


def create_shared(path: str) -> FlushWaits | None:
    """Waits kept in the file ``path``, made (or taken over) with mode 0600 and zeroed; None where that fails."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:  # why: someone else's file must not feed backups
            return None
        os.ftruncate(fd, 0)
        os.ftruncate(fd, SIZE)
        return FlushWaits(mmap.mmap(fd, SIZE))
    except OSError:
        return None
    finally:
        os.close(fd)


def remove_shared(path: str) -> None:
    with contextlib.suppress(OSError):
        Path(path).unlink()


def open_shared(path: str) -> Callable[[], list[int]] | None:
    """A reader of the waits the service keeps at ``path``; None when the file is not there, not the size it
    must be, or not owned by this user (or root)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if info.st_size != SIZE or info.st_uid not in (os.geteuid(), 0):
            return None
        counts = memoryview(mmap.mmap(fd, SIZE, prot=mmap.PROT_READ)).cast("Q")
    except OSError:
        return None
    finally:
        os.close(fd)
    return counts.tolist
