"""The lease a running backup keeps in its set folder: its last renewal before the set is checked."""

from __future__ import annotations

import time
from pathlib import Path

from shadowstore.backup.lease import LEASE_NAME, LeaseHolder, read_lease
from shadowstore.backup.localtarget import LocalTarget

FOLDER = "home/sg/20261207T000000.000000Z-full-000001"


def holder_in(tmp_path: Path, seconds: float) -> tuple[LocalTarget, LeaseHolder]:
    target = LocalTarget(str(tmp_path / "target"))
    holder = LeaseHolder(target, FOLDER, "test backup", seconds, None)
    holder.take()
    return target, holder


def test_finish_renews_once_more_so_the_check_has_the_whole_lease(tmp_path: Path) -> None:
    target, holder = holder_in(tmp_path, 60.0)
    written = read_lease(target, FOLDER)
    assert written is not None
    time.sleep(0.05)
    holder.finish()
    renewed = read_lease(target, FOLDER)
    assert renewed is not None
    assert renewed.token == written.token
    assert renewed.renewed_us > written.renewed_us
    assert 59.0 < holder.remaining() <= 60.0


def test_finish_does_not_write_back_a_lease_someone_removed(tmp_path: Path) -> None:
    target, holder = holder_in(tmp_path, 60.0)
    target.delete(f"{FOLDER}/{LEASE_NAME}")
    holder.finish()
    assert read_lease(target, FOLDER) is None
    assert not holder.held()


def test_finish_does_not_renew_a_lease_that_may_have_run_out(tmp_path: Path) -> None:
    target, holder = holder_in(tmp_path, 60.0)
    before = read_lease(target, FOLDER)
    holder.renewed_at -= 45.0  # renewals failed for 45 s: a prune elsewhere may be deleting the set by now
    holder.finish()
    assert read_lease(target, FOLDER) == before
    assert holder.remaining() < 30.0
