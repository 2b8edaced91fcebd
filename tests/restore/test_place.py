"""Putting restored store files in place (restore/place.py): each move is durable before the next step relies on
it, and what it replaces is kept in quarantine. Also the restore folder's own leftovers: a journal save cut by a
crash leaves a temporary file, which the next run of the restore removes (restore/journal.py)."""

from __future__ import annotations

import os

from shadowstore.io.faulty import FaultFileSystem
from shadowstore.io.fs import read_file
from shadowstore.io.replace import temporary_name
from shadowstore.restore.journal import open_journal
from shadowstore.restore.place import move_store_into_place

STAGED = "/sg/restore/db/priv1.edb"
DEST = "/sg/data/priv1.edb"
QUARANTINE = "/sg/logs/quarantine/restore-20240101T000000.000000Z"


def durable(fs: FaultFileSystem, path: str, data: bytes) -> None:
    fs.makedirs(os.path.dirname(path))
    handle = fs.open(path, create=True)
    handle.pwrite(data, 0)
    handle.fsync()
    fs.fsync_dir(os.path.dirname(path))


def staged_over_an_old_store() -> FaultFileSystem:
    fs = FaultFileSystem(seed=9)
    durable(fs, STAGED, b"restored")
    durable(fs, DEST, b"old")
    fs.makedirs("/sg/logs")
    return fs


def test_a_placed_store_and_the_one_it_replaced_survive_a_power_loss() -> None:
    fs = staged_over_an_old_store()
    assert move_store_into_place(fs, STAGED, DEST, QUARANTINE)
    after = fs.crash("drop")
    assert read_file(after, DEST) == b"restored"
    assert read_file(after, f"{QUARANTINE}/priv1.edb") == b"old"
    assert not after.exists(STAGED)


def test_placing_a_store_syncs_every_folder_a_move_touched() -> None:
    fs = staged_over_an_old_store()
    fs.fsyncs_seen.clear()
    move_store_into_place(fs, STAGED, DEST, QUARANTINE)
    synced = set(fs.fsyncs_seen)
    assert {QUARANTINE, os.path.dirname(QUARANTINE), os.path.dirname(DEST), os.path.dirname(STAGED)} <= synced


def test_placing_again_after_it_was_done_moves_nothing() -> None:
    fs = staged_over_an_old_store()
    move_store_into_place(fs, STAGED, DEST, QUARANTINE)
    assert not move_store_into_place(fs, STAGED, DEST, QUARANTINE)
    assert read_file(fs, DEST) == b"restored"


def test_a_restore_opened_again_clears_what_an_interrupted_journal_save_left() -> None:
    fs = FaultFileSystem(seed=10)
    journal_path = "/sg/restore/restore.json"
    plan = {"sg": "First Storage Group", "generations": [1, 2]}
    _journal, resumed = open_journal(fs, journal_path, plan, "place", "First Storage Group")
    assert not resumed
    stale = temporary_name(journal_path)
    durable(fs, stale, b'{"phase": "recov')  # a save cut between its write and its rename
    _journal, resumed = open_journal(fs, journal_path, plan, "place", "First Storage Group")
    assert resumed
    assert fs.listdir("/sg/restore") == ["restore.json"]
