"""What a target holds: the backup sets of each storage group, complete (with a manifest) or not."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shadowstore.backup.manifest import MANIFEST_NAME, Manifest, parse_manifest
from shadowstore.backup.target import Target
from shadowstore.errors import BackupSetError, BackupTargetError, BackupTargetNotFoundError

MANIFEST_READERS = 8  # manifests read at once


@dataclass
class SetInfo:
    sg: str
    backup_id: str
    files: list[str]  # names inside the set folder
    manifest: Manifest | None = None  # None: incomplete (no manifest) or unreadable (see problem)
    problem: str | None = None
    partial: list[str] = field(default_factory=list)  # names whose write was cut short (Target.partial)

    @property
    def folder(self) -> str:
        return f"{self.sg}/{self.backup_id}"

    @property
    def complete(self) -> bool:
        return self.manifest is not None

    @property
    def kind(self) -> str:
        return self.manifest.kind if self.manifest else self.backup_id.split("-")[1]

    def to_dict(self) -> dict[str, object]:
        m = self.manifest
        return {
            "id": self.backup_id,
            "sg": self.sg,
            "kind": self.kind,
            "complete": self.complete,
            "first_gen": m.first_gen if m else None,
            "last_gen": m.last_gen if m else None,
            "based_on": m.based_on if m else None,
            "started": m.started if m else None,
            "ended": m.ended if m else None,
            "files": len(m.files) if m else len(self.files),
            "bytes": sum(f.size for f in m.files) if m else None,
            "stored_bytes": sum(f.stored_size for f in m.files) if m else None,
            "problem": self.problem,
            "partial_files": len(self.partial),
        }


def list_sets(target: Target, sg: str | None = None, *, unfinished_writes: bool = True) -> list[SetInfo]:
    """Every backup set in ``target`` (of storage group ``sg`` if given), oldest first per storage group.

    A set whose manifest does not parse is listed as incomplete with the problem; it is never used. A backup
    killed while it wrote its first file has left only a partial file (``Target.partial``): it is listed too,
    as incomplete, so that ``backup prune`` can remove it. Looking for unfinished writes costs one more
    listing (on S3 a request); ``unfinished_writes=False`` skips it where only complete sets matter.
    """
    prefix = f"{sg}/" if sg else ""
    listed = target.list(prefix)
    try:
        unfinished = target.partial(prefix) if unfinished_writes else []
    except BackupTargetError:  # why: a target that will not list unfinished uploads must still list and restore
        unfinished = []  # (an S3 policy without s3:ListBucketMultipartUploads); prune, which needs them, asks again
    folders: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for names, which in ((listed, 0), (unfinished, 1)):
        for name in names:
            parts = name.split("/")
            if len(parts) == 3:
                folders.setdefault((parts[0], parts[1]), ([], []))[which].append(parts[2])
    sets = [
        SetInfo(group, backup_id, sorted(files), partial=sorted(partial))
        for (group, backup_id), (files, partial) in sorted(folders.items())
    ]
    with_manifest = [info for info in sets if MANIFEST_NAME in info.files]
    # why threads: on an object store each manifest is a round trip; read several at once
    with ThreadPoolExecutor(max_workers=MANIFEST_READERS, thread_name_prefix="catalog") as pool:
        raw = pool.map(target.read_bytes, [f"{info.folder}/{MANIFEST_NAME}" for info in with_manifest])
        for info, data in zip(with_manifest, raw, strict=True):
            try:
                info.manifest = parse_manifest(data, f"{target.url}/{info.folder}/{MANIFEST_NAME}")
            except BackupSetError as exc:
                info.problem = exc.message
    for info in sets:
        if MANIFEST_NAME not in info.files:
            info.problem = "no manifest: the backup did not finish"
            if info.partial:
                info.problem += f"; partly written: {', '.join(info.partial)}"
    return sets


def find_set(target: Target, backup_id: str) -> SetInfo:
    """The set with this id (in any storage group). Raises BackupTargetNotFoundError."""
    for info in list_sets(target):
        if info.backup_id == backup_id:
            return info
    raise BackupTargetNotFoundError(f"there is no backup set {backup_id!r} in {target.url}")


def previous_in_chain(target: Target, sg: str, kind: str) -> SetInfo | None:
    """The complete set a new backup of ``kind`` builds on: the newest full (differential) or the newest full
    or incremental (incremental); None for full and copy backups."""
    if kind in ("full", "copy"):
        return None
    wanted = ("full",) if kind == "differential" else ("full", "incremental")
    candidates = [s for s in list_sets(target, sg, unfinished_writes=False) if s.complete and s.kind in wanted]
    return candidates[-1] if candidates else None
