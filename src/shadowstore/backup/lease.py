"""The lease of a running backup: how a backup tells every other process on the target "this set is mine and
I am still writing it".

A backup writes ``lease.json`` into its set folder before any other file, renews it every quarter of its
length while it runs, and removes it after its manifest is written. A set without a manifest is judged by its
lease alone, never by the clock time in its id (ids come from the clock of whichever machine ran the backup):

* live: the lease has not run out (its holder renewed it within ``seconds``), unless its holder is a process
  of this very system (same host name, boot and process namespace) that no longer exists;
* dead: no lease, a lease that ran out, or a holder known to be gone.

Prune deletes only dead sets. The judgement uses the holder's clock for the renewal time, so the clocks of
machines sharing a target must agree to well within a lease (600 s by default; ``backup.lease_seconds``). A
wrong judgement cannot lose data: before it writes its manifest a backup renews its lease once more, checks that
the lease and every file it wrote are still in the target, and writes the manifest only while at least half of
the renewed lease is left (backup/run.py); otherwise it fails, truncating nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from shadowstore.backup.target import Target
from shadowstore.errors import BackupTargetError, BackupTargetNotFoundError
from shadowstore.format.common import iso_time, now_us

LEASE_NAME = "lease.json"
DEFAULT_LEASE_SECONDS = 600.0
RENEWALS_PER_LEASE = 4


@functools.cache
def this_system() -> str:
    """Host name, boot id and process namespace: two processes with the same value see the same process ids."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as boot:
        parts.append(boot.read().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))  # noqa: PTH116
    return "/".join(parts)


@dataclass(frozen=True)
class Lease:
    owner: str  # for people: "shadowstore backup run (pid 4242 on mail01)"
    system: str  # this_system() of the holder
    pid: int
    token: str  # random: tells this backup's lease from any other
    renewed_us: int  # the holder's clock
    seconds: float
    based_on: str | None = None  # the set an incremental or differential builds on: prune keeps it

    @property
    def expires_us(self) -> int:
        return self.renewed_us + int(self.seconds * 1_000_000)

    def to_json(self) -> bytes:
        return json.dumps({"format": "shadowstore-lease", **asdict(self)}).encode()

    def judge(self, now: int | None = None) -> tuple[bool, str]:
        """(live?, why) as the module documentation says."""
        now = now_us() if now is None else now
        if self.system == this_system() and not _process_exists(self.pid):
            return False, f"its backup ({self.owner}) is gone"
        if now > self.expires_us:
            return False, f"its lease ran out at {iso_time(self.expires_us)} ({self.owner})"
        return True, f"a backup is writing it: {self.owner}, lease until {iso_time(self.expires_us)}"


def parse_lease(data: bytes) -> Lease | None:
    """The lease in ``data``; None when it is not one (a torn or foreign file counts as no lease)."""
    try:
        raw: Any = json.loads(data)
        if not isinstance(raw, dict) or raw.pop("format", None) != "shadowstore-lease":
            return None
        lease = Lease(**raw)
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    if not (isinstance(lease.renewed_us, int) and isinstance(lease.seconds, int | float) and lease.seconds > 0):
        return None
    return lease


def read_lease(target: Target, folder: str) -> Lease | None:
    """The lease in set folder ``folder``; None when there is none or it cannot be read as one."""
    try:
        return parse_lease(target.read_bytes(f"{folder}/{LEASE_NAME}"))
    except BackupTargetNotFoundError:
        return None


class LeaseHolder:
    """Takes and keeps the lease of one set folder while a backup writes it (a thread renews it)."""

    def __init__(self, target: Target, folder: str, owner: str, seconds: float, based_on: str | None) -> None:
        self.target = target
        self.name = f"{folder}/{LEASE_NAME}"
        self.folder = folder
        self.lease = Lease(owner, this_system(), os.getpid(), secrets.token_hex(8), now_us(), seconds, based_on)
        self.renew_error: BackupTargetError | None = None  # the last renewal that failed, if any
        self.renewed_at = 0.0  # time.monotonic() when the lease last reached the target
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="backup-lease", daemon=True)

    def take(self) -> None:
        """Write the lease (before any file of the set) and start renewing it. Raises BackupTargetError."""
        self.target.write_file(self.name, [self.lease.to_json()])
        self.renewed_at = time.monotonic()
        self._thread.start()

    def _keep(self) -> None:
        while not self._stop.wait(self.lease.seconds / RENEWALS_PER_LEASE):
            if not self._renew():
                return

    def _renew(self) -> bool:
        """Write the lease again with this moment as its renewal; False when it is no longer in the target."""
        started = time.monotonic()  # why first: the lease written must not outlast what remaining() counts
        renewed = Lease(**{**asdict(self.lease), "renewed_us": now_us()})
        try:
            if not self.held():
                return False  # why: someone removed it; writing it again would hide that from the final check
            self.target.write_file(self.name, [renewed.to_json()])
            self.lease, self.renewed_at = renewed, started
        except BackupTargetError as exc:
            self.renew_error = exc  # why kept, not raised: the final check decides, with this as the reason
        return True

    def remaining(self) -> float:
        """Seconds until the lease runs out as another process judges it (counted from when its last renewal
        began: the written time is no earlier than that)."""
        return self.lease.seconds - (time.monotonic() - self.renewed_at)

    def finish(self) -> None:
        """Stop renewing, after one last renewal, so that the check of the set and its manifest have the lease's
        whole length. The renewal is made only while the lease is well alive (half of it left): a lease that may
        have run out may be being deleted by a prune, and writing it again could hide that."""
        self.stop()
        if self.remaining() > self.lease.seconds / 2:
            self._renew()

    def held(self) -> bool:
        """Whether the target still holds this backup's lease (not removed, not another backup's)."""
        found = read_lease(self.target, self.folder)
        return found is not None and found.token == self.lease.token

    def stop(self) -> None:
        """Stop renewing (the lease stays until ``release``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def release(self) -> None:
        """Stop renewing and remove the lease. Errors are ignored: a complete set's lease is never read."""
        self.stop()
        with contextlib.suppress(BackupTargetError):
            self.target.delete(self.name)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # why: it exists, it is just not ours to signal
    return True
