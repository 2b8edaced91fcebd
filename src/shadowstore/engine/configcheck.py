"""Whether a storage group's configuration still matches its files, and what a home's folders hold that the
configuration does not name.

Once a storage group has logs, its log base and folders are facts on disk: the log folder holds ``E00.log`` and
the archived generations, the system folder ``E00.chk``, the data folder the stores, and every store's header
names the log stream (its signature) it belongs to. Editing ``log_base`` or a folder in shadowstore.toml moves
none of that. Before this check the next mount silently started a second log stream beside the first (a changed
log base or log folder), rebuilt the checkpoint and took the storage group's lock in another folder (a changed
system folder), or called a store missing (a changed data folder).

:func:`check_storage_group` refuses such a configuration with ConfigMismatchError naming what the configuration
says, what the disk holds, and the value to put back; :func:`mismatches` gives the same findings to ``status``.
:func:`scan_folders` lists the log streams, checkpoints and stores in a home's folders, so that ``status`` can
report those no storage group of the configuration names (:func:`unclaimed_streams`, :func:`unclaimed_stores`).

Everything here only reads. A storage group whose configured files are all there costs one listing of its log
folder and a stat per file; the home's folders are searched only when something the configuration names is
missing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field

from shadowstore.config import CONFIG_NAME, PREVIOUS_NAME, SgConfig
from shadowstore.engine.checkpointfile import read_checkpoint
from shadowstore.engine.dbfile import read_header_copies
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.errors import ConfigMismatchError, ShadowStoreError
from shadowstore.format.common import Signature
from shadowstore.format.dbheader import DbHeader
from shadowstore.format.logfile import LogHeader, archived_log_name, checkpoint_name, parse_archived_log_name
from shadowstore.io.fs import FileSystem

_BASE = r"([A-Z][0-9]{2})"  # E00-E99, R00 (the recovery storage group)
_CURRENT = re.compile(_BASE + r"\.log")
_ARCHIVED = re.compile(_BASE + r"(?:[0-9A-F]{5}|[0-9A-F]{8})\.log")
_CHECKPOINT = re.compile(_BASE + r"\.chk")
_FILES = re.compile(r".*\.(log|chk|edb|lock|json|jsonl|toml|previous|zst)")  # never a folder worth listing
# Folders of a home that hold copies, not live files: the event log, reports, the default backup target,
# quarantine folders (files set aside) and a restore's staging folder (copies fetched from backups).
SKIPPED = frozenset({"events", "reports", "backups", "quarantine", "restore"})
SEARCH_DEPTH = 2  # folders below the home searched: <home>/<sg>/<sub>, where an edited path most likely points


@dataclass
class FoundStream:
    """The files of one log base in one folder: logs, a checkpoint, or both."""

    folder: str
    base: str
    current: str | None = None
    archived: list[int] = field(default_factory=list)
    checkpoint: str | None = None
    header: LogHeader | None = None  # of the current log, else of the newest archived one (None: unreadable)
    checkpoint_signature: Signature | None = None

    @property
    def has_logs(self) -> bool:
        return self.current is not None or bool(self.archived)

    @property
    def signature(self) -> Signature | None:
        """The stream's log signature: its logs', else its checkpoint's."""
        return self.header.signature if self.header is not None else self.checkpoint_signature

    def describe(self) -> str:
        """``E00.log, generations 1-4, E00.chk``: what the folder holds of this base."""
        parts = [os.path.basename(self.current)] if self.current else []
        if self.archived:
            low, high = min(self.archived), max(self.archived)
            parts.append(f"generation {low}" if low == high else f"generations {low}-{high}")
        if self.checkpoint:
            parts.append(os.path.basename(self.checkpoint))
        return ", ".join(parts)


@dataclass
class FoundStore:
    """A ``.edb`` file and its header (None with ``problem`` when neither header copy is readable)."""

    path: str
    header: DbHeader | None
    problem: str = ""

    @property
    def state(self) -> str:
        return self.header.state_name if self.header is not None else "Damaged"


@dataclass
class DiskScan:
    streams: list[FoundStream] = field(default_factory=list)
    stores: list[FoundStore] = field(default_factory=list)


