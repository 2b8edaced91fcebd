"""The record of a set's last verification: ``verified.json`` in the set folder, written by ``backup verify``.

``backup prune --verified-within AGE`` counts a full backup towards the fulls it keeps only when a verification
that found no error is recorded for it within AGE: an administrator who verifies on a schedule then never has
the last full that was *proven* restorable pruned for a newer one that nobody has read back. The record is
written atomically like every file of a target; the manifest does not list it, and nothing else reads it.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

from shadowstore.backup.target import Target
from shadowstore.errors import BackupTargetError
from shadowstore.format.common import iso_time, now_us

VERIFIED_NAME = "verified.json"


@dataclass(frozen=True)
class Verification:
    at_us: int
    ok: bool
    errors: int
    by: str

    def to_json(self) -> bytes:
        record = {"format": "shadowstore-verified", "at": iso_time(self.at_us), **self.__dict__}
        return (json.dumps(record, indent=2) + "\n").encode()


def record_verification(target: Target, folder: str, ok: bool, errors: int) -> Verification:
    """Write the outcome of verifying the set in ``folder``. Raises BackupTargetError."""
    by = f"shadowstore backup verify (pid {os.getpid()} on {socket.gethostname()})"
    done = Verification(now_us(), ok, errors, by)
    target.write_file(f"{folder}/{VERIFIED_NAME}", [done.to_json()])
    return done


def read_verification(target: Target, folder: str) -> Verification | None:
    """The recorded verification of the set in ``folder``; None when there is none or it cannot be read."""
    try:
        raw = json.loads(target.read_bytes(f"{folder}/{VERIFIED_NAME}"))
        if raw.get("format") != "shadowstore-verified":
            return None
        return Verification(int(raw["at_us"]), raw["ok"] is True, int(raw["errors"]), str(raw["by"]))
    except (BackupTargetError, ValueError, TypeError, KeyError, AttributeError):
        return None
