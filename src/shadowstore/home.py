"""A server home: the directory holding a server's configuration, storage groups, event log and reports.

    from shadowstore import ServerHome
    with ServerHome.open("/srv/shadowstore") as home:
        sg = home.storage_group("First Storage Group")
        sg.mount()
        with sg.store("Mailbox Store").transaction() as tx:
            tx.create_table("messages")
            tx.put("messages", b"key", b"value")
        sg.dismount()

The default home is ``$SHADOWSTORE_HOME``, else ``$XDG_DATA_HOME/shadowstore``, else
``~/.local/share/shadowstore``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from types import TracebackType

from shadowstore import config as cfg
from shadowstore.config import HomeConfig, SgConfig, StoreConfig
from shadowstore.engine import configcheck
from shadowstore.engine.checkpointfile import read_checkpoint
from shadowstore.engine.configcheck import FoundStore, FoundStream
from shadowstore.engine.dbfile import read_header_copies
from shadowstore.engine.flushwaits import FlushWaits
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.errors import InvalidParameterError, NotFoundError, ShadowStoreError
from shadowstore.events import EventLog
from shadowstore.format.common import Signature, format_time
from shadowstore.format.dbheader import DEFAULT_PAGE_SIZE
from shadowstore.format.logfile import DEFAULT_LOG_FILE_SIZE
from shadowstore.io.fs import FileSystem, OsFileSystem

DEFAULT_SG = "First Storage Group"
DEFAULT_STORES = (("Mailbox Store", "priv1.edb"), ("Public Folder Store", "pub1.edb"))
EVENTS_DIR = "events"  # <home>/events: the event log, which needs no configuration to be read


def default_home() -> str:
    """``$SHADOWSTORE_HOME``, else ``$XDG_DATA_HOME/shadowstore``, else ``~/.local/share/shadowstore``."""
    explicit = os.environ.get("SHADOWSTORE_HOME")
    if explicit:
        return explicit
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "shadowstore")


class ServerHome:
    """An open server home. Storage groups are created dismounted; ``close`` dismounts what is mounted."""

    def __init__(self, path: str, config: HomeConfig, fs: FileSystem, policy: MaintenancePolicy | None) -> None:
        self.path = path
        self.config = config
        self.fs = fs
        self.policy = policy or _configured_policy(config)
        self.events = EventLog(os.path.join(path, EVENTS_DIR), fs)
        self.flush_waits = FlushWaits()  # every group's commits (engine/flushwaits.py); the service shares it
        self._groups: dict[str, StorageGroup] = {}

    # --- opening ----------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | None = None, *, fs: FileSystem | None = None, policy: MaintenancePolicy | None = None
    ) -> ServerHome:
        """Open an existing home. Raises NotFoundError (with the init command as hint) if there is none."""
        fs = fs or OsFileSystem()
        path = os.path.abspath(path or default_home())
        config = cfg.load(fs, path)
        if config.home_id is None:
            config = _give_home_id(fs, path)
        return cls(path, config, fs, policy)

    @classmethod
    def init(
        cls,
        path: str | None = None,
        *,
        log_file_size: int = DEFAULT_LOG_FILE_SIZE,
        page_size: int = DEFAULT_PAGE_SIZE,
        circular_logging: bool = False,
        fs: FileSystem | None = None,
        policy: MaintenancePolicy | None = None,
    ) -> ServerHome:
        """Create a home with "First Storage Group" (E00) holding "Mailbox Store" and "Public Folder Store"."""
        fs = fs or OsFileSystem()
        path = os.path.abspath(path or default_home())
        if fs.exists(os.path.join(path, cfg.CONFIG_NAME)):
            raise InvalidParameterError(f"{path} is already a server home")
        fs.makedirs(path)
        server = socket.gethostname()
        config = HomeConfig(server, [], {"backup": {"target": "backups"}}, cfg.new_home_id(server))
        home = cls(path, config, fs, policy)
        home.create_storage_group(
            DEFAULT_SG,
            log_file_size=log_file_size,
            page_size=page_size,
            circular_logging=circular_logging,
            stores=list(DEFAULT_STORES),
        )
        return home

    def __enter__(self) -> ServerHome:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Dismount every storage group this object mounted."""
        for sg in self._groups.values():
            sg.dismount()

    @property
    def home_id(self) -> str:
        """The id that names this home in every backup target (made at init, or at the first open of a home
        made before home ids)."""
        assert self.config.home_id is not None, "ServerHome.open and init always set it"
        return self.config.home_id

    # --- storage groups -----------------------------------------------------------------------------------

    def storage_group(self, name: str = DEFAULT_SG) -> StorageGroup:
        """The storage group ``name`` (dismounted until mounted). Raises NotFoundError, and ConfigMismatchError
        when its configured log base or folders no longer match its files (engine/configcheck.py)."""
        if name not in self._groups:
            sg_config = self.config.find(name).resolved(self.path)
            others = [g.resolved(self.path) for g in self.config.storage_groups if g.name != name]
            configcheck.check_storage_group(self.fs, sg_config, others, self.path)
            self._groups[name] = StorageGroup(
                sg_config, self.fs, self.events, policy=self.policy, waits=self.flush_waits
            )
        return self._groups[name]

    def forget(self, name: str) -> None:
        """Drop the dismounted storage group ``name`` and read the configuration again: the next
        ``storage_group(name)`` sees what another process changed meanwhile (a restore into it)."""
        sg = self._groups.get(name)
        assert sg is None or not sg.mounted, "dismount before forgetting"
        self._groups.pop(name, None)
        self.config = cfg.load(self.fs, self.path)

    def storage_groups(self) -> list[StorageGroup]:
        return [self.storage_group(g.name) for g in self.config.storage_groups]

    def create_storage_group(
        self,
        name: str,
        *,
        log_dir: str | None = None,
        system_dir: str | None = None,
        data_dir: str | None = None,
        log_file_size: int = DEFAULT_LOG_FILE_SIZE,
        page_size: int = DEFAULT_PAGE_SIZE,
        circular_logging: bool = False,
        stores: list[tuple[str, str]] | None = None,
    ) -> StorageGroup:
        """Create a storage group with the next free log base (E00, E01, ...) and its files."""
        cfg.validate_name(name, "storage group")
        if any(g.name == name for g in self.config.storage_groups):
            raise InvalidParameterError(f"storage group {name!r} already exists")
        if len(self.config.storage_groups) >= cfg.MAX_STORAGE_GROUPS:
            raise InvalidParameterError(f"a server home holds at most {cfg.MAX_STORAGE_GROUPS} storage groups")
        cfg.validate_log_file_size(log_file_size)
        cfg.validate_page_size(page_size)
        log_dir = log_dir or name
        resolved_logs = os.path.realpath(os.path.join(self.path, log_dir))
        for other in self.config.storage_groups:
            if os.path.realpath(os.path.join(self.path, other.log_dir)) == resolved_logs:
                raise InvalidParameterError(f"log folder {log_dir!r} is already used by {other.name!r}")
        sg_config = SgConfig(
            name=name,
            log_base=cfg.next_log_base(self.config),
            log_dir=log_dir,
            system_dir=system_dir or log_dir,
            data_dir=data_dir or log_dir,
            log_file_size=log_file_size,
            page_size=page_size,
            circular_logging=circular_logging,
            stores=[StoreConfig(store, file, dbid) for dbid, (store, file) in enumerate(stores or [], start=1)],
        )
        for store in sg_config.stores:
            cfg.validate_name(store.name, "store")
        sg = StorageGroup.create(
            sg_config.resolved(self.path), self.fs, self.events, policy=self.policy, waits=self.flush_waits
        )
        self.config.storage_groups.append(sg_config)
        cfg.save(self.fs, self.path, self.config)
        self._groups[name] = sg
        return sg

    def set_storage_group_config(self, sg_config: SgConfig) -> None:
        """Add or replace (by name) the configuration of a storage group that is not mounted here, and save.
        Its files are the caller's business (a restore into the recovery storage group uses this)."""
        cfg.validate_name(sg_config.name, "storage group")
        current = self._groups.get(sg_config.name)
        if current is not None and current.mounted:
            raise InvalidParameterError(f"dismount storage group {sg_config.name!r} before changing it")
        groups = [g for g in self.config.storage_groups if g.name != sg_config.name]
        self.config.storage_groups = [*groups, sg_config]
        cfg.save(self.fs, self.path, self.config)
        self._groups.pop(sg_config.name, None)

    def create_store(self, sg_name: str, name: str, file: str | None = None) -> None:
        """Add a store to a dismounted storage group."""
        cfg.validate_name(name, "store")
        sg_config = self.config.find(sg_name)
        if any(s.name == name for s in sg_config.stores):
            raise InvalidParameterError(f"storage group {sg_name!r} already has a store {name!r}")
        if len(sg_config.stores) >= cfg.MAX_STORES_PER_SG:
            raise InvalidParameterError(f"a storage group holds at most {cfg.MAX_STORES_PER_SG} stores")
        file = file or _store_file_name(name, {s.file for s in sg_config.stores})
        if "/" in file or not file.endswith(".edb"):
            raise InvalidParameterError(f"store file name {file!r} must be a plain name ending in .edb")
        dbid = max((s.dbid for s in sg_config.stores), default=0) + 1
        sg = self.storage_group(sg_name)
        lock = self.fs.lock(sg.lock_path, f"pid {os.getpid()} (store create)")
        try:
            sg.add_store(name, dbid, os.path.join(sg.config.data_dir, file))
        finally:
            lock.release()
        sg_config.stores.append(StoreConfig(name, file, dbid))
        sg.config.stores.append(StoreConfig(name, file, dbid))
        cfg.save(self.fs, self.path, self.config)

    # --- status -------------------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """What each storage group and store looks like, read from disk without mounting anything; how each
        storage group's configuration no longer matches its files (``config_mismatches``); and the log streams
        and stores the home's folders hold that the configuration does not name (``found_on_disk``)."""
        resolved = [g.resolved(self.path) for g in self.config.storage_groups]
        groups = []
        explained: set[str] = set()  # folders whose files a mismatch already names (with the right hint)
        for sg_config in resolved:
            sg = self._groups.get(sg_config.name)
            entry = sg.status() if sg is not None and sg.mounted else offline_status(self.fs, sg_config)
            others = [c for c in resolved if c is not sg_config]
            found = configcheck.mismatches(self.fs, sg_config, others, self.path)
            entry["config_mismatches"] = [{"message": e.message, "hint": e.hint} for e in found]
            explained |= {os.path.realpath(str(e.details["folder"])) for e in found}
            groups.append(entry)
        return {
            "home": self.path,
            "server": self.config.server_name,
            "home_id": self.home_id,
            "storage_groups": groups,
            "found_on_disk": self.found_on_disk(resolved, explained),
        }

    def found_on_disk(self, resolved: list[SgConfig], explained: Collection[str] = ()) -> list[dict[str, object]]:
        """The log streams, checkpoints and stores in the home's folders (and in the folders the configuration
        and shadowstore.toml.previous name) that no storage group of the configuration names, each with a
        message and a hint; a stream comes with the entry that would name it again (``suggested_config``).
        Files in the folders of ``explained`` (real paths) are left out: a configuration mismatch names them."""
        previous = cfg.load_previous(self.fs, self.path)
        before = [g.resolved(self.path) for g in previous.storage_groups] if previous else []
        folders = [f for g in (*resolved, *before) for f in (g.log_dir, g.system_dir, g.data_dir)]
        disk = configcheck.scan_folders(self.fs, self.path, folders, skip=self._local_targets())
        claims = configcheck.Claims(resolved)
        stores = [s for s in configcheck.unclaimed_stores(disk, claims) if _folder(s.path) not in explained]
        found = []
        for stream in configcheck.unclaimed_streams(disk, claims):
            if os.path.realpath(stream.folder) in explained:
                continue
            mine = [s for s in stores if s.header is not None and s.header.log_signature == stream.signature]
            stores = [s for s in stores if s not in mine]
            found.append(self._stream_finding(stream, mine, before))
        streams = {_stream_signature(self.fs, c): c.name for c in resolved}
        for store in stores:
            owner = streams.get(store.header.log_signature) if store.header is not None else None
            found.append(_store_finding(store, owner))
        return found

    def _local_targets(self) -> list[str]:
        """The configured backup target when it is a folder (its sets hold copies of logs and stores)."""
        url = str(self.config.settings.get("backup", {}).get("target", "backups"))
        if "://" in url and not url.startswith("file://"):
            return []
        return [os.path.join(self.path, url.removeprefix("file://"))]

    def _stream_finding(
        self, stream: FoundStream, stores: list[FoundStore], before: list[SgConfig]
    ) -> dict[str, object]:
        what = f"log stream {stream.base} in {stream.folder} ({stream.describe()})"
        if not stream.has_logs:
            what = f"checkpoint file {stream.checkpoint} (no {stream.base} logs beside it)"
        if stores:
            what += " with the store file" + ("s " if len(stores) > 1 else " ") + ", ".join(s.path for s in stores)
        real = (os.path.realpath(stream.folder), stream.base)
        known = next((g for g in before if (os.path.realpath(g.log_dir), g.log_base) == real), None)
        if known is not None:
            entry = _as_written(known, self.path)
            hint = (
                f"{cfg.PREVIOUS_NAME} names it storage group {known.name!r}: if that is still right, copy its "
                f"entry (below) back into {cfg.CONFIG_NAME}"
            )
        else:
            entry = _suggested_entry(stream, stores, self.path)
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


