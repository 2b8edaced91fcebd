"""Moving a storage group's files to other folders (Exchange's "Move Storage Group Path" and "Move Database
Path"): which files each folder holds, the plan of copies, and the two file operations a move is made of.

A storage group keeps its files in three folders named by its configuration (config.py ``SgConfig``): the log
folder (``E00.log``, the archived generations, ``E00tmp.log``, ``res1.log``, ``res2.log``), the system folder
(``E00.chk``) and the data folder (the stores). The engine finds every one of them through the configuration
alone: a store by ``data_dir`` and its file name, its log records by its dbid, never by a path written in a log
or a header (the path in an ATTACH record is for people). So a folder can move with the storage group in any
state, Dirty Shutdown included, as long as every file of that folder moves together and nobody has it mounted.

:func:`inventory` lists what is on disk, :func:`plan_moves` (pure) turns it and the new folders into copies, and
:func:`room_needed` (pure) says how many bytes each destination needs. :func:`copy_durably` copies one file
through a temporary file in the destination folder (write, fsync, rename, fsync the folder: the destination may
be on another file system, so nothing is renamed across them); :func:`set_aside` moves a replaced file into a
quarantine folder beside it, never deleting it. The procedure around them (lock, journal, configuration
switch) is tools/sgmove.py.

Durability assumption: that of io/fs.py (a file is durable once fsynced, a name once its folder is fsynced).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

from shadowstore.config import SgConfig
from shadowstore.engine.layout import free_name
from shadowstore.engine.logstream import LogSet
from shadowstore.errors import DatabaseNotFoundError
from shadowstore.format.logfile import RESERVE_LOG_NAMES, checkpoint_name
from shadowstore.io.fs import FileHandle, FileStat, FileSystem
from shadowstore.io.replace import replace_durably

COPY_CHUNK = 4 << 20  # bytes read and written at a time


class Folders(NamedTuple):
    """The three folders of a storage group, as the configuration spells them or resolved."""

    log_dir: str
    system_dir: str
    data_dir: str

    @classmethod
    def of(cls, config: SgConfig) -> Folders:
        return cls(config.log_dir, config.system_dir, config.data_dir)

    def resolved(self, home: str) -> Folders:
        """Absolute and normalised (relative folders are taken from the server home, as config.py does)."""
        return Folders(*(os.path.normpath(os.path.join(home, f)) for f in self))


ROLES = Folders._fields  # ("log_dir", "system_dir", "data_dir")
ROLE_NAMES = {"log_dir": "log folder", "system_dir": "system folder", "data_dir": "data folder"}


@dataclass(frozen=True)
class FileMove:
    """One file to copy: ``source`` in the old folder of ``role`` to ``target`` in the new one."""

    role: str
    source: str
    target: str
    size: int


def inventory(fs: FileSystem, config: SgConfig, roles: tuple[str, ...] = ROLES) -> dict[str, dict[str, int]]:
    """The storage group's files in the folders of ``roles`` (``config`` resolved): role -> {path: size}. Log
    files are found by name in the log folder (every generation there, the current, prepared and reserve logs),
    the checkpoint by name in the system folder, stores by the configuration. Temporary files, lock files,
    quarantine and restore folders are not the storage group's data and stay where they are.

    Raises DatabaseNotFoundError when a store of the data folder is missing: a move would leave the
    configuration naming a file in a folder where it never was."""
    found: dict[str, dict[str, int]] = {role: {} for role in roles}
    if "log_dir" in roles:
        logs = LogSet.scan(fs, config.log_dir, config.log_base)
        for path in [*logs.archived.values(), logs.current, logs.tmp, *logs.reserves]:
            _add(fs, found["log_dir"], path)
    if "system_dir" in roles:
        _add(fs, found["system_dir"], os.path.join(config.system_dir, checkpoint_name(config.log_base)))
    if "data_dir" in roles:
        for store in config.stores:
            path = config.store_path(store)
            if not _add(fs, found["data_dir"], path):
                raise DatabaseNotFoundError(
                    f"store {store.name!r} of {config.name!r}: {path} does not exist, so its folder cannot move",
                    hint="restore the store from a backup, or remove it from the configuration, then move",
                )
    return found


def _add(fs: FileSystem, into: dict[str, int], path: str | None) -> bool:
    st = fs.stat(path) if path is not None else None
    if path is None or st is None:
        return False
    into[path] = st.size
    return True


def plan_moves(old: Folders, new: Folders, files: dict[str, dict[str, int]]) -> list[FileMove]:
    """The copies that take ``files`` (from :func:`inventory`) from the ``old`` folders to the ``new`` ones
    (both resolved): each file keeps its name. Roles whose folder does not change copy nothing. Pure."""
    moves = []
    for role in ROLES:
        source_dir, target_dir = getattr(old, role), getattr(new, role)
        if source_dir == target_dir:
            continue
        for path, size in sorted(files.get(role, {}).items()):
            moves.append(FileMove(role, path, os.path.join(target_dir, os.path.basename(path)), size))
    return moves


def room_needed(moves: list[FileMove], todo: list[FileMove], new: Folders, log_file_size: int) -> dict[str, int]:
    """Bytes each destination folder must have free: the files of ``todo`` (those of ``moves`` still to copy)
    and, in a new log folder, the logs a mount makes at once where ``moves`` brings none (the two reserve logs
    and the next generation prepared ahead, ``E00tmp.log``), so that the first mount after the move does not
    stop on a full disk again. Pure."""
    need: dict[str, int] = {}
    for move in todo:
        folder = os.path.dirname(move.target)
        need[folder] = need.get(folder, 0) + move.size
    logs = [m for m in moves if m.role == "log_dir"]
    if logs:
        names = {os.path.basename(m.source) for m in logs}
        missing = sum(1 for name in RESERVE_LOG_NAMES if name not in names)
        missing += 0 if any(name.endswith("tmp.log") for name in names) else 1
        need[new.log_dir] = need.get(new.log_dir, 0) + missing * log_file_size
    return need


def copy_durably(fs: FileSystem, source: str, target: str) -> FileStat:
    """Copy ``source`` to ``target`` so that ``target`` appears whole or not at all: through a temporary file
    in the target folder, fsynced, renamed into place, the folder fsynced (io/replace.py). An existing
    ``target`` is replaced. Returns what the source was when it was copied. Raises OSError (ENOSPC when the
    destination is full); the temporary file is removed then."""
    handle = fs.open(source, readonly=True)
    try:
        before = handle.stat()

        def fill(into: FileHandle) -> None:
            offset = 0
            while offset < before.size:
                chunk = handle.pread(min(COPY_CHUNK, before.size - offset), offset)
                if not chunk:
                    raise OSError(f"{source} ended at {offset} bytes while {before.size} were being copied")
                into.pwrite(chunk, offset)
                offset += len(chunk)

        replace_durably(fs, target, fill)
    finally:
        handle.close()
    return before


def set_aside(fs: FileSystem, path: str, quarantine: str) -> str:
    """Move ``path`` into the folder ``quarantine`` (on the same file system: a rename) under its own name, or
    ``name.1``, ``name.2`` ... if that is taken; never deletes. Durable when it returns: both folders are
    synced. Returns the new path. Raises OSError."""
    fs.makedirs(quarantine)
    kept = free_name(fs, os.path.join(quarantine, os.path.basename(path)))
    fs.rename(path, kept)
    fs.fsync_dir(quarantine)
    fs.fsync_dir(os.path.dirname(path))
    return kept


def same_stat(a: FileStat | None, b: dict[str, int] | None) -> bool:
    """Whether ``a`` is the file recorded as ``b`` (size, inode, modification time): a file that was written,
    or replaced, since it was copied is not."""
    if a is None or b is None:
        return False
    return (a.size, a.ino, a.mtime_ns) == (b.get("size"), b.get("ino"), b.get("mtime_ns"))


def stat_record(st: FileStat) -> dict[str, int]:
    """What :func:`same_stat` compares, as plain data for a journal."""
    return {"size": st.size, "ino": st.ino, "mtime_ns": st.mtime_ns}


def is_same_folder(fs: FileSystem, a: str, b: str) -> bool:
    """Whether the folders ``a`` and ``b`` are one folder: the same real path, or (both existing) the same
    device and inode, as a bind mount or a symbolic link on the way makes them."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    sa, sb = fs.stat(a), fs.stat(b)
    return sa is not None and sb is not None and (sa.dev, sa.ino) == (sb.dev, sb.ino)


def existing_ancestor(fs: FileSystem, folder: str) -> str:
    """``folder``, or its nearest parent that exists (where free space can be asked for before it is made)."""
    while not fs.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder
