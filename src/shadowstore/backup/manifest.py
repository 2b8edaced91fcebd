"""The manifest of a backup set: ``manifest.json``, written last and atomically.

A backup set is the folder ``<sg>/<backup id>/`` in a target, holding the files of one backup and its
manifest. A set without a manifest is incomplete and is never used. Backup ids sort in time order:
``YYYYMMDDTHHMMSS.ffffffZ-<kind>-<random hex>``. See docs/backup.md for the full description.

Manifest (JSON object):

    format            "shadowstore-backup-set"
    format_version    1
    backup_id, kind ("full" | "copy" | "incremental" | "differential"), method ("streaming")
    sg, log_base, server
    started, ended    ISO 8601 UTC
    based_on          backup id of the previous backup in its chain (null for full and copy)
    log_signature     {"random", "created", "computer"}
    first_gen, last_gen   log generations contained (inclusive; 0-0 when there are none)
    databases         [{store, file, dbid, db_signature, page_size, dbtime, replay_start, replay_start_gen,
                        page_count, state}]   (full and copy only)
    files             [{name, role ("db" | "log" | "chk"), source, generation, size, sha256,
                        stored_size, stored_sha256, compression (null | "zstd")}]

``size``/``sha256`` describe the original bytes, ``stored_size``/``stored_sha256`` the bytes in the target
(after compression). ``parse_manifest`` rejects anything malformed, including names that would leave the set.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from shadowstore.backup.target import check_name
from shadowstore.errors import BackupSetError, InvalidParameterError

MANIFEST_NAME = "manifest.json"
FORMAT = "shadowstore-backup-set"
FORMAT_VERSION = 1
KINDS = ("full", "copy", "incremental", "differential")
ROLES = ("db", "log", "chk")
COMPRESSIONS = (None, "zstd")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"\d{8}T\d{6}\.\d{6}Z-(full|copy|incremental|differential)-[0-9a-f]{6,}")


@dataclass
class FileEntry:
    name: str  # inside the set folder, e.g. "priv1.edb.zst"
    role: str  # db | log | chk
    source: str  # the file it is a copy of, e.g. "priv1.edb", "E0000005.log"
    size: int
    sha256: str
    stored_size: int
    stored_sha256: str
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
    method: str = "streaming"
    databases: list[DatabaseEntry] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=False) + "\n").encode()

    def file(self, name: str) -> FileEntry:
        for entry in self.files:
            if entry.name == name:
                return entry
        raise BackupSetError(f"backup set {self.backup_id} has no file {name!r}")

    def logs(self) -> list[FileEntry]:
        return sorted((f for f in self.files if f.role == "log"), key=lambda f: f.generation or 0)


def set_folder(sg: str, backup_id: str) -> str:
    """Folder of a backup set inside its target."""
    return f"{sg}/{backup_id}"


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
    if raw.get("format_version") != FORMAT_VERSION:
        raise fail(f"manifest format version {raw.get('format_version')!r} is not supported")
    if raw["kind"] not in KINDS:
        raise fail(f"unknown backup kind {raw['kind']!r}")
    if not _ID.fullmatch(str(raw["backup_id"])):
        raise fail(f"backup id {raw['backup_id']!r} is malformed")
    files = []
    for item in raw["files"]:
        entry = FileEntry(**{k: item.get(k) for k in FileEntry.__dataclass_fields__})
        try:
            check_name(entry.name)
        except InvalidParameterError:
            raise fail(f"file name {entry.name!r} would leave the backup set") from None
        if "/" in entry.name:
            raise fail(f"file name {entry.name!r} must not contain '/'")
        if entry.role not in ROLES:
            raise fail(f"file {entry.name!r} has unknown role {entry.role!r}")
        if entry.compression not in COMPRESSIONS:
            raise fail(f"file {entry.name!r} has unknown compression {entry.compression!r}")
        for label in ("size", "stored_size"):
            value = getattr(entry, label)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 50:
                raise fail(f"file {entry.name!r} has an impossible {label} {value!r}")
        for label in ("sha256", "stored_sha256"):
            if not isinstance(getattr(entry, label), str) or not _HEX64.fullmatch(getattr(entry, label)):
                raise fail(f"file {entry.name!r} has a malformed {label}")
        if entry.role == "log" and not (isinstance(entry.generation, int) and entry.generation > 0):
            raise fail(f"log file {entry.name!r} has no generation")
        files.append(entry)
    if len({f.name for f in files}) != len(files):
        raise fail("two files have the same name")
    databases = [DatabaseEntry(**{k: d[k] for k in DatabaseEntry.__dataclass_fields__}) for d in raw["databases"]]
    first, last = int(raw["first_gen"]), int(raw["last_gen"])
    if first < 0 or last < first:
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
        based_on=raw.get("based_on"),
        method=str(raw.get("method", "streaming")),
        databases=databases,
        files=files,
    )
