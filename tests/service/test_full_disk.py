"""The service on a disk that fills up, a real ext4 file system on a loop device: deliveries are refused with an
error that says the log disk is full, nothing acknowledged is lost, the stop tells the truth about each store's
state, and once space is freed the next service recovers the stores and takes mail again."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator

import pytest

from shadowstore.errors import DiskFullError, LogDiskFullError, ShadowStoreError
from shadowstore.mail.generate import generate_messages
from shadowstore.service.remotemail import RemoteMail
from tests.service.running import running_service, shadowstore
from tests.service.test_lifecycle import SG, event_ids, store_states

FREE_LEFT = 5 << 20  # bytes the ballast leaves free: a few log files' worth


def fill_disk(folder: str) -> str:
    """A ballast file taking all but FREE_LEFT bytes of ``folder``'s file system; its path."""
    ballast = os.path.join(folder, "ballast")
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, shutil.disk_usage(folder).free - FREE_LEFT))
        f.flush()
        os.fsync(f.fileno())
    return ballast


def deliver_until_refused(
    mail: RemoteMail, messages: Iterator[bytes], acknowledged: dict[int, str]
) -> tuple[ShadowStoreError, set[str]]:
    """Deliver batches of four until one is refused, noting each acknowledged message's digest by uid; returns
    the refusal and the digests of the refused batch (whose outcome the client cannot know)."""
    while True:
        raws = [next(messages) for _ in range(4)]
        try:
            uids = mail.add("alice", "INBOX", raws, [{} for _ in raws])
        except ShadowStoreError as exc:
            return exc, {digest(raw) for raw in raws}
        acknowledged.update((uid, digest(raw)) for uid, raw in zip(uids, raws, strict=True))


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
    home = os.path.join(small_ext4, "home")
    assert shadowstore(home, "init").returncode == 0
    messages = generate_messages(41, 10_000, recipient="alice@example.com")
    acknowledged: dict[int, str] = {}

    with running_service(home) as service:
        mail = RemoteMail(service.client)
        mail.create_mailbox("alice")
        ballast = fill_disk(small_ext4)  # the disk fills while the service runs
        refused, unanswered = deliver_until_refused(mail, messages, acknowledged)
        assert isinstance(refused, LogDiskFullError | DiskFullError), refused
        assert "full" in refused.message
        assert acknowledged
        with pytest.raises(ShadowStoreError) as again:  # refused as clearly the next time, not left hanging
            mail.add("alice", "INBOX", [next(messages)], [{}])
        assert isinstance(again.value, LogDiskFullError | DiskFullError), again.value
        output = service.stop()

    assert "event ESE 428: Information Store (" in output  # the service's warning events on its output too
    ids = event_ids(home)
    assert 1021 in ids, ids  # written on the full disk itself: the event log's reserve made room for it
    unclean = sorted(name for name, state in store_states(home).items() if state != "Clean Shutdown")
    named = sorted(name for name in store_states(home) if f"warning: stopped, but {SG}/{name} is in " in output)
    assert named == unclean, output
    assert ("Stopped; every store is in Clean Shutdown." in output) == (not unclean), output
    assert service.process.returncode == (1 if unclean else 0), output

    os.unlink(ballast)
    with running_service(home) as service:
        mail = RemoteMail(service.client)
        stored = {record.uid: digest(record.raw) for record in mail.messages("alice")}
        assert {uid: stored.get(uid) for uid in acknowledged} == acknowledged
        assert {stored[uid] for uid in stored.keys() - acknowledged.keys()} <= unanswered
        raw = next(messages)
        [uid] = mail.add("alice", "INBOX", [raw], [{}])
        assert uid > max(acknowledged)
        output = service.stop()
    assert service.process.returncode == 0, output
    assert "Stopped; every store is in Clean Shutdown." in output


@pytest.mark.root
def test_once_space_is_freed_a_mount_through_the_service_takes_mail_again_without_a_restart(small_ext4: str) -> None:
    home = os.path.join(small_ext4, "home")
    assert shadowstore(home, "init").returncode == 0
    messages = generate_messages(43, 10_000, recipient="alice@example.com")
    acknowledged: dict[int, str] = {}

    with running_service(home) as service:
        mail = RemoteMail(service.client)
        mail.create_mailbox("alice")
        ballast = fill_disk(small_ext4)
        refused, unanswered = deliver_until_refused(mail, messages, acknowledged)
        assert isinstance(refused, LogDiskFullError | DiskFullError), refused
        assert wait_until(lambda: not service.client.get("/v1/status")["storage_groups"][0]["mounted"])  # event 1021

        os.unlink(ballast)
        service.cli("mount", SG)
        raws = [next(messages) for _ in range(3)]
        uids = mail.add("alice", "INBOX", raws, [{} for _ in raws])  # on the mail socket, as before the full disk
        acknowledged.update((uid, digest(raw)) for uid, raw in zip(uids, raws, strict=True))
        stored = {record.uid: digest(record.raw) for record in mail.messages("alice")}
        assert {uid: stored.get(uid) for uid in acknowledged} == acknowledged
        assert {stored[uid] for uid in stored.keys() - acknowledged.keys()} <= unanswered
        output = service.stop()
    assert service.process.returncode == 0, output
    assert "Stopped; every store is in Clean Shutdown." in output
