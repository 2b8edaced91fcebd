"""What a server home's folders hold that its configuration does not name: log streams, checkpoints and store
files left behind by a storage group taken out of ``shadowstore.toml`` (by hand, or by a configuration that was
replaced), each with a message, a hint and, for a stream, the entry that would name it again. ``status`` lists
them as ``found_on_disk``; nothing here writes anything.
"""

from __future__ import annotations

import os
from collections.abc import Collection

from shadowstore import config as cfg
from shadowstore.config import DEFAULT_SG, DEFAULT_STORES, HomeConfig, SgConfig, StoreConfig
from shadowstore.engine import configcheck
from shadowstore.engine.configcheck import FoundStore, FoundStream
from shadowstore.engine.logstream import read_header
from shadowstore.errors import ShadowStoreError
from shadowstore.format.common import Signature
from shadowstore.format.dbheader import DEFAULT_PAGE_SIZE
from shadowstore.format.logfile import DEFAULT_LOG_FILE_SIZE
from shadowstore.io.fs import FileSystem


def found_on_disk(
    fs: FileSystem, home: str, config: HomeConfig, resolved: list[SgConfig], explained: Collection[str] = ()
) -> list[dict[str, object]]:
    """The log streams, checkpoints and stores in the home's folders (and in the folders the configuration
    and shadowstore.toml.previous name) that no storage group of the configuration names, each with a
    message and a hint; a stream comes with the entry that would name it again (``suggested_config``).
    Files in the folders of ``explained`` (real paths) are left out: a configuration mismatch names them."""
    previous = cfg.load_previous(fs, home)
    before = [g.resolved(home) for g in previous.storage_groups] if previous else []
    folders = [f for g in (*resolved, *before) for f in (g.log_dir, g.system_dir, g.data_dir)]
    disk = configcheck.scan_folders(fs, home, folders, skip=_local_targets(home, config))
    claims = configcheck.Claims(resolved)
    stores = [s for s in configcheck.unclaimed_stores(disk, claims) if _folder(s.path) not in explained]
    found = []
    for stream in configcheck.unclaimed_streams(disk, claims):
        if os.path.realpath(stream.folder) in explained:
            continue
        mine = [s for s in stores if s.header is not None and s.header.log_signature == stream.signature]
        stores = [s for s in stores if s not in mine]
        found.append(_stream_finding(stream, mine, before, home))
    streams = {_stream_signature(fs, c): c.name for c in resolved}
    for store in stores:
        owner = streams.get(store.header.log_signature) if store.header is not None else None
        found.append(_store_finding(store, owner))
    return found


def _local_targets(home: str, config: HomeConfig) -> list[str]:
    """The configured backup target when it is a folder (its sets hold copies of logs and stores)."""
    url = str(config.settings.get("backup", {}).get("target", "backups"))
    if "://" in url and not url.startswith("file://"):
        return []
    return [os.path.join(home, url.removeprefix("file://"))]


def _stream_finding(
    stream: FoundStream, stores: list[FoundStore], before: list[SgConfig], home: str
) -> dict[str, object]:
    what = f"log stream {stream.base} in {stream.folder} ({stream.describe()})"
    if not stream.has_logs:
        what = f"checkpoint file {stream.checkpoint} (no {stream.base} logs beside it)"
    if stores:
        what += " with the store file" + ("s " if len(stores) > 1 else " ") + ", ".join(s.path for s in stores)
    real = (os.path.realpath(stream.folder), stream.base)
    known = next((g for g in before if (os.path.realpath(g.log_dir), g.log_base) == real), None)
    if known is not None:
        entry = _as_written(known, home)
        hint = (
            f"{cfg.PREVIOUS_NAME} names it storage group {known.name!r}: if that is still right, copy its "
            f"entry (below) back into {cfg.CONFIG_NAME}"
        )
    else:
        entry = _suggested_entry(stream, stores, home)
        hint = (
            f"if it is a storage group of this home, add its entry back to {cfg.CONFIG_NAME} (a suggestion is "
            "below; names are not kept in the files, so check them against 'shadowstore backup list'); "
            "nothing changes until you do"
        )
    return {
        "kind": "log stream" if stream.has_logs else "checkpoint",
        "folder": stream.folder,
        "log_base": stream.base,
        "files": stream.describe(),
        "stores": [{"file": s.path, "state": s.state} for s in stores],
        "message": f"{what} belongs to no storage group in the configuration",
        "hint": hint,
        "suggested_config": cfg.storage_group_toml(entry),
    }


