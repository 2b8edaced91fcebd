"""The server home configuration: ``<home>/shadowstore.toml``.

Example::

    format_version = 1
    server_name = "mail01"
    home_id = "mail01-3f2a9c1b"                # made at init; names this home in every backup target

    [[storage_group]]
    name = "First Storage Group"
    log_base = "E00"
    log_dir = "First Storage Group"        # relative paths are relative to the server home
    system_dir = "First Storage Group"
    data_dir = "First Storage Group"
    log_file_size = 1048576
    page_size = 8192
    circular_logging = false

    [[storage_group.store]]
    name = "Mailbox Store"
    file = "priv1.edb"
    dbid = 1

    [[storage_group.store]]
    name = "Public Folder Store"
    file = "pub1.edb"
    dbid = 2
    mount_at_start = false                  # written only when false: the service leaves it dismounted

The file is replaced atomically (temporary name, fsync, rename, directory fsync), and the content it had is
kept beside it as ``shadowstore.toml.previous`` (written the same way, before the new content replaces it), so
an administrator can always see, and go back to, what the last change replaced.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shlex
import socket
import tomllib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import tomli_w

from shadowstore.errors import InvalidParameterError, NotFoundError
from shadowstore.format.dbheader import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MIN_PAGE_SIZE
from shadowstore.format.logfile import DEFAULT_LOG_FILE_SIZE, MAX_LOG_FILE_SIZE, MIN_LOG_FILE_SIZE
from shadowstore.io.fs import FileSystem, read_file
from shadowstore.io.replace import atomic_write

CONFIG_NAME = "shadowstore.toml"
DEFAULT_SG = "First Storage Group"
RECOVERY_SG = "Recovery Storage Group"  # where restore run --into-recovery-group restores (restore/run.py)
RECOVERY_BASE = "R00"
DEFAULT_STORES = (("Mailbox Store", "priv1.edb"), ("Public Folder Store", "pub1.edb"))
PREVIOUS_NAME = CONFIG_NAME + ".previous"  # the content the last save replaced
FORMAT_VERSION = 1
MAX_STORES_PER_SG = 5  # as in Exchange 2003
MAX_STORAGE_GROUPS = 50
MAX_NAME = 64  # characters in a storage group's or a store's name
MAX_DBID = 255  # a store's number is one byte in the log's attach list (format/common.py ATTACHINFO)


@dataclass
class StoreConfig:
    name: str
    file: str
    dbid: int
    # Whether the service mounts this store when it starts (tools/startmount.py). Written to the file only when
    # False, so that files written before the setting existed, and every file that does not use it, stay as
    # they were; a file without it reads as True.
    mount_at_start: bool = True


@dataclass
class SgConfig:
    name: str
    log_base: str
    log_dir: str
    system_dir: str
    data_dir: str
    log_file_size: int = DEFAULT_LOG_FILE_SIZE
    page_size: int = DEFAULT_PAGE_SIZE
    circular_logging: bool = False
    stores: list[StoreConfig] = field(default_factory=list)

    def resolved(self, home: str) -> SgConfig:
        """A copy whose directories are absolute (relative ones are taken from ``home``)."""
        return SgConfig(
            self.name,
            self.log_base,
            os.path.join(home, self.log_dir),
            os.path.join(home, self.system_dir),
            os.path.join(home, self.data_dir),
            self.log_file_size,
            self.page_size,
            self.circular_logging,
            list(self.stores),
        )

    def store_path(self, store: StoreConfig) -> str:
        return os.path.join(self.data_dir, store.file)

    def find_store(self, name: str) -> StoreConfig:
        for store in self.stores:
            if store.name == name or store.file == name:
                return store
        raise no_such_store(self.name, name, [s.name for s in self.stores])


def default_home() -> str:
    """The server home when ``--home`` is not given: ``$SHADOWSTORE_HOME``, else ``$XDG_DATA_HOME/shadowstore``,
    else ``~/.local/share/shadowstore``."""
    explicit = os.environ.get("SHADOWSTORE_HOME")
    if explicit:
        return explicit
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "shadowstore")


def set_mount_at_start(config: HomeConfig, sg: str, store: str, value: bool) -> StoreConfig:
    """Set ``mount_at_start`` of store ``store`` (name or file) of storage group ``sg`` in ``config``; the caller
    saves it. It takes effect when the service next starts. Raises NotFoundError naming what there is."""
    store_config = config.find(sg).find_store(store)
    store_config.mount_at_start = value
    return store_config


def no_such_store(sg: str, name: str, stores: list[str]) -> NotFoundError:
    """The error for store ``name`` that storage group ``sg`` (holding ``stores``) does not have."""
    if not stores:
        return NotFoundError(
            f"storage group {sg!r} has no stores yet, so it has no store {name!r}",
            hint=f"create one with: shadowstore store create {shlex.quote(sg)} {shlex.quote(name)}",
        )
    return NotFoundError(f"storage group {sg!r} has no store {name!r} (it has: {', '.join(stores)})")


@dataclass
class HomeConfig:
    server_name: str
    storage_groups: list[SgConfig] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # other tables ([backup] ...), kept as they are
    home_id: str | None = None  # None only in a home made before home ids: ServerHome.open gives it one

    def find(self, name: str) -> SgConfig:
        for sg in self.storage_groups:
            if sg.name == name:
                return sg
        names = ", ".join(repr(s.name) for s in self.storage_groups) or "none"
        raise NotFoundError(f"there is no storage group {name!r} (storage groups: {names})")


_HOME_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}-[0-9a-f]{8}")


def new_home_id(server_name: str) -> str:
    """``<server name>-<8 random hex digits>``: readable in a target's layout, and unique even when every
    server is called the same (the server name is cut to what a folder name in any target can hold)."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "-", server_name)[:40].strip("-._") or "home"
    return f"{readable}-{secrets.token_hex(4)}"


