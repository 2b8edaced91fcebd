"""The event log: records, rotation, reading back in order, and the ESE description prefix."""

from __future__ import annotations

import os

import pytest

from shadowstore import events as events_module
from shadowstore.events import EventLog


def test_events_rotate_and_read_back_oldest_first(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "ROTATE_BYTES", 2000)
    log = EventLog(os.path.join(tmp_path, "events"))
    for i in range(40):
        log.emit(1030, sg="SG", low=i, high=i, checkpoint="(0x1,0,0)")
    names = sorted(os.listdir(os.path.join(tmp_path, "events")))
    assert names == ["events.1.jsonl", "events.2.jsonl", "events.3.jsonl", "events.4.jsonl", "events.jsonl"]
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
