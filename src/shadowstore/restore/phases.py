"""The first two phases of a restore: fetch the plan's files out of the target, and hard-recover them.

Where the copies go is chosen so that placing them later is a rename on one file system, whatever the layout:
store copies are fetched into ``<destination data folder>/restore/db/`` (the file system the stores will live
on), logs into ``<destination system folder>/restore/logs/`` (they are only read, never placed). With the
default layout both are the one staging folder beside the journal. Before anything is copied the space needed
is checked on each file system that receives copies (a data folder on its own volume is checked for the stores,
not the system folder's volume).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from shadowstore.backup.layout import set_folder
from shadowstore.backup.target import Target
from shadowstore.config import SgConfig, StoreConfig
from shadowstore.engine.hardrecovery import HardRecoveryReport, ReplayLog, Stop, hard_recover, read_current_log
from shadowstore.engine.logstream import LogSet
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.errors import DiskFullError, MissingRestoreLogFilesError
from shadowstore.format.logfile import archived_log_name, current_log_name
from shadowstore.home import ServerHome
from shadowstore.io.fs import FileSystem
from shadowstore.io.replace import remove_temporaries_in
from shadowstore.restore.fetch import fetch_file
from shadowstore.restore.journal import Journal
from shadowstore.restore.plan import RestorePlan

ROOM_MARGIN = 16 << 20  # bytes kept free beyond the files a restore copies
Progress = Callable[[str, int, int], None]  # ("fetch", bytes, bytes) or ("replay", generations, generations)


def db_staging(dest: SgConfig) -> str:
    """Where the store copies of a restore into ``dest`` (resolved) are fetched and recovered."""
    return os.path.join(dest.data_dir, "restore", "db")


def log_staging(staging: str) -> str:
    return os.path.join(staging, "logs")


def clear_db_staging(fs: FileSystem, dest: SgConfig, staging: str) -> None:
    """Remove the store copies when they are not inside ``staging`` (which clear_staging removes whole)."""
    folder = db_staging(dest)
    if os.path.dirname(folder) == staging or not fs.exists(folder):
        return
    for name in fs.listdir(folder):
        fs.unlink(os.path.join(folder, name))
    fs.fsync_dir(folder)
    fs.rmdir(folder)
    parent = os.path.dirname(folder)
    if not fs.listdir(parent):
        fs.rmdir(parent)
    fs.fsync_dir(os.path.dirname(parent))


def fetch(
    fs: FileSystem,
    target: Target,
    plan: RestorePlan,
    dest: SgConfig,
    staging: str,
    journal: Journal,
    progress: Progress,
) -> int:
    """Copy every store and log of ``plan`` not copied yet; returns the bytes copied. Raises DiskFullError
    before copying anything when a receiving file system lacks the room."""
    db_dir, log_dir = db_staging(dest), log_staging(staging)
    fs.makedirs(db_dir)
    fs.makedirs(log_dir)
    todo = [(d.backup_id, d.entry, os.path.join(db_dir, d.database.file)) for d in plan.databases]
    todo += [
        (log.backup_id, log.entry, os.path.join(log_dir, archived_log_name(plan.log_base, log.generation)))
        for log in plan.logs
        if not fs.exists(os.path.join(log_dir, archived_log_name(plan.log_base, log.generation)))
    ]
    check_room(fs, [(os.path.dirname(path), entry.size) for _, entry, path in todo])
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress("fetch", done, sum(entry.size for _, entry, _ in todo))

    for folder in (db_dir, log_dir):  # a killed run's partial copies (the restore lock is held)
        remove_temporaries_in(fs, folder, lambda _name: True)
    for backup_id, entry, destination in todo:
        fetch_file(target, set_folder(plan.home, plan.sg, backup_id), entry, fs, destination, progress=advance)
        fs.crash_point("restore.fetch.file")
    journal.data["phase"] = "recover"
    journal.save(fs)
    return done


def check_room(fs: FileSystem, needs: list[tuple[str, int]]) -> None:
    """Raise DiskFullError when the folders in ``needs`` (folder, bytes), added up per file system, do not fit."""
    by_device: dict[int, tuple[str, int]] = {}
    for folder, size in needs:
        found = fs.stat(folder)
        device = found.dev if found is not None else hash(folder)
        where, total = by_device.get(device, (folder, 0))
        by_device[device] = (where, total + size)
    for where, total in by_device.values():
        free = fs.free_space(where)
        if free < total + ROOM_MARGIN:
            raise DiskFullError(
                f"the restore needs {total:,} bytes in {where} for the files it copies out of the backups, but "
                f"only {free:,} are free on that file system",
                hint="free space on that disk and run the restore again (the current stores stay where they are)",
            )


def recover(
    home: ServerHome,
    plan: RestorePlan,
    dest: SgConfig,
    staging: str,
    journal: Journal,
    live: str | None,
    progress: Progress,
) -> HardRecoveryReport:
    """Hard recovery of the fetched copies, with the live logs in folder ``live`` after them when the plan
    says so; the copies end in Clean Shutdown."""
    sg_config = SgConfig(
        name=journal.data["destination"],
        log_base=plan.log_base,
        log_dir=log_staging(staging),
        system_dir=staging,
        data_dir=db_staging(dest),
        page_size=plan.databases[0].database.page_size,
        stores=[StoreConfig(d.database.store, d.database.file, d.database.dbid) for d in plan.databases],
    )
    sg = StorageGroup(sg_config, home.fs, home.events)
    logs = [
        ReplayLog(log.generation, os.path.join(sg_config.log_dir, archived_log_name(plan.log_base, log.generation)))
        for log in plan.logs
    ]
    if live is not None and plan.live_from is not None:
        logs += live_logs(home.fs, live, plan.log_base, plan.live_from, plan.target.until_gen)
    stop = Stop(until_gen=plan.target.until_gen, until_us=plan.target.until_us)
    first = logs[0].generation if logs else 0
    try:
        # progress of the replay: generations done out of those given (replay may stop before the last)
        return hard_recover(sg, logs, stop, on_log=lambda gen: progress("replay", gen - first + 1, len(logs)))
    finally:
        for store in sg.stores.values():
            store.close()


def live_logs(fs: FileSystem, log_dir: str, base: str, first: int, until_gen: int | None) -> list[ReplayLog]:
    """Generations ``first``.. of the live log folder, the current log last; every one must be there.

    The current log is read first, whole: a storage group still mounted may roll it at any moment, and every
    generation before the one read was archived before it was read, so the folder listed next holds them."""
    current_path = os.path.join(log_dir, current_log_name(base))
    try:
        current_header, current_data = read_current_log(fs, current_path)
        current_gen: int | None = current_header.generation
    except FileNotFoundError:
        current_gen, current_data = None, None
    found = LogSet.scan(fs, log_dir, base)
    high = current_gen if current_gen is not None else max(found.archived, default=first - 1)
    if until_gen is not None:
        high = min(high, until_gen)
    logs = []
    for gen in range(first, high + 1):
        if gen == current_gen:
            logs.append(ReplayLog(gen, current_path, current=True, data=current_data))
        elif gen in found.archived:
            logs.append(ReplayLog(gen, found.archived[gen]))
        else:
            raise MissingRestoreLogFilesError(
                f"rolling forward needs generation {gen} ({archived_log_name(base, gen)}), which is neither in the "
                f"backups nor in the live log folder {log_dir}"
                + (f" (it holds {min(found.archived)}-{max(found.archived)})" if found.archived else "")
            )
    if not logs:
        raise MissingRestoreLogFilesError(
            f"rolling forward needs generations from {first} on, but the live log folder {log_dir} has none"
        )
    return logs
