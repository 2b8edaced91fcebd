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
import shlex
import socket
from types import TracebackType

from shadowstore import config as cfg
from shadowstore import names
from shadowstore.config import DEFAULT_SG, DEFAULT_STORES, HomeConfig, SgConfig, StoreConfig, default_home
from shadowstore.engine import configcheck
from shadowstore.engine.checkpointfile import read_checkpoint
from shadowstore.engine.dbfile import read_header_copies
from shadowstore.engine.flushwaits import FlushWaits
from shadowstore.engine.logstream import LogSet, read_header
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.errors import InvalidParameterError, NotFoundError, ShadowStoreError, StorageGroupBusyError
from shadowstore.events import EventLog
from shadowstore.format.common import format_time
from shadowstore.format.dbheader import DEFAULT_PAGE_SIZE
from shadowstore.format.logfile import DEFAULT_LOG_FILE_SIZE
from shadowstore.homefindings import found_on_disk
from shadowstore.io.fs import FileSystem, OsFileSystem

EVENTS_DIR = "events"  # <home>/events: the event log, which needs no configuration to be read


def dismount_first(sg_name: str, then: str) -> str:
    """The hint of a refusal to change storage group ``sg_name`` while a process has it mounted: the service's
    dismount when it is the service (stopping it would stop every store), else the program that has it."""
    return (
        f"dismount it first (with 'shadowstore dismount {shlex.quote(sg_name)}' when the Information Store service "
        f"has it; else stop the program that has it open), then {then}"
    )


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
        path = _home_path(path)
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
        path = _home_path(path)
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

    def forget_dismounted(self) -> None:
        """Drop every storage group not mounted here and read the configuration again: what another process
        changed while they were dismounted (an ``sg move``, a restore, a store added) is what the next mount and
        status see, not the folders and stores of when this object first looked."""
        for name in [name for name, sg in self._groups.items() if not sg.mounted]:
            del self._groups[name]
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
        names.validate_storage_group_name(name, self.config)
        for folder, what in ((log_dir, "log_dir"), (system_dir, "system_dir"), (data_dir, "data_dir")):
            if folder is not None:
                names.check_home_folder(self.path, self.config, folder, what)
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
            names.validate_name(store.name, "store")
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
        names.validate_name(sg_config.name, "storage group")
        current = self._groups.get(sg_config.name)
        if current is not None and current.mounted:
            raise InvalidParameterError(f"dismount storage group {sg_config.name!r} before changing it")
        groups = [g for g in self.config.storage_groups if g.name != sg_config.name]
        self.config.storage_groups = [*groups, sg_config]
        cfg.save(self.fs, self.path, self.config)
        self._groups.pop(sg_config.name, None)

    def create_store(self, sg_name: str, name: str, file: str | None = None) -> None:
        """Add a store to a dismounted storage group."""
        names.validate_name(name, "store")
        sg_config = self.config.find(sg_name)
        if any(s.name == name for s in sg_config.stores):
            raise InvalidParameterError(f"storage group {sg_name!r} already has a store {name!r}")
        if len(sg_config.stores) >= cfg.MAX_STORES_PER_SG:
            raise InvalidParameterError(f"a storage group holds at most {cfg.MAX_STORES_PER_SG} stores")
        file = file or _store_file_name(name, {s.file for s in sg_config.stores})
        names.validate_store_file(file)
        dbid = max((s.dbid for s in sg_config.stores), default=0) + 1
        sg = self.storage_group(sg_name)
        try:
            lock = self.fs.lock(sg.lock_path, f"pid {os.getpid()} (store create)")
        except StorageGroupBusyError as exc:
            raise StorageGroupBusyError(
                f"storage group {sg_name!r} is mounted or in use, and a store is added only to a dismounted one: "
                f"{exc.message}",
                hint=dismount_first(sg_name, "run this again"),
            ) from None
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
            "found_on_disk": found_on_disk(self.fs, self.path, self.config, resolved, explained),
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


def _home_path(path: str | None) -> str:
    """``path`` made absolute; None means the default home. Raises InvalidParameterError for an empty path: it
    would otherwise be the current folder, or with ``or`` the default home, without a word."""
    if path is None:
        return os.path.abspath(default_home())
    if not path:
        raise InvalidParameterError("the server home's path is empty", hint="name the home's folder, or pass None")
    return os.path.abspath(path)


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
