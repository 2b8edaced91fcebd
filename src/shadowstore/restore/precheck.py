"""Checks a restore in place makes before it copies or moves anything, so that it cannot fail half-way for a
reason it could have seen first.

A store of the storage group that the backup does not hold (one created after the backup) keeps its file, but
an in-place restore that starts a new log stream moves the old logs to the quarantine folder: a store in Dirty
Shutdown would lose the logs its committed data is still only in, and the storage group would not mount
again (-539). Such a store must be brought to Clean Shutdown first: any command that mounts the storage group
runs soft recovery and dismounts it cleanly at its end (``store tables`` is a harmless one), which the refusal
says.
"""

from __future__ import annotations

import shlex

from shadowstore.config import SgConfig
from shadowstore.engine.dbfile import read_header_copies
from shadowstore.errors import RestoreError, ShadowStoreError
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN
from shadowstore.io.fs import FileSystem
from shadowstore.restore.plan import RestorePlan


def check_stores_left_alone(fs: FileSystem, dest: SgConfig, plan: RestorePlan) -> None:
    """Raise RestoreError when a store of ``dest`` (resolved) that ``plan`` does not restore is not in Clean
    Shutdown, or cannot be read."""
    restored = {d.database.file for d in plan.databases}
    for store in dest.stores:
        path = dest.store_path(store)
        if store.file in restored or not fs.exists(path):
            continue
        try:
            header = read_header_copies(fs, path).header
        except ShadowStoreError as exc:
            raise RestoreError(
                f"store {store.name!r} ({path}) is not in the backup, and its header cannot be read: {exc.message}",
                hint="restore into the recovery storage group instead, or repair that store first",
            ) from None
        if header.state != STATE_CLEAN_SHUTDOWN:
            command = f"shadowstore store tables {shlex.quote(dest.name)} {shlex.quote(store.name)}"
            raise RestoreError(
                f"store {store.name!r} ({path}) is not in the backup and is in {header.state_name}: its committed "
                "data may still be only in the logs, which a restore in place can move to the quarantine folder",
                hint=f"bring it to Clean Shutdown first by mounting the storage group once ({command} mounts it, "
                "recovers it and dismounts it), then run the restore again; nothing was changed",
            )
