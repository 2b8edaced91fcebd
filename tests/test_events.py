"""The event log: records, rotation, reading back in order, the ESE description prefix, which events are durable
when emit returns, several processes appending and rotating one log, and the reserve that keeps the events of a
full disk."""

from __future__ import annotations

import collections
import json
import logging
import os
import subprocess
import sys

import pytest

from shadowstore import events as events_module
from shadowstore.events import EventLog
from shadowstore.io.faulty import FaultFileSystem


def test_events_rotate_and_read_back_oldest_first(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "ROTATE_BYTES", 2000)
    log = EventLog(os.path.join(tmp_path, "events"))
    for i in range(40):
        log.emit(1030, sg="SG", low=i, high=i, checkpoint="(0x1,0,0)")
    names = sorted(os.listdir(os.path.join(tmp_path, "events")))
    assert names == [
        "events.1.jsonl",
        "events.2.jsonl",
        "events.3.jsonl",
        "events.4.jsonl",
        "events.jsonl",
        "events.lock",
        "events.reserve",
    ]
    lows = [e.params["low"] for e in log.read()]
    assert lows == sorted(lows), "events come back oldest first across rotated files"
    assert lows[-1] == 39
    assert len(lows) < 40, "only the newest rotated files are kept"


def test_a_torn_last_line_is_skipped(tmp_path: os.PathLike[str]) -> None:
    log = EventLog(os.path.join(tmp_path, "events"))
    log.emit(302, sg="First Storage Group")
    assert log.path is not None
    with open(log.path, "a") as f:
        f.write('{"event_id": 30')  # a crash in the middle of an append
    again = EventLog(os.path.join(tmp_path, "events"))
    assert [e.event_id for e in again.read()] == [302]


def test_wait_for_returns_an_event_already_written(tmp_path: os.PathLike[str]) -> None:
    log = EventLog(None)
    log.emit(300, sg="SG")
    event = log.wait_for(300, timeout=0.0)
    assert event is not None
    assert event.description.endswith("SG: The database engine is initiating recovery steps.")
    assert log.wait_for(301, timeout=0.0) is None


# --- durability ---------------------------------------------------------------------------------------------------

INFO, WARNING, ERROR = 1001, 226, 428  # "was dismounted", "backup stopped prematurely", "rejecting updates"


def fault_log(seed: int) -> tuple[FaultFileSystem, EventLog]:
    fs = FaultFileSystem(seed=seed)
    return fs, EventLog("/home/events", fs)


def ids_after_power_loss(fs: FaultFileSystem) -> list[int]:
    return [e.event_id for e in EventLog("/home/events", fs.crash("drop")).read()]


def test_an_informational_event_is_not_synced() -> None:
    fs, log = fault_log(1)
    log.emit(INFO, sg="SG")
    assert [e.event_id for e in EventLog("/home/events", fs.copy()).read()] == [INFO]
    assert ids_after_power_loss(fs) == []


@pytest.mark.parametrize("event_id", [WARNING, ERROR])
def test_warning_and_error_events_are_durable_when_emit_returns(event_id: int) -> None:
    fs, log = fault_log(2)
    log.emit(INFO, sg="SG")
    log.emit(event_id, sg="SG")
    assert ids_after_power_loss(fs) == [INFO, event_id], "the sync covers the lines before it too"


def test_an_informational_event_emitted_with_sync_is_durable_when_emit_returns() -> None:
    fs, log = fault_log(3)
    log.emit(INFO, sg="SG", sync=True)
    log.emit(INFO, sg="SG2")
    assert ids_after_power_loss(fs) == [INFO]


def test_a_synced_event_in_the_file_a_rotation_started_is_durable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "ROTATE_BYTES", 1)  # every append after the first starts a new file
    fs, log = fault_log(4)
    log.emit(ERROR, sg="SG")
    log.emit(ERROR, sg="SG2")
    assert fs.stat("/home/events/events.1.jsonl") is not None
    assert [e.sg for e in EventLog("/home/events", fs.crash("drop")).read()] == ["SG", "SG2"]


def test_an_event_log_that_cannot_be_written_does_not_stop_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    fs, log = fault_log(5)
    fs.fail_fsync("events.jsonl")
    event = log.emit(ERROR, sg="SG")
    assert event.event_id == ERROR
    assert "could not write event log" in caplog.text


# --- several processes --------------------------------------------------------------------------------------------

APPENDER = """
import sys
from shadowstore import events
events.ROTATE_BYTES, events.KEEP_ROTATED = int(sys.argv[2]), int(sys.argv[3])
log = events.EventLog(sys.argv[1])
writer, count = sys.argv[4], int(sys.argv[5])
print("ready", flush=True)
sys.stdin.readline()  # go
for i in range(count):
    log.emit(1030, sg="SG", low=writer, high=i, checkpoint="x" * 200)
"""


