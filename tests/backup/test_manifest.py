"""Parsing a manifest: its times (what a restore to a point in time reads to know what a set covers), and a
refusal naming the problem for every kind of damage a manifest read back from a target may carry."""

from __future__ import annotations

import json
import re
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


def _file(**changes: Any) -> dict[str, Any]:
    raw = manifest()
    raw["files"][0].update(changes)
    return raw


def _database(**changes: Any) -> dict[str, Any]:
    raw = manifest()
    raw["databases"][0].update(changes)
    return raw


MALFORMED = [
    (manifest(format="something else"), "not a ShadowStore backup manifest"),
    (manifest(format_version=99), "manifest format version 99 is not supported"),
    (manifest(kind="weekly"), "unknown backup kind 'weekly'"),
    (manifest(backup_id="../etc"), "backup id '../etc' is malformed"),
    (manifest(based_on="yesterday"), "based_on 'yesterday' is not a backup id"),
    (manifest(files={}), "files and databases must be lists"),
    (manifest(first_gen=5, last_gen=4), "log range 5-4 is impossible"),
    (manifest(first_gen=-1), "first_gen -1 is not a plausible count"),
    (manifest(last_gen=True), "last_gen True is not a plausible count"),
    (manifest(files=["E0000003.log"]), "a file entry is not an object"),
    (manifest(files=manifest()["files"] * 2), "two files have the same name"),
    (_file(name="a/E0000003.log"), "must not contain '/'"),
    (_file(name="/etc/passwd"), "would leave the backup set"),
    (_file(role="config"), "unknown role 'config'"),
    (_file(compression="gzip"), "unknown compression 'gzip'"),
    (_file(size=-10), "impossible size -10"),
    (_file(stored_size="10"), "impossible stored_size '10'"),
    (_file(sha256="abc"), "malformed sha256"),
    (_file(stored_crc32c="xyz"), "malformed stored_crc32c"),
    (_file(generation=None), "log file 'E0000003.log' has no generation"),
    (_file(generation=True), "log file 'E0000003.log' has no generation"),
    (_file(source=""), "names no source"),
    (manifest(databases=[7]), "a database entry is not an object"),
    (_database(file="../priv1.edb"), "would leave the backup set"),
    (_database(page_size=1000), "impossible page size 1000"),
    (_database(page_count=-1), "page_count -1 is not a plausible count"),
    (_database(db_signature="none"), "malformed signature"),
]


@pytest.mark.parametrize(("raw", "problem"), MALFORMED, ids=[problem for _raw, problem in MALFORMED])
def test_a_malformed_manifest_is_refused_naming_the_problem(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(BackupSetError, match=re.escape(problem)) as refused:
        parse_manifest(json.dumps(raw).encode(), "target/First Storage Group/set/manifest.json")
    assert str(refused.value).startswith("target/First Storage Group/set/manifest.json: ")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{not json", "the manifest is not valid JSON"),
        (b"\xff\xfe", "the manifest is not valid JSON"),
        (json.dumps({k: v for k, v in manifest().items() if k != "sg"}).encode(), "malformed (KeyError: 'sg')"),
    ],
)
def test_a_manifest_that_does_not_parse_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(BackupSetError, match=re.escape(problem)):
        parse_manifest(data, "m")
