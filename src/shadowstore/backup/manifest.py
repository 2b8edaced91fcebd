"""The manifest of a backup set: ``manifest.json``, written last and atomically.

A backup set is the folder ``<home id>/<sg>/<backup id>/`` in a target (backup/layout.py), holding the files
of one backup and its manifest. A set without a manifest is incomplete and is never used. Backup ids read as
the time the backup began on the machine that took it: ``YYYYMMDDTHHMMSS.ffffffZ-<kind>-<random hex>``;
nothing judges a set by that time. See docs/backup.md for the full description.

Manifest (JSON object):

    format            "shadowstore-backup-set"
    format_version    2 (1: written before home ids; read, with home_id null)
    backup_id, kind ("full" | "copy" | "incremental" | "differential"), method ("streaming")
    home_id           the server home that took it (the first folder of the set's path)
    sg, log_base, server
    started, ended    ISO 8601 UTC
    based_on          backup id of the previous backup in its chain (null for full and copy)
    log_signature     {"random", "created", "computer"}
    first_gen, last_gen   log generations contained (inclusive; 0-0 when there are none)
    logs_end_us       creation time of generation last_gen + 1: every commit made before it is in a log up
                      to last_gen (null in sets that do not record it)
    databases         [{store, file, dbid, db_signature, page_size, dbtime, replay_start, replay_start_gen,
                        page_count, state, max_commit_us}]   (full and copy only; max_commit_us: no
                        transaction in the copy was committed after it)
    files             [{name, role ("db" | "log" | "chk"), source, generation, size, sha256,
                        stored_size, stored_crc32c, compression (null | "zstd")}]

``size``/``sha256`` describe the original bytes, ``stored_size``/``stored_crc32c`` the bytes in the target
(after compression). ``parse_manifest`` rejects anything malformed, including names that would leave the set.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from shadowstore.backup.layout import BACKUP_ID
from shadowstore.backup.target import check_name
from shadowstore.errors import BackupSetError, InvalidParameterError

MANIFEST_NAME = "manifest.json"
FORMAT = "shadowstore-backup-set"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
KINDS = ("full", "copy", "incremental", "differential")
ROLES = ("db", "log", "chk")
COMPRESSIONS = (None, "zstd")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX8 = re.compile(r"[0-9a-f]{8}")


@dataclass
class FileEntry:
    name: str  # inside the set folder, e.g. "priv1.edb.zst"
    role: str  # db | log | chk
    source: str  # the file it is a copy of, e.g. "priv1.edb", "E0000005.log"
    size: int
    sha256: str
    stored_size: int
    stored_crc32c: str  # 8 hex digits: a cheap check of the stored bytes; sha256 covers the content
    compression: str | None = None
    generation: int | None = None  # for logs


@dataclass
class DatabaseEntry:
    store: str
    file: str
    dbid: int
    db_signature: dict[str, Any]
    page_size: int
    dbtime: int
    replay_start: str
    replay_start_gen: int
    page_count: int
    state: str
    max_commit_us: int | None = None


@dataclass
class Manifest:
    backup_id: str
    kind: str
    sg: str
    log_base: str
    server: str
    started: str
    ended: str
    log_signature: dict[str, Any]
    first_gen: int
    last_gen: int
    based_on: str | None = None
    logs_end_us: int | None = None
    method: str = "streaming"
    home_id: str | None = None
    databases: list[DatabaseEntry] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=False) + "\n").encode()

    def logs(self) -> list[FileEntry]:
        return sorted((f for f in self.files if f.role == "log"), key=lambda f: f.generation or 0)


def parse_manifest(data: bytes, where: str) -> Manifest:
    """Parse and validate a manifest; raises BackupSetError naming ``where`` and the problem."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupSetError(f"{where}: the manifest is not valid JSON ({exc})") from None
    try:
        return _validate(raw, where)
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupSetError(f"{where}: the manifest is malformed ({type(exc).__name__}: {exc})") from None