def _folder(path: str) -> str:
    return os.path.realpath(os.path.dirname(path))


def _stream_signature(fs: FileSystem, config: SgConfig) -> Signature | None:
    """The log signature of a configured storage group's current log (None when it cannot be read)."""
    try:
        return read_header(fs, os.path.join(config.log_dir, f"{config.log_base}.log")).signature
    except (ShadowStoreError, OSError):
        return None


def _store_finding(store: FoundStore, owner: str | None) -> dict[str, object]:
    if store.header is None:
        message = f"{store.path} is not a readable store file ({store.problem})"
        hint = f"'shadowstore eseutil /mh {store.path}' shows what it is"
    elif owner is not None:
        message = (
            f"store file {store.path} ({store.state}, dbid {store.header.dbid}) belongs to the log stream of storage "
            f"group {owner!r}, but its configuration does not name it"
        )
        hint = (
            f"if it is a store of {owner!r}, add it to that storage group's entry in {cfg.CONFIG_NAME} "
            f"([[storage_group.store]] with file = {os.path.basename(store.path)!r} and dbid = {store.header.dbid})"
        )
    else:
        message = f"store file {store.path} ({store.state}) belongs to no storage group in the configuration"
        hint = (
            f"'shadowstore eseutil /mh {store.path}' shows its log signature; add its storage group back to "
            f"{cfg.CONFIG_NAME} if it is one of this home's"
        )
    return {"kind": "store", "file": store.path, "state": store.state, "message": message, "hint": hint}


def _suggested_entry(stream: FoundStream, stores: list[FoundStore], home: str) -> SgConfig:
    """A configuration entry naming ``stream`` and ``stores`` again, from what their files say. Names are not
    in the files: the folder's name for the storage group, the default names for priv1.edb and pub1.edb."""
    names = {file: name for name, file in DEFAULT_STORES}
    header = stream.header
    pages = {s.header.page_size for s in stores if s.header is not None}
    data_dir = os.path.dirname(stores[0].path) if stores else stream.folder
    return _as_written(
        SgConfig(
            name=os.path.basename(stream.folder.rstrip("/")) or DEFAULT_SG,
            log_base=stream.base,
            log_dir=stream.folder,
            system_dir=stream.folder,
            data_dir=data_dir,
            log_file_size=header.file_size if header else DEFAULT_LOG_FILE_SIZE,
            page_size=pages.pop() if len(pages) == 1 else (header.page_size if header else DEFAULT_PAGE_SIZE),
            circular_logging=header.circular if header else False,
            stores=[
                StoreConfig(
                    names.get(os.path.basename(s.path), os.path.basename(s.path).removesuffix(".edb")),
                    os.path.basename(s.path),
                    s.header.dbid,
                )
                for s in stores
                if s.header is not None
            ],
        ),
        home,
    )


def _as_written(sg: SgConfig, home: str) -> SgConfig:
    """``sg`` with its folders as the configuration writes them (relative to the home when inside it)."""
    log_dir, system_dir, data_dir = (
        configcheck.as_configured(f, home) for f in (sg.log_dir, sg.system_dir, sg.data_dir)
    )
    return SgConfig(
        sg.name,
        sg.log_base,
        log_dir,
        system_dir,
        data_dir,
        sg.log_file_size,
        sg.page_size,
        sg.circular_logging,
        sg.stores,
    )