def validate_home_id(home_id: str) -> str:
    if not isinstance(home_id, str) or not _HOME_ID.fullmatch(home_id):
        raise InvalidParameterError(
            f"{home_id!r} is not a home id (a name, a dash and 8 hex digits, as 'mail01-3f2a9c1b')"
        )
    return home_id


def parse_size(text: str) -> int:
    """``1M``, ``64K``, ``8192``, ``2MiB`` -> bytes. Raises InvalidParameterError."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise InvalidParameterError(f"{text!r} is not a size (examples: 8192, 64K, 1M)")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    return int(match.group(1)) * scale


def parse_seconds(text: str | float, what: str) -> float:
    """A positive number of seconds. Raises InvalidParameterError naming ``what``."""
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{what} must be a number of seconds, not {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise InvalidParameterError(f"{what} must be more than 0 seconds, not {text!r}")
    return seconds


class NumberSetting(NamedTuple):
    """The values a numeric setting takes: a number from ``least`` to ``most``, or one of ``words``."""

    least: float
    most: float
    kind: str  # what a number of it is: "a number of seconds", "a rate in MB/s"
    example: str  # for the hint: a value to give, and what the default is
    words: tuple[str, ...] = ()

    def describe(self) -> str:
        words = "".join(f", or {word}" for word in self.words)
        return f"{self.kind} from {self.least:,g} to {self.most:,g}{words}"

    def check(self, name: str, value: object) -> float | str:
        """``value`` (text from the command line, or what the TOML file holds) as a number in range, or as one of
        ``words``. Raises InvalidParameterError naming ``name``, the value and the range."""
        if isinstance(value, str) and value.strip().lower() in self.words:
            return value.strip().lower()
        number = math.nan
        if isinstance(value, str | int | float) and not isinstance(value, bool):  # why not bool: true is not 1 s
            with contextlib.suppress(ValueError, OverflowError):  # OverflowError: an int too large for a float
                number = float(value)
        if not self.least <= number <= self.most:  # why this way round: NaN fails it too
            raise InvalidParameterError(
                f"{name} must be {self.describe()}, not {value!r}", hint=f"for example {self.example}"
            )
        return number


# The settings 'config set' takes that are numbers, and their ranges. Why bounded above: a value beyond these is
# a typo, and one large enough (1e20 seconds) made a backup's threads die with OverflowError, long after the
# setting was accepted. Why at least a second: below that, ordinary work (an fsync, a renewal's round trip to
# the target) outlasts the bound.
NUMBER_SETTINGS: dict[str, NumberSetting] = {
    # a transaction holding its store's writer latch for an hour has stopped every other writer for that long
    "engine.transaction_timeout": NumberSetting(1, 3600, "a number of seconds", "60 (the default)"),
    # a backup killed under a day-long lease already keeps its set 'running', unprunable, for a day
    "backup.lease_seconds": NumberSetting(1, 86400, "a number of seconds", "600 (the default)"),
    # also the bounds the service's API puts on a lease a program asks for itself (service/sessions.py)
    "service.session_lease_seconds": NumberSetting(1, 3600, "a number of seconds", "30 (the default)"),
    # commits wait while a storage group is frozen; the 'copy' provider copies the stores inside the freeze
    "vss.freeze_seconds": NumberSetting(1, 86400, "a number of seconds", "60 (the default)"),
    # backup/pace.py takes its MAX_RATE from here; 0: no limit
    "backup.max_rate": NumberSetting(
        0, 100_000, "a rate in MB/s", "40 (0: no limit; auto: as fast as commits allow)", ("auto",)
    ),
}
# ``timeout`` of a [[vss.hook]] entry (vss/hookwriter.py): an hour is beyond any pause an application needs
HOOK_TIMEOUT = NumberSetting(1, 3600, "a number of seconds", "30 (the default)")


def check_setting(key: str, value: object) -> float | str:
    """The value of numeric setting ``key`` (one of NUMBER_SETTINGS) checked against its range: a float, or
    one of its words ("auto"). Raises InvalidParameterError naming the setting, the value and the range."""
    return NUMBER_SETTINGS[key].check(key, value)


def validate_log_file_size(size: int) -> int:
    if not MIN_LOG_FILE_SIZE <= size <= MAX_LOG_FILE_SIZE or size % 4096:
        raise InvalidParameterError(
            f"log file size {size} must be a multiple of 4 KiB from {MIN_LOG_FILE_SIZE // 1024} KiB "
            f"to {MAX_LOG_FILE_SIZE // (1 << 20)} MiB"
        )
    return size


def validate_page_size(size: int) -> int:
    if size not in (4096, 8192, 16384, 32768):
        raise InvalidParameterError(f"page size {size} must be one of 4096, 8192, 16384, 32768")
    assert MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE
    return size


def next_log_base(config: HomeConfig) -> str:
    used = {sg.log_base for sg in config.storage_groups}
    for i in range(100):
        base = f"E{i:02d}"
        if base not in used:
            return base
    raise InvalidParameterError("every log base name E00-E99 is in use")


def load(fs: FileSystem, home: str) -> HomeConfig:
    """Read ``<home>/shadowstore.toml``. Raises NotFoundError or InvalidParameterError naming the problem."""
    path = os.path.join(home, CONFIG_NAME)
    if not fs.exists(path):
        raise NotFoundError(
            f"{home} is not a ShadowStore server home (no {CONFIG_NAME})",
            hint=f"create one with 'shadowstore --home {home} init'",
        )
    try:
        return _parse(read_file(fs, path), path)
    except InvalidParameterError as exc:
        raise InvalidParameterError(exc.message, hint=exc.hint or broken_hint(fs, home)) from None


def load_previous(fs: FileSystem, home: str) -> HomeConfig | None:
    """The configuration kept in ``shadowstore.toml.previous``, or None when there is none or it is not valid."""
    path = os.path.join(home, PREVIOUS_NAME)
    try:
        return _parse(read_file(fs, path), path)
    except (OSError, InvalidParameterError):
        return None


def _parse(raw: bytes, path: str) -> HomeConfig:
    """The configuration in ``raw`` (read from ``path``). Raises InvalidParameterError naming the problem."""
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidParameterError(f"{path} is not valid TOML: {exc}") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise InvalidParameterError(f"{path}: unsupported format_version {data.get('format_version')!r}")
    try:
        groups = [
            SgConfig(
                name=g["name"],
                log_base=g["log_base"],
                log_dir=g["log_dir"],
                system_dir=g["system_dir"],
                data_dir=g["data_dir"],
                log_file_size=int(g.get("log_file_size", DEFAULT_LOG_FILE_SIZE)),
                page_size=int(g.get("page_size", DEFAULT_PAGE_SIZE)),
                circular_logging=_boolean(g, "circular_logging", False, f"storage group {g.get('name')!r}", path),
                stores=[_store(s, path) for s in g.get("store", [])],
            )
            for g in data.get("storage_group", [])
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{path}: a storage group entry is incomplete ({exc})") from None
    for group in groups:
        _check_numbers(group, path)
    settings = {k: v for k, v in data.items() if k not in ("format_version", "server_name", "home_id", "storage_group")}
    _check_settings(settings, path)
    home_id = data.get("home_id")
    if home_id is not None:
        try:
            validate_home_id(home_id)
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"{path}: {exc.message}") from None
    return HomeConfig(str(data.get("server_name", socket.gethostname())), groups, settings, home_id)


def _store(entry: dict[str, Any], path: str) -> StoreConfig:
    """A ``[[storage_group.store]]`` entry. Raises KeyError, TypeError, ValueError (the caller names the file),
    InvalidParameterError for a ``mount_at_start`` that is not a TOML boolean (``"no"`` would read as true)."""
    mount_at_start = _boolean(entry, "mount_at_start", True, f"store {entry.get('name')!r}", path)
    return StoreConfig(entry["name"], entry["file"], int(entry["dbid"]), mount_at_start)


def _boolean(entry: dict[str, Any], key: str, default: bool, what: str, path: str) -> bool:
    """``entry[key]`` of ``what``, which must be a TOML boolean (``"no"`` would read as true). Raises
    InvalidParameterError naming the file and ``what``."""
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise InvalidParameterError(f"{path}: {key} of {what} must be true or false, not {value!r}")
    return value


def _check_numbers(group: SgConfig, path: str) -> None:
    """Refuse a log file size, page size or store number of ``group`` that the engine cannot use (a hand-edited
    file): each names the storage group. Raises InvalidParameterError."""
    where = f"{path}: storage group {group.name!r}"
    try:
        validate_log_file_size(group.log_file_size)
        validate_page_size(group.page_size)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{where}: {exc.message}") from None
    for store in group.stores:
        if not 1 <= store.dbid <= MAX_DBID:
            raise InvalidParameterError(
                f"{where}: dbid {store.dbid} of store {store.name!r} is not from 1 to {MAX_DBID}"
            )


def _check_settings(settings: dict[str, Any], path: str) -> None:
    """Refuse a numeric setting out of its range (NUMBER_SETTINGS, HOOK_TIMEOUT). Why at load: a hand-edited
    value then fails the next command, naming the line to change, instead of a backup's thread hours later.
    Raises InvalidParameterError whose hint says where to change it."""
    for key, rule in NUMBER_SETTINGS.items():
        section, name = key.split(".", 1)
        table = settings.get(section, {})
        if not isinstance(table, dict):
            raise InvalidParameterError(f"{path}: {section} must be a table ([{section}]), not {table!r}")
        if name in table:
            try:
                rule.check(key, table[name])
            except InvalidParameterError as exc:
                raise InvalidParameterError(
                    f"{path}: {exc.message}",
                    hint=f"change {name} in the [{section}] table of {path} to a value in that range, "
                    f"{exc.hint}, or delete the line",
                ) from None
    hooks = settings.get("vss", {}).get("hook", [])
    for entry in hooks if isinstance(hooks, list) else []:  # why only these: hook_writers names the rest
        if isinstance(entry, dict) and "timeout" in entry:
            try:
                HOOK_TIMEOUT.check(f"timeout of [[vss.hook]] {entry.get('name')!r}", entry["timeout"])
            except InvalidParameterError as exc:
                raise InvalidParameterError(f"{path}: {exc.message}", hint=f"change it in {path}") from None


def broken_hint(fs: FileSystem, home: str) -> str:
    """What to do about a configuration that cannot be read: where the previous one is, and what still works."""
    previous = os.path.join(home, PREVIOUS_NAME)
    keep = f"compare it with {previous}, the configuration before the last change, " if fs.exists(previous) else ""
    return (
        f"fix the file ({keep}or restore it from a copy); 'shadowstore events' and 'shadowstore eseutil' "
        "work without it"
    )


def save(fs: FileSystem, home: str, config: HomeConfig) -> None:
    """Replace ``<home>/shadowstore.toml`` atomically, first keeping what it held in ``shadowstore.toml.previous``
    (when the content changes). Both are written durably (temporary file, fsync, rename, folder fsync), the
    previous one first: a crash leaves the old configuration in place, or the new one with the old one beside
    it. Raises OSError from the file system."""
    data: dict[str, Any] = {"format_version": FORMAT_VERSION, "server_name": config.server_name}
    if config.home_id is not None:
        data["home_id"] = config.home_id
    data.update(config.settings)
    data["storage_group"] = [_sg_table(g) for g in config.storage_groups]
    path = os.path.join(home, CONFIG_NAME)
    content = tomli_w.dumps(data).encode()
    try:
        old: bytes | None = read_file(fs, path)
    except FileNotFoundError:
        old = None
    if old is not None and old != content:
        atomic_write(fs, os.path.join(home, PREVIOUS_NAME), old)
    atomic_write(fs, path, content)


def storage_group_toml(sg: SgConfig) -> str:
    """The ``[[storage_group]]`` entry of ``sg`` as it stands in shadowstore.toml (for a hint to copy)."""
    return tomli_w.dumps({"storage_group": [_sg_table(sg)]})


def _sg_table(g: SgConfig) -> dict[str, Any]:
    return {
        "name": g.name,
        "log_base": g.log_base,
        "log_dir": g.log_dir,
        "system_dir": g.system_dir,
        "data_dir": g.data_dir,
        "log_file_size": g.log_file_size,
        "page_size": g.page_size,
        "circular_logging": g.circular_logging,
        "store": [_store_table(s) for s in g.stores],
    }


def _store_table(s: StoreConfig) -> dict[str, Any]:
    table: dict[str, Any] = {"name": s.name, "file": s.file, "dbid": s.dbid}
    if not s.mount_at_start:  # why only then: a file that does not use the setting stays byte for byte as it was
        table["mount_at_start"] = False
    return table
