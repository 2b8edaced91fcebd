"""What a target holds: the backup sets of each home and storage group, and the state each is in.

One listing of the target (names and sizes) and one read per manifest (and per lease of a set without one)
give every set's state:

* ``complete``: the manifest is there and every file it lists is there with the size it records;
* ``damaged``: the manifest is there but a file it lists is missing or has another size: never used;
* ``running``: no manifest yet, and a live lease (backup/lease.py): a backup is writing it;
* ``incomplete``: no manifest and no live lease: a backup that failed or was killed;
* ``unreadable``: a manifest that cannot be read, does not parse, vanished while the target was listed (a
  prune running at the same time), or belongs to another folder than the one it lies in.

One set's trouble is that set's state, never an error of the whole listing: only a target that cannot be
listed at all raises.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shadowstore.backup.layout import home_prefix, parse_set_path, set_folder, stream_id
from shadowstore.backup.lease import LEASE_NAME, Lease, read_lease
from shadowstore.backup.manifest import MANIFEST_NAME, FileEntry, Manifest, parse_manifest
from shadowstore.backup.target import Target
from shadowstore.errors import (
    BackupSetError,
    BackupTargetError,
    BackupTargetNotFoundError,
    InvalidParameterError,
)

MANIFEST_READERS = 8  # manifests read at once
COMPLETE, DAMAGED, RUNNING, INCOMPLETE, UNREADABLE = "complete", "damaged", "running", "incomplete", "unreadable"


@dataclass
class SetInfo:
    home: str
    sg: str
    backup_id: str
    sizes: dict[str, int]  # name inside the set folder -> stored size, as listed
    manifest: Manifest | None = None  # None: no manifest, or an unreadable one (see problem)
    problem: str | None = None
    partial: list[str] = field(default_factory=list)  # names whose write was cut short (Target.partial)
    damage: list[str] = field(default_factory=list)  # files the manifest lists that are missing or resized
    lease: Lease | None = None  # read for sets without a manifest only
    live: bool = False  # a set without a manifest whose lease is live
    lease_note: str | None = None  # how the lease was judged

    @property
    def folder(self) -> str:
        return set_folder(self.home, self.sg, self.backup_id)

    @property
    def files(self) -> list[str]:
        return sorted(self.sizes)

    @property
    def complete(self) -> bool:
        """A manifest that parses: the set finished. Whether its files are all there is ``whole``."""
        return self.manifest is not None

    @property
    def whole(self) -> bool:
        """Complete, and every file the manifest lists is in the target with the size it records."""
        return self.manifest is not None and not self.damage

    @property
    def state(self) -> str:
        if self.manifest is not None:
            return DAMAGED if self.damage else COMPLETE
        if MANIFEST_NAME in self.sizes:
            return UNREADABLE
        return RUNNING if self.live else INCOMPLETE

    @property
    def kind(self) -> str:
        return self.manifest.kind if self.manifest else self.backup_id.split("-")[1]

    @property
    def stream(self) -> str | None:
        return stream_id(self.manifest.log_signature) if self.manifest else None

    def same_stream(self, other: SetInfo) -> bool:
        """Both complete and of one home, storage group and log stream."""
        return (
            self.manifest is not None
            and other.manifest is not None
            and (self.home, self.sg) == (other.home, other.sg)
            and self.manifest.log_signature == other.manifest.log_signature
        )

    def why_not_usable(self) -> str:
        """Why the set is not used, in a few words (for a set that is not whole)."""
        if self.damage:
            return "damaged: " + "; ".join(self.damage)
        return f"{self.state}: {self.problem or self.lease_note or 'no manifest'}"

    def to_dict(self) -> dict[str, object]:
        m = self.manifest
        return {
            "home": self.home,
            "id": self.backup_id,
            "sg": self.sg,
            "kind": self.kind,
            "state": self.state,
            "complete": self.complete,
            "whole": self.whole,
            "stream": self.stream,
            "server": m.server if m else None,
            "first_gen": m.first_gen if m else None,
            "last_gen": m.last_gen if m else None,
            "based_on": m.based_on if m else None,
            "started": m.started if m else None,
            "ended": m.ended if m else None,
            "files": len(m.files) if m else len(self.sizes),
            "bytes": sum(f.size for f in m.files) if m else None,
            "stored_bytes": sum(f.stored_size for f in m.files) if m else None,
            "problem": self.problem,
            "damage": list(self.damage),
            "lease": self.lease_note,
            "partial_files": len(self.partial),
        }


def list_sets(
    target: Target, sg: str | None = None, *, home: str | None = None, unfinished_writes: bool = True
) -> list[SetInfo]:
    """Every backup set in ``target`` (of home ``home`` and storage group ``sg`` when given), ordered by home,
    storage group and id.

    Looking for unfinished writes costs one more listing (on S3 a request); ``unfinished_writes=False`` skips
    it where only sets with a manifest matter. Raises BackupTargetError only when the target cannot be listed.
    """
    if sg is not None and home is None:
        raise InvalidParameterError("listing one storage group's sets needs the home they belong to")
    prefix = home_prefix(home, sg)
    # why the unfinished writes first: a backup writes its lease before any file and releases it only after its
    # manifest, so a write seen unfinished here has its lease or its manifest in the listing made after it.
    # Listed the other way round, a backup that began between the two listings shows a write and no lease: dead.
    try:
        unfinished = target.partial(prefix) if unfinished_writes else []
    except BackupTargetError:  # why: a target that will not list unfinished uploads must still list and restore
        unfinished = []  # (an S3 policy without s3:ListBucketMultipartUploads); prune, which needs them, asks again
    listed = target.sizes(prefix)
    folders: dict[tuple[str, str, str], SetInfo] = {}
    for name, size in listed.items():
        where = parse_set_path(name)
        if where is not None:
            _info(folders, where.home, where.sg, where.backup_id).sizes[where.name] = size
    for name in unfinished:
        where = parse_set_path(name)
        if where is not None:
            _info(folders, where.home, where.sg, where.backup_id).partial.append(where.name)
    sets = [folders[key] for key in sorted(folders)]
    _read_manifests(target, [s for s in sets if MANIFEST_NAME in s.sizes])
    for info in sets:
        if info.manifest is not None:
            info.damage = _damage(info)
        elif MANIFEST_NAME not in info.sizes:
            _judge_lease(target, info)
    return sets


def _info(folders: dict[tuple[str, str, str], SetInfo], home: str, sg: str, backup_id: str) -> SetInfo:
    key = (home, sg, backup_id)
    if key not in folders:
        folders[key] = SetInfo(home, sg, backup_id, {})
    return folders[key]


def _read_manifests(target: Target, sets: list[SetInfo]) -> None:
    def read(info: SetInfo) -> bytes | str:
        try:
            return target.read_bytes(f"{info.folder}/{MANIFEST_NAME}")
        except BackupTargetNotFoundError:
            return "its manifest vanished while the target was listed (is a prune deleting it?)"
        except BackupTargetError as exc:
            return f"its manifest cannot be read: {exc.message}"

    # why threads: on an object store each manifest is a round trip; read several at once
    with ThreadPoolExecutor(max_workers=MANIFEST_READERS, thread_name_prefix="catalog") as pool:
        for info, data in zip(sets, pool.map(read, sets), strict=True):
            if isinstance(data, str):
                info.problem = data
                continue
            try:
                manifest = parse_manifest(data, f"{target.url}/{info.folder}/{MANIFEST_NAME}")
            except BackupSetError as exc:
                info.problem = exc.message
                continue
            info.problem = _misplaced(info, manifest)
            if info.problem is None:
                info.manifest = manifest


def _misplaced(info: SetInfo, m: Manifest) -> str | None:
    """Why a manifest does not belong in the folder it lies in (copied or moved by hand), or None."""
    if m.home_id is not None and m.home_id != info.home:
        return f"its manifest says it belongs to home {m.home_id}, but it lies in the folder of home {info.home}"
    if (m.sg, m.backup_id) != (info.sg, info.backup_id):
        return f"its manifest describes set {m.sg}/{m.backup_id}, but it lies in {info.sg}/{info.backup_id}"
    return None


def _damage(info: SetInfo) -> list[str]:
    assert info.manifest is not None
    found = []
    for entry in info.manifest.files:
        size = info.sizes.get(entry.name)
        if size is None:
            found.append(f"{entry.name} is missing")
        elif size != entry.stored_size:
            found.append(f"{entry.name} is {size:,} bytes, the manifest says {entry.stored_size:,}")
    return found


def _judge_lease(target: Target, info: SetInfo) -> None:
    if LEASE_NAME not in info.sizes:
        info.lease_note = "no lease: the backup did not finish"
    else:
        try:
            info.lease = read_lease(target, info.folder)
        except BackupTargetError as exc:  # why: unknown counts as live, so nothing is deleted on a guess
            info.live, info.lease_note = True, f"its lease cannot be read ({exc.message}); treated as live"
            return
        if info.lease is None:
            info.lease_note = "its lease is unreadable or gone: the backup did not finish"
        else:
            info.live, info.lease_note = info.lease.judge()
    info.problem = "no manifest: " + (info.lease_note or "")
    if info.partial:
        info.problem += f"; partly written: {', '.join(info.partial)}"


def find_set(target: Target, backup_id: str, *, home: str | None = None) -> SetInfo:
    """The set with this id (of ``home`` when given). Raises BackupTargetNotFoundError, or
    InvalidParameterError when sets of several homes have the id."""
    found = [s for s in list_sets(target, home=home) if s.backup_id == backup_id]
    if not found:
        raise BackupTargetNotFoundError(f"there is no backup set {backup_id!r} in {target.url}")
    if len(found) > 1:
        homes = ", ".join(s.home for s in found)
        raise InvalidParameterError(
            f"backup set {backup_id!r} is in several homes ({homes})", hint="name one with --home-id"
        )
    return found[0]


def homes_in(target: Target) -> list[str]:
    """The ids of the homes that have sets in ``target``."""
    return sorted({s.home for s in list_sets(target, unfinished_writes=False)})


def previous_in_chain(
    target: Target, home: str, sg: str, kind: str, log_signature: dict[str, object]
) -> SetInfo | None:
    """The set a new backup of ``kind`` builds on: the newest whole full (differential), or full or
    incremental (incremental), of this home, storage group and log stream; None for full and copy backups."""
    if kind in ("full", "copy"):
        return None
    wanted = ("full",) if kind == "differential" else ("full", "incremental")
    candidates = [
        s
        for s in list_sets(target, sg, home=home, unfinished_writes=False)
        if s.whole and s.kind in wanted and s.manifest is not None and s.manifest.log_signature == log_signature
    ]
    return max(candidates, key=age, default=None)


def other_history(
    target: Target, home: str, sg: str, log_signature: dict[str, object], logs: list[FileEntry]
) -> tuple[SetInfo, int] | None:
    """A set of ``target`` (of this home, storage group and log stream) holding one of the generations ``logs``
    copies with other bytes, and that generation; None when there is none.

    An archived log never changes, so two copies of one generation differ only when two histories share the
    home id and the stream: the home's folder was copied whole to another server (a cloned machine) and both
    back up here, or the machine was rolled back to an earlier image and wrote those generations again. Their
    sets would mix in one chain, and a restore of one home could bring back the other's data."""
    mine = {e.generation: e.sha256 for e in logs if e.generation is not None}
    for s in list_sets(target, sg, home=home, unfinished_writes=False):
        if s.manifest is None or s.manifest.log_signature != log_signature:
            continue
        for entry in s.manifest.logs():
            if entry.generation in mine and mine[entry.generation] != entry.sha256:
                return s, entry.generation
    return None


def age(info: SetInfo) -> tuple[str, int, str]:
    """Orders the complete sets of one home and storage group from oldest to newest by what cannot step back:
    the log stream's creation, then the last log generation in the set (the id's clock time breaks ties). A
    stream's creation time is after that of the streams it follows even when the clock stepped back in between
    (format/common.Signature.new)."""
    assert info.manifest is not None, info.backup_id
    return (str(info.manifest.log_signature.get("created", "")), info.manifest.last_gen, info.backup_id)
