"""eseutil /r: soft recovery of one storage group named by its log base (``E00``), leaving it dismounted.

Recovery is the mount's own (engine/mount.py: soft recovery replays the logs from the
checkpoint into every store in Dirty Shutdown), followed by a clean dismount (engine/dismount.py), so every
store ends in Clean Shutdown needing no log, exactly as a mount and a dismount would leave it; nothing here
replays anything itself. A storage group that is mounted (its lock is held, by the Information Store service
or another process) is refused: it needs no recovery, and its files are not ours to touch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from shadowstore.config import SgConfig
from shadowstore.engine.dbfile import read_header_copies
from shadowstore.errors import (
    DatabaseDirtyShutdownError,
    NotFoundError,
    ShadowStoreError,
    StorageGroupBusyError,
)
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN, STATE_NAMES
from shadowstore.home import ServerHome
from shadowstore.tools.eseutil import Report


@dataclass
class StoreOutcome:
    name: str
    path: str
    before: str  # state name before recovery ("Missing", "Damaged" when the header could not be read)
    log_required: tuple[int, int]  # before recovery
    after: str = ""


@dataclass
class RecoveryDump(Report):
    """What /r did to one storage group."""

    home: str
    sg: str
    base: str
    log_dir: str
    system_dir: str
    data_dir: str
    stores: list[StoreOutcome] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # stores that were replayed into
    generations: tuple[int, int] | None = None  # replayed
    transactions: int = 0  # log records replayed (RecoveryReport.records)
    seconds: float = 0.0


def soft_recover(target: str, home: str | None = None) -> RecoveryDump:
    """Run soft recovery on the storage group of server home ``home`` (the default home when None) whose log
    base (or name) is ``target``, and leave it dismounted with every store in Clean Shutdown.

    Raises NotFoundError when there is no such home or storage group, StorageGroupBusyError when the storage
    group is mounted by the service or another process, the errors of mount (missing or damaged logs:
    -528, -501, ..., nothing changed then), and DatabaseDirtyShutdownError (-550) when a store is still not in
    Clean Shutdown afterwards.
    """
    started = time.monotonic()
    server = ServerHome.open(home)
    try:
        config = _find_group(server, target)
        _refuse_mounted(server, config)
        dump = RecoveryDump(
            server.path, config.name, config.log_base, config.log_dir, config.system_dir, config.data_dir
        )
        dump.stores = [_before(server, s.name, config.store_path(s)) for s in config.stores]
        group = server.storage_group(config.name)
        report = group.mount()
        group.dismount()
    finally:
        server.close()
    dump.recovered, dump.generations, dump.transactions = report.stores, report.generations, report.records
    for outcome in dump.stores:
        outcome.after = _state(server, outcome.path)
        if outcome.after != STATE_NAMES[STATE_CLEAN_SHUTDOWN]:
            dump.errors.append(
                DatabaseDirtyShutdownError(
                    f"{outcome.path} (store {outcome.name!r} of {config.name!r}) is in {outcome.after} after recovery",
                    hint="see the event log ('shadowstore events') for why the dismount could not finish",
                    file=outcome.path,
                )
            )
    dump.seconds = time.monotonic() - started
    return dump


def _find_group(server: ServerHome, target: str) -> SgConfig:
    wanted = os.path.basename(target.rstrip("/")).upper()
    groups = [g.resolved(server.path) for g in server.config.storage_groups]
    for group in groups:
        if group.log_base.upper() == wanted or group.name.upper() == target.upper():
            return group
    known = ", ".join(f"{g.log_base} ({g.name})" for g in groups) or "none"
    raise NotFoundError(
        f"server home {server.path} has no storage group with log base {target!r}; it has: {known}",
        hint="name the storage group by its log base, e.g. 'eseutil /r E00', and the home with --home",
    )


def _refuse_mounted(server: ServerHome, config: SgConfig) -> None:
    holder = server.fs.lock_holder(os.path.join(config.system_dir, f"{config.log_base}.lock"))
    if holder is None:
        return
    raise StorageGroupBusyError(
        f"storage group {config.name!r} ({config.log_base}) of {server.path} is mounted by {holder}; a mounted "
        "storage group needs no recovery",
        hint=f'dismount it first with: shadowstore --home {server.path} dismount "{config.name}" (when the '
        "service runs it; else stop that process), then run eseutil /r again",
    )


def _before(server: ServerHome, name: str, path: str) -> StoreOutcome:
    try:
        header = read_header_copies(server.fs, path).header
    except FileNotFoundError:
        return StoreOutcome(name, path, "Missing", (0, 0))
    except ShadowStoreError:
        return StoreOutcome(name, path, "Damaged", (0, 0))
    return StoreOutcome(name, path, header.state_name, (header.log_required_min, header.log_required_max))


def _state(server: ServerHome, path: str) -> str:
    try:
        return read_header_copies(server.fs, path).header.state_name
    except FileNotFoundError:
        return "Missing"
    except ShadowStoreError as exc:
        return f"Damaged ({exc.message})"