def test_processes_appending_and_rotating_one_log_lose_no_line_and_write_none_twice_and_readers_see_each_once(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = os.path.join(tmp_path, "events")
    rotate, keep, writers, count = 8192, 400, 4, 300  # about 500 bytes a line: some 60 rotations
    monkeypatch.setattr(events_module, "KEEP_ROTATED", keep)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, folder, str(rotate), str(keep), f"w{n}", str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    try:
        for proc in procs:  # every writer is ready before any starts, so that they append at the same time
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reads = 0
        while any(proc.poll() is None for proc in procs):  # read while they write and rotate
            seen = collections.defaultdict(list)
            for event in EventLog(folder).read():
                seen[event.params["low"]].append(event.params["high"])
            for writer, numbers in seen.items():
                assert numbers == list(range(len(numbers))), f"read {reads} saw {writer}'s lines out of order"
            reads += 1
        assert [proc.wait(timeout=120) for proc in procs] == [0] * writers
    finally:
        for proc in procs:
            proc.kill()
    lines = collections.Counter((e.params["low"], e.params["high"]) for e in EventLog(folder).read())
    assert sorted(lines) == sorted((f"w{n}", i) for n in range(writers) for i in range(count)), "a line was lost"
    assert max(lines.values()) == 1, "a line was written twice"
    files = [name for name in os.listdir(folder) if name.endswith(".jsonl")]
    assert 20 < len(files) < keep, "the log rotated many times and kept every file"
    longest = max(len(json.dumps(e.to_dict(), sort_keys=True)) + 1 for e in EventLog(folder).read())
    for name in files:
        assert os.path.getsize(os.path.join(folder, name)) < rotate + longest, f"{name} grew past one rotation"
    for n in range(writers):  # each writer's lines in the order it wrote them
        mine = [e.params["high"] for e in EventLog(folder).read() if e.params["low"] == f"w{n}"]
        assert mine == list(range(count))


# --- a full disk ---------------------------------------------------------------------------------------------------

FOLDER = "/home/events"


def fill(fs: FaultFileSystem, path: str) -> None:
    """Take every byte the file system has left."""
    fs.append(path, b"\0" * fs.free_space(FOLDER), sync=True)


def test_a_full_disk_gives_the_reserve_back_so_that_its_events_are_written(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fs = FaultFileSystem(capacity=8 << 20)
    log = EventLog(FOLDER, fs=fs)
    log.emit(302, sg="First Storage Group")
    reserve = os.path.join(FOLDER, events_module.RESERVE_NAME)
    assert fs.read_bytes(reserve) == bytes(events_module.RESERVE_BYTES)  # made while the disk had room
    fill(fs, "/home/ballast")

    with caplog.at_level(logging.WARNING, logger="shadowstore.eventlog"):
        log.emit(1021, sg="First Storage Group", file="/home/logs/E00.log", released="none")
    assert [e.event_id for e in log.read()] == [302, 1021]
    assert not fs.exists(reserve)
    assert f"its reserve of {events_module.RESERVE_BYTES} bytes was given back" in caplog.text

    fill(fs, "/home/more ballast")  # what the reserve gave and the event left: now nothing can be written
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="shadowstore.eventlog"):
        log.emit(1021, sg="First Storage Group", file="/home/second/E00.log", released="none")
    assert [e.event_id for e in log.read()] == [302, 1021]
    assert "could not write event log" in caplog.text
    assert "the event: ShadowStore 1021: Storage group First Storage Group ran out" in caplog.text  # said, not lost
    assert "/home/second/E00.log" in caplog.text

    fs.unlink("/home/more ballast")
    fs.unlink("/home/ballast")
    log.emit(302, sg="First Storage Group")
    assert not fs.exists(reserve), "made again only once RESERVE_CHECK_SECONDS have passed"
    monkeypatch.setattr(events_module, "RESERVE_CHECK_SECONDS", 0.0)
    log.emit(302, sg="First Storage Group")
    assert fs.read_bytes(reserve) == bytes(events_module.RESERVE_BYTES)
    assert [e.event_id for e in log.read()] == [302, 1021, 302, 302]


def test_the_reserve_is_not_made_where_it_would_take_much_of_what_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    fs = FaultFileSystem(capacity=events_module.RESERVE_ROOM * events_module.RESERVE_BYTES - 1)
    log = EventLog(FOLDER, fs=fs)
    log.emit(302, sg="First Storage Group")
    assert [e.event_id for e in log.read()] == [302]
    assert not fs.exists(os.path.join(FOLDER, events_module.RESERVE_NAME))


def test_an_append_the_full_disk_cut_short_leaves_no_part_of_its_line() -> None:
    fs = FaultFileSystem(capacity=8 << 20)
    log = EventLog(FOLDER, fs=fs)
    log.emit(302, sg="First Storage Group")
    fs.unlink(os.path.join(FOLDER, events_module.RESERVE_NAME))  # given back already
    fs.append("/home/ballast", bytes(fs.free_space(FOLDER) - 40), sync=True)  # room for part of a line only
    log.emit(1021, sg="First Storage Group", file="/home/logs/E00.log", released="none")  # cannot be written
    fs.unlink("/home/ballast")
    log.emit(302, sg="First Storage Group")
    assert [e.event_id for e in log.read()] == [302, 302]  # the last line does not run on from a part of 1021
