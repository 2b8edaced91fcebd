"""The service on a disk that fills up, a real ext4 file system on a loop device: deliveries are refused with an
error that says the log disk is full, nothing acknowledged is lost, the stop tells the truth about each store's
state, and once space is freed the stores are recovered and take mail again, by a mount through the service or
by the next service."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from shadowstore.errors import DiskFullError, LogDiskFullError, ShadowStoreError
from shadowstore.mail.generate import generate_messages
from shadowstore.service.remotemail import RemoteMail
from tests.service.running import Service, running_service, shadowstore
from tests.service.test_lifecycle import SG, event_ids, store_states

FREE_LEFT = 5 << 20  # bytes the ballast leaves free: a few log files' worth


@dataclass
class Filled:
    """A service whose disk filled while it took mail: what it acknowledged (digests by uid), the digests of
    the deliveries it refused (whose outcome its client cannot know), and the ballast to remove for room."""

    service: Service
    mail: RemoteMail
    messages: Iterator[bytes]
    acknowledged: dict[int, str]
    unanswered: set[str]
    refused: ShadowStoreError
    ballast: str

    def deliver(self, count: int) -> None:
        raws = [next(self.messages) for _ in range(count)]
        pending = {digest(raw) for raw in raws}
        self.unanswered |= pending  # until the answer: a refused delivery may or may not have been stored
        uids = self.mail.add("alice", "INBOX", raws, [{} for _ in raws])
        self.unanswered -= pending
        self.acknowledged.update((uid, digest(raw)) for uid, raw in zip(uids, raws, strict=True))

    def check_kept(self, mail: RemoteMail) -> None:
        """Every acknowledged message is there byte for byte; any other one is from the refused delivery."""
        stored = {record.uid: digest(record.raw) for record in mail.messages("alice")}
        assert {uid: stored.get(uid) for uid in self.acknowledged} == self.acknowledged
        assert {stored[uid] for uid in stored.keys() - self.acknowledged.keys()} <= self.unanswered


@contextlib.contextmanager
def a_service_whose_disk_filled(disk: str, seed: int) -> Iterator[Filled]:
    home = os.path.join(disk, "home")
    assert shadowstore(home, "init").returncode == 0
    with running_service(home) as service:
        mail = RemoteMail(service.client)
        mail.create_mailbox("alice")
        ballast = fill_disk(disk)  # the disk fills while the service runs
        filled = Filled(service, mail, generate_messages(seed, 10_000), {}, set(), DiskFullError("none"), ballast)
        while True:
            try:
                filled.deliver(4)
            except ShadowStoreError as exc:
                filled.refused = exc
                break
        assert isinstance(filled.refused, LogDiskFullError | DiskFullError), filled.refused
        assert "full" in filled.refused.message
        assert filled.acknowledged
        yield filled


def fill_disk(folder: str) -> str:
    """A ballast file taking all but FREE_LEFT bytes of ``folder``'s file system; its path."""
    ballast = os.path.join(folder, "ballast")
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, shutil.disk_usage(folder).free - FREE_LEFT))
        f.flush()
        os.fsync(f.fileno())
    return ballast


def wait_until(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@pytest.mark.root
def test_a_full_disk_refuses_mail_loses_nothing_and_the_stop_tells_each_stores_state(small_ext4: str) -> None:
    with a_service_whose_disk_filled(small_ext4, 41) as filled:
        service = filled.service
        with pytest.raises(ShadowStoreError) as again:  # refused as clearly the next time, not left hanging
            filled.deliver(1)
        assert isinstance(again.value, LogDiskFullError | DiskFullError), again.value
        output = service.stop()

    assert "event ESE 428: Information Store (" in output  # the service's warning events on its output too
    ids = event_ids(service.home)
    assert 1021 in ids, ids  # written on the full disk itself: the event log's reserve made room for it
    states = store_states(service.home)
    unclean = sorted(name for name, state in states.items() if state != "Clean Shutdown")
    named = sorted(name for name in states if f"warning: stopped, but {SG}/{name} is in " in output)
    assert named == unclean, output
    assert ("Stopped; every store is in Clean Shutdown." in output) == (not unclean), output
    assert service.process.returncode == (1 if unclean else 0), output

    os.unlink(filled.ballast)
    with running_service(service.home) as service:
        filled.check_kept(RemoteMail(service.client))
        filled.mail = RemoteMail(service.client)
        filled.deliver(1)
        output = service.stop()
    assert service.process.returncode == 0, output
    assert "Stopped; every store is in Clean Shutdown." in output


@pytest.mark.root
def test_once_space_is_freed_a_mount_through_the_service_takes_mail_again_without_a_restart(small_ext4: str) -> None:
    with a_service_whose_disk_filled(small_ext4, 43) as filled:
        service = filled.service
        assert wait_until(lambda: not service.client.get("/v1/status")["storage_groups"][0]["mounted"])  # event 1021
        os.unlink(filled.ballast)
        service.cli("mount", SG)
        filled.deliver(3)  # on the mail socket, as before the full disk
        filled.check_kept(filled.mail)
        output = service.stop()
    assert service.process.returncode == 0, output
    assert "Stopped; every store is in Clean Shutdown." in output