def _validate(raw: dict[str, Any], where: str) -> Manifest:
    def fail(message: str) -> BackupSetError:
        return BackupSetError(f"{where}: {message}")

    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise fail("not a ShadowStore backup manifest")
    if raw.get("format_version") not in READABLE_VERSIONS:
        raise fail(f"manifest format version {raw.get('format_version')!r} is not supported")
    if raw["kind"] not in KINDS:
        raise fail(f"unknown backup kind {raw['kind']!r}")
    if not isinstance(raw["backup_id"], str) or not BACKUP_ID.fullmatch(raw["backup_id"]):
        raise fail(f"backup id {raw['backup_id']!r} is malformed")
    based_on = raw.get("based_on")
    if based_on is not None and (not isinstance(based_on, str) or not BACKUP_ID.fullmatch(based_on)):
        raise fail(f"based_on {based_on!r} is not a backup id")
    if not isinstance(raw["files"], list) or not isinstance(raw["databases"], list):
        raise fail("files and databases must be lists")
    files = [_file_entry(item, fail) for item in raw["files"]]
    if len({f.name for f in files}) != len(files):
        raise fail("two files have the same name")
    databases = [_database_entry(item, fail) for item in raw["databases"]]
    home_id = raw.get("home_id") if raw["format_version"] >= 2 else None
    if home_id is not None and not isinstance(home_id, str):
        raise fail(f"home_id {home_id!r} is not a home id")
    first, last = _count(raw["first_gen"], "first_gen", fail), _count(raw["last_gen"], "last_gen", fail)
    if last < first:
        raise fail(f"log range {first}-{last} is impossible")
    return Manifest(
        backup_id=raw["backup_id"],
        kind=raw["kind"],
        sg=str(raw["sg"]),
        log_base=str(raw["log_base"]),
        server=str(raw["server"]),
        started=str(raw["started"]),
        ended=str(raw["ended"]),
        log_signature=dict(raw["log_signature"]),
        first_gen=first,
        last_gen=last,
        based_on=based_on,
        logs_end_us=_time_or_none(raw.get("logs_end_us"), "logs_end_us", fail),
        method=str(raw.get("method", "streaming")),
        home_id=home_id,
        format_version=raw["format_version"],
        databases=databases,
        files=files,
    )


def _count(value: Any, label: str, fail: Any) -> int:
    """A non-negative integer that is really one (not a bool, a float or a string)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 50:
        raise fail(f"{label} {value!r} is not a plausible count")
    return value


def _time_or_none(value: Any, label: str, fail: Any) -> int | None:
    """A time in microseconds since 1970, or None."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 1 << 62:
        raise fail(f"{label} {value!r} is not a plausible time")
    return value


def _safe_name(name: Any, fail: Any) -> str:
    try:
        check_name(name)
    except (InvalidParameterError, TypeError, AttributeError):
        raise fail(f"file name {name!r} would leave the backup set") from None
    if "/" in name:
        raise fail(f"file name {name!r} must not contain '/'")
    return str(name)


def _file_entry(item: Any, fail: Any) -> FileEntry:
    if not isinstance(item, dict):
        raise fail(f"a file entry is not an object: {item!r}")
    entry = FileEntry(**{k: item.get(k) for k in FileEntry.__dataclass_fields__})  # type: ignore[arg-type]
    _safe_name(entry.name, fail)
    if entry.role not in ROLES:
        raise fail(f"file {entry.name!r} has unknown role {entry.role!r}")
    if entry.compression not in COMPRESSIONS:
        raise fail(f"file {entry.name!r} has unknown compression {entry.compression!r}")
    for label in ("size", "stored_size"):
        try:
            _count(getattr(entry, label), label, fail)
        except BackupSetError:
            raise fail(f"file {entry.name!r} has an impossible {label} {getattr(entry, label)!r}") from None
    if not isinstance(entry.sha256, str) or not _HEX64.fullmatch(entry.sha256):
        raise fail(f"file {entry.name!r} has a malformed sha256")
    if not isinstance(entry.stored_crc32c, str) or not _HEX8.fullmatch(entry.stored_crc32c):
        raise fail(f"file {entry.name!r} has a malformed stored_crc32c")
    if entry.role == "log" and not (
        isinstance(entry.generation, int) and not isinstance(entry.generation, bool) and entry.generation > 0
    ):
        raise fail(f"log file {entry.name!r} has no generation")
    if not isinstance(entry.source, str) or not entry.source:
        raise fail(f"file {entry.name!r} names no source")
    return entry


def _database_entry(item: Any, fail: Any) -> DatabaseEntry:
    if not isinstance(item, dict):
        raise fail(f"a database entry is not an object: {item!r}")
    optional = {"max_commit_us"}
    fields: dict[str, Any] = {k: item.get(k) if k in optional else item[k] for k in DatabaseEntry.__dataclass_fields__}
    entry = DatabaseEntry(**fields)
    _safe_name(entry.file, fail)
    _time_or_none(entry.max_commit_us, f"database {entry.file!r} max_commit_us", fail)
    for label in ("dbid", "dbtime", "replay_start_gen", "page_count"):
        _count(getattr(entry, label), f"database {entry.file!r} {label}", fail)
    if entry.page_size not in (4096, 8192, 16384, 32768):
        raise fail(f"database {entry.file!r} has an impossible page size {entry.page_size!r}")
    if not isinstance(entry.db_signature, dict):
        raise fail(f"database {entry.file!r} has a malformed signature")
    return entry
