"""A backup set covers the logs its own copies need, whatever checkpoints run while it is taken.

A full backup pins each store's durable header when it opens the copy; a checkpoint that runs during the copy
moves the live header's replay start past logs the copy still needs. The set must start at the pinned replay
start, truncation must stop below it, and ``complete`` must refuse (truncating and stamping nothing) a set whose
logs would not restore.
"""

from __future__ import annotations

import pytest

from shadowstore.engine.backup import BackupSession
from shadowstore.errors import InvalidBackupSequenceError
from shadowstore.home import ServerHome
from shadowstore.io.blockread import owned
from tests.engine.test_backup_session import fill, generations, mounted


def roll_and_checkpoint(home: ServerHome, generations_: int) -> None:
    """What the maintenance thread does under load: commits fill generations, then a checkpoint."""
    sg = home.storage_group()
    for _ in range(generations_):
        fill(home, 40, b"during")
        sg.log.roll()
        sg.log.flush()
    sg.checkpoint()


def copy_with_checkpoints(home: ServerHome, session: BackupSession) -> dict[str, int]:
    """Copy every store while checkpoints advance the live headers; returns each copy's pinned replay start."""
    pinned = {}
    for store in session.databases():
        with session.open_database(store) as copy:
            chunks = copy.chunks()
            first = next(chunks)
            roll_and_checkpoint(home, 3)  # the target is slow: checkpoints run meanwhile
            b"".join(owned([first, *chunks]))
            pinned[store.name] = copy.header.replay_start.gen
    return pinned


def test_a_checkpoint_during_the_copy_does_not_shorten_the_logs_of_a_full_backup() -> None:
    fs, home = mounted()
    sg = home.storage_group()
    fill(home, 100)
    with sg.begin_backup("full", owner="test") as session:
        pinned = copy_with_checkpoints(home, session)
        live = min(s.replay_start.gen for s in sg.stores.values())
        assert live > min(pinned.values())  # the situation: the live headers moved on during the copy
        logs = session.prepare_logs()
        assert logs.copy.start == min(pinned.values())
        assert logs.delete.stop <= logs.copy.start
        for gen in logs.copy:
            session.read_log(gen)
        report = session.complete()
    assert all(g < logs.copy.start for g in report.truncated)
    on_disk = generations(fs, home)
    assert all(g in on_disk for g in range(logs.copy.start, logs.copy.stop))
    stamped = sg.store("Mailbox Store").header
    assert stamped is not None
    assert stamped.full_prev.gen_low == logs.copy.start


def test_complete_refuses_a_set_that_would_not_restore_and_truncates_and_stamps_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The range computed from the live headers (the old way) misses the copies' first generations; the proof
    # in complete() must catch any such mistake, however the range was computed.
    fs, home = mounted()
    sg = home.storage_group()
    fill(home, 100)
    live_low = lambda self, top: min(s.header.replay_start.gen for s in self.sg.stores.values())  # noqa: E731
    monkeypatch.setattr(BackupSession, "_copy_low", live_low)
    before = generations(fs, home)
    session = sg.begin_backup("full", owner="test")
    copy_with_checkpoints(home, session)
    logs = session.prepare_logs()
    for gen in logs.copy:
        session.read_log(gen)
    with pytest.raises(InvalidBackupSequenceError, match="would not restore") as err:
        session.complete()
    assert "nothing was truncated or stamped" in err.value.message
    assert session.ended
    assert sg.backup_session is None
    assert set(before) <= set(generations(fs, home))
    assert all(s.header is not None and s.header.full_prev.is_empty for s in sg.stores.values())
    monkeypatch.undo()
    sg.begin_backup("full", owner="test").abort("the next backup can begin")


def test_an_incremental_holds_every_log_since_the_full_backup_though_checkpoints_ran() -> None:
    fs, home = mounted()
    sg = home.storage_group()
    fill(home, 60)
    with sg.begin_backup("full", owner="test") as session:
        copy_with_checkpoints(home, session)
        logs = session.prepare_logs()
        for gen in logs.copy:
            session.read_log(gen)
        session.complete()
    full_high = logs.copy.stop - 1
    roll_and_checkpoint(home, 4)
    with sg.begin_backup("incremental", owner="test") as session:
        inc = session.prepare_logs()
        for gen in inc.copy:
            session.read_log(gen)
        report = session.complete()
    assert inc.copy.start == full_high + 1
    assert report.truncated == [g for g in report.truncated if g < sg.checkpoint_position.gen]
    assert all(g in generations(fs, home) for g in range(sg.checkpoint_position.gen, inc.copy.stop))


@pytest.mark.parametrize("kind", ["incremental", "differential"])
def test_complete_refuses_a_chain_with_a_gap_and_truncates_nothing(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A range that skipped the first generation after the last backup would leave a hole in the chain; the
    # proof compares what was read with what each store's header says it needs.
    fs, home = mounted()
    sg = home.storage_group()
    with sg.begin_backup("full", owner="test") as session:
        copy_with_checkpoints(home, session)
        for gen in session.prepare_logs().copy:
            session.read_log(gen)
        session.complete()
    roll_and_checkpoint(home, 3)
    right = BackupSession._copy_low
    monkeypatch.setattr(BackupSession, "_copy_low", lambda self, top: right(self, top) + 1)
    before = generations(fs, home)
    session = sg.begin_backup(kind, owner="test")
    for gen in session.prepare_logs().copy:
        session.read_log(gen)
    with pytest.raises(InvalidBackupSequenceError, match="were not copied"):
        session.complete()
    assert set(before) <= set(generations(fs, home))  # nothing truncated
    header = sg.store("Mailbox Store").header
    assert header is not None
    assert header.inc_prev.is_empty
    assert header.diff_prev.is_empty