# --- reading folders --------------------------------------------------------------------------------------------


def scan_folder(fs: FileSystem, folder: str, names: list[str] | None = None) -> DiskScan:
    """The log streams, checkpoints and stores directly in ``folder`` (a missing folder holds nothing)."""
    if names is None:
        names = _listing(fs, folder) or []
    streams: dict[str, FoundStream] = {}
    stores = []
    for name in sorted(names):
        path = os.path.join(folder, name)
        if match := _CURRENT.fullmatch(name):
            streams.setdefault(match[1], FoundStream(folder, match[1])).current = path
        elif (match := _ARCHIVED.fullmatch(name)) and (gen := parse_archived_log_name(match[1], name)):
            streams.setdefault(match[1], FoundStream(folder, match[1])).archived.append(gen)
        elif match := _CHECKPOINT.fullmatch(name):
            streams.setdefault(match[1], FoundStream(folder, match[1])).checkpoint = path
        elif name.endswith(".edb") and name != "tmp.edb":
            stores.append(_read_store(fs, path))
    for stream in streams.values():
        _read_signatures(fs, stream)
    return DiskScan(list(streams.values()), stores)


def scan_folders(fs: FileSystem, home: str, extra: Iterable[str] = (), skip: Iterable[str] = ()) -> DiskScan:
    """What the home's folders hold: the home, its folders down to SEARCH_DEPTH levels (not SKIPPED ones, not
    hidden ones, not those in ``skip``: a backup target inside the home), and each folder in ``extra``
    (configured folders outside the home), each folder once."""
    skipped = {os.path.realpath(p) for p in skip}
    seen: set[str] = set()
    found = DiskScan()

    def visit(folder: str, depth: int | None) -> None:
        real = os.path.realpath(folder)
        if real in seen or real in skipped:
            return
        seen.add(real)
        names = _listing(fs, folder)
        if names is None:
            return
        scan = scan_folder(fs, folder, names)
        found.streams += scan.streams
        found.stores += scan.stores
        if depth is None or depth >= SEARCH_DEPTH:
            return
        for name in sorted(names):
            if not (name.startswith(".") or name in SKIPPED or _FILES.fullmatch(name)):
                visit(os.path.join(folder, name), depth + 1)

    visit(home, 0)
    for folder in extra:
        visit(folder, None)
    return found


def _listing(fs: FileSystem, folder: str) -> list[str] | None:
    """The names in ``folder``, or None when it is not a folder that can be read."""
    try:
        return fs.listdir(folder)
    except OSError:  # why quietly: missing, not a folder, or not ours to read; none holds anything to report
        return None


def _read_signatures(fs: FileSystem, stream: FoundStream) -> None:
    newest = stream.current
    if newest is None and stream.archived:
        newest = os.path.join(stream.folder, archived_log_name(stream.base, max(stream.archived)))
    if newest is not None:
        with suppress(ShadowStoreError, OSError):
            stream.header = read_header(fs, newest)
    if stream.checkpoint is not None:
        with suppress(ShadowStoreError, OSError):
            stream.checkpoint_signature = read_checkpoint(fs, stream.checkpoint)[0].signature


def _read_store(fs: FileSystem, path: str) -> FoundStore:
    try:
        return FoundStore(path, read_header_copies(fs, path).header)
    except ShadowStoreError as exc:
        return FoundStore(path, None, exc.message)
    except OSError as exc:
        return FoundStore(path, None, f"{path} cannot be read: {exc.strerror or exc}")


# --- what the configuration claims ----------------------------------------------------------------------------


class Claims:
    """The files the storage groups of a configuration name (their folders resolved)."""

    def __init__(self, configs: Iterable[SgConfig]) -> None:
        self.configs = list(configs)
        self._logs = {(os.path.realpath(c.log_dir), c.log_base) for c in self.configs}
        self._checkpoints = {(os.path.realpath(c.system_dir), c.log_base) for c in self.configs}
        self._stores = {os.path.realpath(c.store_path(s)) for c in self.configs for s in c.stores}

    def logs(self, stream: FoundStream) -> bool:
        return (os.path.realpath(stream.folder), stream.base) in self._logs

    def checkpoint(self, stream: FoundStream) -> bool:
        return (os.path.realpath(stream.folder), stream.base) in self._checkpoints

    def store(self, store: FoundStore) -> bool:
        return os.path.realpath(store.path) in self._stores


