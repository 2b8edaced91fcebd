"""Files of the log folder set aside and created (engine/layout.py, and the torn-tail copy of engine/mountlog.py):
a quarantined file is durably in quarantine before anything takes its place, nothing quarantined is written over,
and a file is created through a temporary file of its own whose name no log reader can take for a log."""

from __future__ import annotations

import os

import pytest

from shadowstore.config import SgConfig
from shadowstore.engine import layout
from shadowstore.engine.logreader import Generation, TornTail
from shadowstore.engine.logstream import LogSet
from shadowstore.engine.mountlog import quarantine_torn_tail
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.io.fs import read_file
from shadowstore.io.replace import remove_temporaries_of, temporaries_of

LOGS = "/sg"
HEX = "0123456789abcdef"


def durable(fs: FaultFileSystem, path: str, data: bytes) -> None:
    handle = fs.open(path, create=True)
    handle.pwrite(data, 0)
    handle.fsync()
    fs.fsync_dir(os.path.dirname(path))


def log_folder(seed: int = 0) -> FaultFileSystem:
    fs = FaultFileSystem(seed=seed)
    fs.makedirs(LOGS)
    return fs


# --- quarantine ---------------------------------------------------------------------------------------------------


def test_a_quarantined_file_is_still_in_quarantine_after_a_power_loss() -> None:
    fs = log_folder()
    durable(fs, f"{LOGS}/E0000005.log", b"stranger")
    moved = layout.quarantine(fs, f"{LOGS}/E0000005.log", LOGS)
    assert os.path.dirname(moved) == f"{LOGS}/quarantine"
    after = fs.crash("drop")
    assert not after.exists(f"{LOGS}/E0000005.log")
    assert read_file(after, moved) == b"stranger"


def test_quarantine_syncs_the_quarantine_folder_and_the_folder_the_file_left() -> None:
    fs = log_folder()
    fs.makedirs(f"{LOGS}/quarantine")
    durable(fs, f"{LOGS}/E00.log", b"stranger")
    fs.fsyncs_seen.clear()
    layout.quarantine(fs, f"{LOGS}/E00.log", LOGS)
    assert sorted(fs.fsyncs_seen) == [LOGS, f"{LOGS}/quarantine"]


def test_quarantine_never_writes_over_a_file_quarantined_at_the_same_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "now_us", lambda: 1_000_000)  # both moves in one microsecond
    fs = log_folder()
    durable(fs, f"{LOGS}/E00.log", b"first")
    first = layout.quarantine(fs, f"{LOGS}/E00.log", LOGS)
    durable(fs, f"{LOGS}/E00.log", b"second")
    second = layout.quarantine(fs, f"{LOGS}/E00.log", LOGS)
    assert first != second
    assert (read_file(fs, first), read_file(fs, second)) == (b"first", b"second")


def test_a_torn_tail_copied_twice_at_one_place_keeps_both_copies_durably() -> None:
    fs = log_folder()
    header = layout.create_log_stream(fs, LOGS, "E00", 64 * 1024, 8192, False)
    config = SgConfig("SG", "E00", LOGS, LOGS, LOGS, 64 * 1024, 8192, False, [])
    for junk in (b"\x11" * 100, b"\x22" * 100):  # torn at the same place by two crashes
        handle = fs.open(f"{LOGS}/E00.log")
        handle.pwrite(junk, 8192)
        gen = Generation(f"{LOGS}/E00.log", header, torn=TornTail(8192, 100, "block header fails its checksum"))
        quarantine_torn_tail(fs, config, gen, handle)
        assert handle.pread(100, 8192) == bytes(100)
    after = fs.crash("drop")
    copies = sorted(after.listdir(f"{LOGS}/quarantine"))
    assert [read_file(after, f"{LOGS}/quarantine/{name}") for name in copies] == [b"\x11" * 100, b"\x22" * 100]


# --- creating files -----------------------------------------------------------------------------------------------


def test_write_zero_file_leaves_a_stale_temporary_alone_for_the_sweep() -> None:
    fs = log_folder()
    stale = f"{LOGS}/.E00tmp.log.tmp-{HEX}"
    durable(fs, stale, b"left by a crash")
    layout.write_zero_file(fs, f"{LOGS}/E00tmp.log", 4096, b"head")
    assert read_file(fs, f"{LOGS}/E00tmp.log") == b"head" + bytes(4092)
    assert read_file(fs, stale) == b"left by a crash"
    assert temporaries_of(fs, f"{LOGS}/E00tmp.log") == [stale]
    assert remove_temporaries_of(fs, f"{LOGS}/E00tmp.log") == [stale]
    assert fs.listdir(LOGS) == ["E00tmp.log"]


def test_write_zero_file_removes_its_temporary_when_the_disk_is_full() -> None:
    fs = log_folder()
    fs.capacity = (1 << 40) - fs.free_space("/") + 1000
    with pytest.raises(OSError, match="No space left"):
        layout.write_zero_file(fs, f"{LOGS}/res1.log", 64 * 1024)
    assert fs.listdir(LOGS) == []


def test_temporary_files_are_never_taken_for_logs() -> None:
    fs = log_folder()
    for name in ("E00.log", "E00tmp.log", "E000000A.log", "res1.log", "res2.log"):
        durable(fs, f"{LOGS}/.{name}.tmp-{HEX}", b"x")
    found = LogSet.scan(fs, LOGS, "E00")
    assert (found.archived, found.current, found.tmp, found.reserves) == ({}, None, None, [])
