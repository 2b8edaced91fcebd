"""The manifest's times: what a restore to a point in time reads to know what a set covers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shadowstore.backup.manifest import DatabaseEntry, FileEntry, Manifest, parse_manifest
from shadowstore.errors import BackupSetError

T = 1_795_600_000_000_000  # 2026-11-25 in microseconds


def manifest(**changes: Any) -> dict[str, Any]:
    m = Manifest(
        backup_id="20261125T101500.000000Z-full-abcdef",
        kind="full",
        sg="First Storage Group",
        log_base="E00",
        server="vm",
        started="2026-11-25T10:15:00+00:00",
        ended="2026-11-25T10:15:02+00:00",
        log_signature={"random": 1, "created": 2, "computer": "vm"},
        first_gen=3,
        last_gen=4,
        logs_end_us=T + 5,
        databases=[
            DatabaseEntry("Mailbox Store", "priv1.edb", 1, {}, 8192, 10, "(0x3,0,0)", 3, 100, "Dirty Shutdown", T)
        ],
        files=[FileEntry("E0000003.log", "log", "E0000003.log", 10, "0" * 64, 10, "00000000", None, 3)],
    )
    raw: dict[str, Any] = json.loads(m.to_json())
    raw.update(changes)
    return raw


def test_times_round_trip() -> None:
    parsed = parse_manifest(json.dumps(manifest()).encode(), "m")
    assert parsed.logs_end_us == T + 5
    assert parsed.databases[0].max_commit_us == T


def test_sets_that_do_not_record_times_still_parse() -> None:
    raw = manifest()
    del raw["logs_end_us"]
    del raw["databases"][0]["max_commit_us"]
    parsed = parse_manifest(json.dumps(raw).encode(), "m")
    assert parsed.logs_end_us is None
    assert parsed.databases[0].max_commit_us is None


@pytest.mark.parametrize("bad", [-1, 0, "12", True, 1.5, 1 << 63])
def test_implausible_times_are_refused(bad: Any) -> None:
    with pytest.raises(BackupSetError, match=r"logs_end_us .* is not a plausible time"):
        parse_manifest(json.dumps(manifest(logs_end_us=bad)).encode(), "m")
    raw = manifest()
    raw["databases"][0]["max_commit_us"] = bad
    with pytest.raises(BackupSetError, match=r"max_commit_us .* is not a plausible time"):
        parse_manifest(json.dumps(raw).encode(), "m")