def unclaimed_streams(scan: DiskScan, claims: Claims) -> list[FoundStream]:
    """The streams whose logs no configured storage group names, and the checkpoints (found without logs) no
    configured storage group names."""
    return [
        s
        for s in scan.streams
        if (s.has_logs and not claims.logs(s)) or (not s.has_logs and s.checkpoint and not claims.checkpoint(s))
    ]


def unclaimed_stores(scan: DiskScan, claims: Claims) -> list[FoundStore]:
    return [s for s in scan.stores if not claims.store(s)]


# --- a storage group's configuration against its files -----------------------------------------------------------


def check_storage_group(fs: FileSystem, config: SgConfig, others: list[SgConfig], home: str) -> None:
    """Raise the first of :func:`mismatches` (ConfigMismatchError); return when there is none."""
    found = mismatches(fs, config, others, home)
    if found:
        raise found[0]


def mismatches(fs: FileSystem, config: SgConfig, others: list[SgConfig], home: str) -> list[ConfigMismatchError]:
    """How the configuration of storage group ``config`` (resolved) no longer matches its files, given the other
    storage groups of the home (``others``, resolved): a changed log base or log folder (its log folder holds
    no log of its base, and the logs of its stream are under another base or in another folder), a changed
    system folder (its checkpoint is elsewhere) or data folder (a store file is elsewhere). Each error names
    the configured value, what the disk holds, and the value to put back."""
    claims = Claims([config, *others])
    logs = LogSet.scan(fs, config.log_dir, config.log_base)
    if logs.current is None and not logs.archived:
        return _moved_logs(fs, config, claims, home)
    try:
        signature: Signature | None = read_header(fs, logs.current).signature if logs.current else None
    except (ShadowStoreError, OSError):
        signature = None  # why: a damaged current log is the mount's to report, with its own error
    checkpoint = os.path.join(config.system_dir, checkpoint_name(config.log_base))
    missing = [s for s in config.stores if not fs.exists(config.store_path(s))]
    if signature is None or (fs.exists(checkpoint) and not missing):
        return []
    disk = _search(fs, config, others, home)
    found: list[ConfigMismatchError] = []
    if not fs.exists(checkpoint):
        moved = [
            s.checkpoint
            for s in disk.streams
            if s.checkpoint is not None
            and s.base == config.log_base
            and s.checkpoint_signature == signature
            and not claims.checkpoint(s)
        ]
        if moved:
            found.append(_system_moved(config, moved[0], home))
    for store in missing:
        there = [
            f
            for f in disk.stores
            if os.path.basename(f.path) == store.file
            and f.header is not None
            and f.header.log_signature == signature
            and not claims.store(f)
        ]
        if there:
            found.append(_store_moved(config, store.name, there[0].path, home))
    return found


def _moved_logs(fs: FileSystem, config: SgConfig, claims: Claims, home: str) -> list[ConfigMismatchError]:
    """The log folder holds no log of the configured base: another base's stream there means a changed log
    base; this storage group's stream (by its stores' and checkpoint's signatures) in another folder means a
    changed log folder. Neither: a new storage group, or one whose logs are gone (the mount says so)."""
    here = [s for s in scan_folder(fs, config.log_dir).streams if s.has_logs and not claims.logs(s)]
    if here:
        stream = max(here, key=lambda s: (len(s.archived), s.current is not None))
        return [_base_changed(config, stream, home)]
    signatures = _signatures(fs, config)
    if not signatures:
        return []
    others = [c for c in claims.configs if c is not config]
    disk = _search(fs, config, others, home)
    moved = [s for s in disk.streams if s.has_logs and s.signature in signatures and not claims.logs(s)]
    return [_log_folder_moved(config, moved[0], home)] if moved else []


def _signatures(fs: FileSystem, config: SgConfig) -> set[Signature]:
    """The log signatures the storage group's stores and checkpoint name (those that can be read)."""
    found = set()
    for store in config.stores:
        with suppress(ShadowStoreError, OSError):
            found.add(read_header_copies(fs, config.store_path(store)).header.log_signature)
    with suppress(ShadowStoreError, OSError):
        found.add(read_checkpoint(fs, os.path.join(config.system_dir, checkpoint_name(config.log_base)))[0].signature)
    return {s for s in found if not s.is_zero}