def _give_home_id(fs: FileSystem, path: str) -> HomeConfig:
    """Give a home made before home ids its id, once: under a lock, from the configuration as it is on disk
    then, so that two processes opening it at once agree on one id."""
    with fs.locked(os.path.join(path, "home-id.lock")):
        config = cfg.load(fs, path)
        if config.home_id is None:
            config.home_id = cfg.new_home_id(config.server_name)
            cfg.save(fs, path, config)
    return config


def offline_status(fs: FileSystem, config: SgConfig) -> dict[str, object]:
    """Status of a storage group read from its files (works while another process has it mounted)."""
    logs = LogSet.scan(fs, config.log_dir, config.log_base)
    current_gen: int | None = None
    problems: list[str] = []
    if logs.current:
        try:
            current_gen = read_header(fs, logs.current).generation
        except ShadowStoreError as exc:
            problems.append(exc.message)
    checkpoint = None
    chk_path = os.path.join(config.system_dir, f"{config.log_base}.chk")
    try:
        checkpoint = str(read_checkpoint(fs, chk_path)[0].checkpoint)
    except ShadowStoreError as exc:
        problems.append(exc.message)
    stores = []
    for store in config.stores:
        path = config.store_path(store)
        entry: dict[str, object] = {"name": store.name, "file": path, "dbid": store.dbid}
        try:
            header = read_header_copies(fs, path).header
            entry.update(
                state=header.state_name,
                log_required=[header.log_required_min, header.log_required_max],
                last_consistent=str(header.last_consistent),
                last_consistent_time=format_time(header.last_consistent_us),
            )
        except FileNotFoundError:
            entry["state"] = "Missing"
        except ShadowStoreError as exc:
            entry["state"] = "Damaged"
            problems.append(exc.message)
        stores.append(entry)
    return {
        "name": config.name,
        "log_base": config.log_base,
        "mounted": is_locked(fs, os.path.join(config.system_dir, f"{config.log_base}.lock")),
        "log_dir": config.log_dir,
        "system_dir": config.system_dir,
        "current_generation": current_gen,
        "lowest_generation": logs.lowest if logs.archived else current_gen,
        "checkpoint": checkpoint,
        "circular_logging": config.circular_logging,
        "stores": stores,
        "problems": problems,
    }