def _search(fs: FileSystem, config: SgConfig, others: list[SgConfig], home: str) -> DiskScan:
    folders = [f for c in (config, *others) for f in (c.log_dir, c.system_dir, c.data_dir)]
    return scan_folders(fs, home, folders)


# --- the errors -----------------------------------------------------------------------------------------------------


def _base_changed(config: SgConfig, stream: FoundStream, home: str) -> ConfigMismatchError:
    return ConfigMismatchError(
        f"storage group {config.name!r}: the configuration says log base {config.log_base}, but its log folder "
        f"{config.log_dir} holds no {config.log_base} log and the log stream of {stream.base} "
        f"({stream.describe()}); mounting would start a second log stream beside it",
        hint=_put_back(
            config, "log_base", stream.base, home, "a storage group keeps the log base its logs were made with"
        ),
        sg=config.name,
        configured=config.log_base,
        on_disk=stream.base,
        folder=stream.folder,
    )


def _log_folder_moved(config: SgConfig, stream: FoundStream, home: str) -> ConfigMismatchError:
    return ConfigMismatchError(
        f"storage group {config.name!r}: the configuration says its log folder is {config.log_dir}, which holds "
        f"no {config.log_base} log, but the log stream its stores belong to is in {stream.folder} "
        f"({stream.describe()}); mounting would start a second log stream",
        hint=_put_back(
            config, "log_dir", as_configured(stream.folder, home), home, "logs stay in the folder they were written to"
        ),
        sg=config.name,
        configured=config.log_dir,
        on_disk=stream.folder,
        folder=stream.folder,
    )


def _system_moved(config: SgConfig, checkpoint: str, home: str) -> ConfigMismatchError:
    folder = os.path.dirname(checkpoint)
    return ConfigMismatchError(
        f"storage group {config.name!r}: the configuration says its system folder is {config.system_dir}, which "
        f"has no {checkpoint_name(config.log_base)}, but the checkpoint of its log stream is {checkpoint}; "
        "mounting would rebuild the checkpoint and take the storage group's lock in another folder",
        hint=_put_back(
            config,
            "system_dir",
            as_configured(folder, home),
            home,
            "the checkpoint stays in the folder it was written to",
        ),
        sg=config.name,
        configured=config.system_dir,
        on_disk=folder,
        folder=folder,
    )


def _store_moved(config: SgConfig, store: str, path: str, home: str) -> ConfigMismatchError:
    folder = os.path.dirname(path)
    return ConfigMismatchError(
        f"store {store!r} of storage group {config.name!r}: the configuration says its data folder is "
        f"{config.data_dir}, which has no {os.path.basename(path)}, but the store file of this storage group's "
        f"log stream is {path}",
        hint=_put_back(config, "data_dir", as_configured(folder, home), home, "a store file stays where it is"),
        sg=config.name,
        configured=config.data_dir,
        on_disk=folder,
        folder=folder,
    )


def _put_back(config: SgConfig, key: str, value: str, home: str, what: str) -> str:
    """The safe procedure: the old value back in the configuration (the files stay where they are), and for a
    folder, the command that moves the files and the configuration together."""
    move = ""
    if key.endswith("_dir"):
        option = "--" + key.replace("_", "-")
        move = (
            f"; to move the files, do that first, then run: shadowstore sg move {shlex.quote(config.name)} {option} DIR"
        )
    return (
        f"put {key} = {json.dumps(value)} back in the entry of storage group {config.name!r} in "
        f"{os.path.join(home, CONFIG_NAME)} ({PREVIOUS_NAME} beside it, if there is one, holds the configuration "
        f"before ShadowStore last changed it); editing the configuration does not move files: {what}{move}"
    )


def as_configured(folder: str, home: str) -> str:
    """``folder`` as the configuration writes it: relative to the home when it is inside it, else absolute."""
    relative = os.path.relpath(folder, home)
    return folder if relative.startswith("..") else relative