def is_locked(fs: FileSystem, path: str) -> bool:
    """Whether a process (this one included) holds the storage group lock at ``path``. It only looks: the lock
    is never taken, so asking cannot make a mount or a restore elsewhere fail as busy."""
    return fs.lock_holder(path) is not None


def _store_file_name(name: str, taken: set[str]) -> str:
    stem = "".join(c.lower() if c.isalnum() else "_" for c in name).strip("_") or "store"
    candidate = f"{stem}.edb"
    n = 2
    while candidate in taken:
        candidate = f"{stem}{n}.edb"
        n += 1
    return candidate


def _configured_policy(config: HomeConfig) -> MaintenancePolicy:
    """The production maintenance policy, with what the home's [engine] settings change in it."""
    timeout = config.settings.get("engine", {}).get("transaction_timeout")
    if timeout is None:
        return MaintenancePolicy()
    return MaintenancePolicy(transaction_timeout=cfg.parse_seconds(timeout, "engine.transaction_timeout"))


def open_event_log(path: str, fs: FileSystem | None = None) -> EventLog:
    """The event log of the server home at ``path``, read without its configuration (which may be broken: the
    event log is what an administrator reads then). Raises NotFoundError when ``path`` is not a server home."""
    fs = fs or OsFileSystem()
    path = os.path.abspath(path)
    folder = os.path.join(path, EVENTS_DIR)
    if not fs.exists(folder) and not fs.exists(os.path.join(path, cfg.CONFIG_NAME)):
        raise NotFoundError(
            f"{path} is not a ShadowStore server home (no {cfg.CONFIG_NAME}, no {EVENTS_DIR} folder)",
            hint=f"name the home with 'shadowstore --home PATH events', or create one with 'shadowstore --home "
            f"{path} init'",
        )
    return EventLog(folder, fs)


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
