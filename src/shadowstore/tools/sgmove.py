"""``shadowstore sg move``: move a storage group's folders to other disks as one safe, logged step, the way back
from a full disk that needs no file moved by hand (Exchange's "Move Storage Group Path").

The phases of :func:`move_storage_group`:

1. the request: the new folders (a folder that resolves to the one in use does not move), or, to resume, the
   folders of the unfinished move in the journal; a new log folder must not be another storage group's;
2. the lock: the storage group's own lock, the one a mount takes, so the move is refused while anyone has it
   mounted and nobody mounts it while files are copied; and the refusal of a restore half-way through placing;
3. the plan, checked before anything is written: every file of each folder that moves (engine/movepath.py),
   no name taken in the destination, and room there for the copies plus the logs a mount makes at once;
4. copy (the configuration still names the old folders, which stay mountable): each file is copied through a
   temporary file, fsynced, renamed, its folder fsynced (the destination may be another file system), and
   recorded in the journal with what the source was when it was copied;
5. switch: once every copy is durable, the configuration names the new folders (one atomic replace);
6. set aside: each old file moves into ``quarantine/move-<started>/`` in its old folder (never deleted);
7. done: the journal says so, and event 1050 records what moved.

The journal, ``<home>/moves/<log base>.json``, is replaced atomically at each step, so a crash at any point
leaves either the old folders in the configuration, all their files in place, or the new ones with every
file copied; running the same command again (or ``--resume``) finishes the move. Which side of the switch a
run is on is read from the configuration itself, not from the journal. If the old folders were mounted
between the crash and the run that finishes, whatever changed since it was copied (size, inode or
modification time) is copied again, and a copy of a file that is gone from the old folder since (most often a
log a backup truncated, but perhaps one deleted by hand, of which it is then the last copy) is set aside in
``quarantine/move-<started>/`` beside it, never deleted.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from shadowstore import config as cfg
from shadowstore.config import SgConfig
from shadowstore.engine import movepath
from shadowstore.engine.mountlog import refuse_interrupted_restore
from shadowstore.engine.movepath import ROLE_NAMES, ROLES, FileMove, Folders
from shadowstore.errors import (
    DiskFullError,
    InvalidParameterError,
    NotFoundError,
    StorageGroupBusyError,
)
from shadowstore.home import ServerHome, dismount_first
from shadowstore.io.fs import FileSystem, Lock
from shadowstore.io.replace import remove_temporaries_in, remove_temporaries_of
from shadowstore.quarantine import QUARANTINE, remember_places
from shadowstore.tools.movejournal import (
    disk,
    journal_folders,
    journal_path,
    new_journal,
    pending_journal,
    save_journal,
)


@dataclass
class MoveResult:
    """What a move did (or, with ``dry_run``, would do). Folders are as the configuration spells them."""

    sg: str
    old: Folders
    new: Folders
    moves: list[FileMove] = field(default_factory=list)  # every file of the folders that move
    copied: int = 0  # files copied by this run
    copied_bytes: int = 0
    kept: int = 0  # files an interrupted run had copied, unchanged since
    room: dict[str, tuple[int, int]] = field(default_factory=dict)  # destination -> (bytes needed, bytes free)
    quarantine: list[str] = field(default_factory=list)  # where the old files went
    set_aside: list[str] = field(default_factory=list)  # copies of files gone from the old folders since, kept
    resumed: bool = False
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def moved_roles(self) -> list[str]:
        return [r for r in ROLES if getattr(self.old, r) != getattr(self.new, r)]


def move_storage_group(
    home: ServerHome,
    name: str,
    *,
    log_dir: str | None = None,
    system_dir: str | None = None,
    data_dir: str | None = None,
    resume: bool = False,
    dry_run: bool = False,
) -> MoveResult:
    """Move storage group ``name`` to the given folders (relative ones are taken from the server home, as in
    the configuration), or with ``resume`` finish its interrupted move. See the module docstring.

    Raises InvalidParameterError (no new folder, a folder another storage group logs in, a name taken in the
    destination), NotFoundError (no such storage group, a missing store, nothing to resume),
    StorageGroupBusyError (mounted, or another move unfinished), RestoreInProgressError, DiskFullError (no
    room at the destination, checked before any copy; or it filled anyway), DiskIOError."""
    sg_config = home.config.find(name)
    journal = pending_journal(home, sg_config.log_base)
    current = Folders.of(sg_config)
    if journal is not None:
        old, new = journal_folders(journal, "from"), journal_folders(journal, "to")
        _check_resume(home, name, current, old, new, (log_dir, system_dir, data_dir), resume)
    else:
        if resume:
            raise NotFoundError(f"storage group {name!r} has no unfinished move to resume")
        old, new = current, _requested(home.fs, home.path, current, log_dir, system_dir, data_dir)
        _check_log_folder_free(home, name, new)
    result = MoveResult(name, old, new, resumed=journal is not None, dry_run=dry_run)
    switched = current.resolved(home.path) == new.resolved(home.path)
    if dry_run:
        return _dry_run(home, sg_config, journal, result, switched)
    with _locked(home.fs, name, sg_config.log_base, current.resolved(home.path).system_dir) as locks:
        refuse_interrupted_restore(home.fs, sg_config.resolved(home.path))
        path = journal_path(home, sg_config.log_base)  # why here: a save of another run could be under way before
        disk(lambda: remove_temporaries_of(home.fs, path), f"clearing temporary files beside {path}")
        if not switched:
            journal = _copy_phase(home, sg_config, journal, result, locks)
        assert journal is not None
        home.fs.crash_point("move.after_switch")
        _set_aside_phase(home, journal, result)
    result.warnings += _staying_folders_short_of_room(home, sg_config, result)
    return result


# --- the request -----------------------------------------------------------------------------------------------


def _requested(
    fs: FileSystem, home: str, current: Folders, log_dir: str | None, system_dir: str | None, data_dir: str | None
) -> Folders:
    """The new folders: each given one, unless it is the folder in use under another spelling (a symbolic link
    or a bind mount to it), which then does not move."""
    if log_dir is None and system_dir is None and data_dir is None:
        raise InvalidParameterError("name the new folder: --to, or --log-dir, --system-dir, --data-dir")
    given = Folders(log_dir or current.log_dir, system_dir or current.system_dir, data_dir or current.data_dir)
    old_abs, new_abs = current.resolved(home), given.resolved(home)
    new = Folders(
        *(
            old if movepath.is_same_folder(fs, getattr(old_abs, r), getattr(new_abs, r)) else wanted
            for r, old, wanted in zip(ROLES, current, given, strict=True)
        )
    )
    if new == current:
        raise InvalidParameterError(
            f"the storage group's files are already in those folders ({', '.join(sorted(set(old_abs)))})"
        )
    return new


def _check_log_folder_free(home: ServerHome, name: str, new: Folders) -> None:
    target = os.path.realpath(new.resolved(home.path).log_dir)
    for other in home.config.storage_groups:
        if other.name != name and os.path.realpath(os.path.join(home.path, other.log_dir)) == target:
            raise InvalidParameterError(f"log folder {new.log_dir!r} is already used by {other.name!r}")


def _check_resume(
    home: ServerHome,
    name: str,
    current: Folders,
    old: Folders,
    new: Folders,
    given: tuple[str | None, ...],
    resume: bool,
) -> None:
    """An unfinished move is finished by ``--resume`` or by the same command; anything else is refused, as is
    a configuration that names neither its old nor its new folders (someone changed it meanwhile)."""
    again = f"shadowstore sg move {shlex.quote(name)} --resume"
    if resume and any(given):
        raise InvalidParameterError("--resume finishes the move in the journal; give it no folders")
    if not resume:
        wanted = Folders(*(g or c for g, c in zip(given, old, strict=True))).resolved(home.path)
        targets = new.resolved(home.path)
        if not all(movepath.is_same_folder(home.fs, a, b) for a, b in zip(wanted, targets, strict=True)):
            raise StorageGroupBusyError(
                f"an earlier move of {name!r} to {', '.join(sorted(set(new)))} is unfinished "
                f"({journal_path(home, home.config.find(name).log_base)})",
                hint=f"finish it first: {again}",
            )
    if current.resolved(home.path) not in (old.resolved(home.path), new.resolved(home.path)):
        raise InvalidParameterError(
            f"the configuration of {name!r} names neither the folders the unfinished move started from nor "
            f"those it goes to; it was changed by hand ({journal_path(home, home.config.find(name).log_base)})",
            hint="put the folders of the journal's 'from' or 'to' back in the configuration, then resume",
        )


# --- the lock --------------------------------------------------------------------------------------------------


@contextmanager
def _locked(fs: FileSystem, name: str, base: str, system_dir: str) -> Iterator[ExitStack]:
    """Hold the storage group's lock in ``system_dir``, the one a mount takes, and those added to the stack
    later (the lock in the new system folder, once it is made)."""
    with ExitStack() as locks:
        locks.callback(_take_lock(fs, name, base, system_dir).release)
        yield locks


def _take_lock(fs: FileSystem, name: str, base: str, system_dir: str) -> Lock:
    path = os.path.join(system_dir, f"{base}.lock")
    try:
        return disk(lambda: fs.lock(path, f"pid {os.getpid()} (sg move)"), f"locking {path}")
    except StorageGroupBusyError as exc:
        raise StorageGroupBusyError(
            f"storage group {name!r} is mounted or in use: {exc.message}",
            hint=dismount_first(name, "run the move again; nothing was copied"),
        ) from None


# --- copy -------------------------------------------------------------------------------------------------------


def _copy_phase(
    home: ServerHome, sg_config: SgConfig, journal: dict[str, Any] | None, result: MoveResult, locks: ExitStack
) -> dict[str, Any]:
    """Plan, check, copy every file durably, then switch the configuration. Returns the journal."""
    fs = home.fs
    old_abs, new_abs = result.old.resolved(home.path), result.new.resolved(home.path)
    copied: dict[str, dict[str, Any]] = dict(journal["copied"]) if journal else {}
    ours = set(journal["targets"]) if journal else set()
    moves, todo = _plan(fs, sg_config, old_abs, new_abs, result, copied)
    _check_targets(fs, moves, ours)
    _check_room(fs, moves, todo, new_abs, sg_config.log_file_size, result)
    if journal is None:
        journal = new_journal(sg_config, result.old, result.new)
    # why before the first copy: a copy renamed into place just before a crash is this move's, though the
    # journal has no record of it yet
    journal["targets"] = sorted(ours | {m.target for m in moves})
    save_journal(home, journal)
    for folder in dict.fromkeys(getattr(new_abs, r) for r in result.moved_roles):
        disk(partial(fs.makedirs, folder), f"making the folder {folder}")
    if new_abs.system_dir != old_abs.system_dir:  # why: nobody mounts the new folders before they are complete
        locks.callback(_take_lock(fs, sg_config.name, sg_config.log_base, new_abs.system_dir).release)
    _clear_leftovers(fs, moves, copied, journal, home, result)
    for move in todo:
        before = disk(partial(movepath.copy_durably, fs, move.source, move.target), f"copying {move.source}")
        fs.crash_point("move.copy.before_record")
        copied[move.target] = {"role": move.role, "source": move.source, **movepath.stat_record(before)}
        journal["copied"] = copied
        save_journal(home, journal)
        result.copied += 1
        result.copied_bytes += before.size
        fs.crash_point("move.copy.after_file")
    fs.crash_point("move.before_switch")
    _switch_config(home, sg_config.name, result.old, result.new)
    journal["phase"] = "switched"
    save_journal(home, journal)
    return journal


def _plan(
    fs: FileSystem,
    sg_config: SgConfig,
    old_abs: Folders,
    new_abs: Folders,
    result: MoveResult,
    copied: dict[str, dict[str, Any]],
) -> tuple[list[FileMove], list[FileMove]]:
    """Every file to move, and those still to copy (not copied by an interrupted run, or changed since)."""
    config = dataclasses.replace(sg_config, **old_abs._asdict())
    files = movepath.inventory(fs, config, tuple(result.moved_roles))
    moves = movepath.plan_moves(old_abs, new_abs, files)
    todo = [m for m in moves if not _copied_already(fs, m, copied.get(m.target))]
    result.moves, result.kept = moves, len(moves) - len(todo)
    return moves, todo


def _copied_already(fs: FileSystem, move: FileMove, record: dict[str, Any] | None) -> bool:
    """Whether an interrupted run copied ``move`` and neither side changed since: the source is the file it
    copied (size, inode, modification time) and the copy has its size."""
    target = fs.stat(move.target)
    return movepath.same_stat(fs.stat(move.source), record) and target is not None and target.size == move.size


def _check_targets(fs: FileSystem, moves: list[FileMove], ours: set[str]) -> None:
    """Refuse a destination where a file of the move's name already is, unless this move put it there."""
    taken = [m.target for m in moves if m.target not in ours and fs.exists(m.target)]
    if taken:
        raise InvalidParameterError(
            f"the destination already holds {', '.join(taken[:5])}{' ...' if len(taken) > 5 else ''}",
            hint="choose an empty folder, or move those files away first; nothing was copied",
        )


def _check_room(
    fs: FileSystem,
    moves: list[FileMove],
    todo: list[FileMove],
    new_abs: Folders,
    log_file_size: int,
    result: MoveResult,
) -> None:
    """Refuse, before the first copy, a destination file system without room for what goes to it."""
    by_disk: dict[object, tuple[str, int, int]] = {}
    for folder, need in movepath.room_needed(moves, todo, new_abs, log_file_size).items():
        probe = movepath.existing_ancestor(fs, folder)
        st = fs.stat(probe)
        key = st.dev if st is not None else None  # why None: a file system that cannot say is one disk
        first, total, free = by_disk.get(key, (folder, 0, fs.free_space(probe)))
        by_disk[key] = (first, total + need, free)
        result.room[folder] = (need, free)
    for folder, need, free in by_disk.values():
        if need > free:
            raise DiskFullError(
                f"moving the files to {folder} needs {need:,} bytes there (the copies, and the logs a mount "
                f"makes at once), but only {free:,} are free",
                hint="choose a folder on a disk with more room; nothing was copied, the storage group still "
                "uses its old folders",
            )


def _clear_leftovers(
    fs: FileSystem,
    moves: list[FileMove],
    copied: dict[str, dict[str, Any]],
    journal: dict[str, Any],
    home: ServerHome,
    result: MoveResult,
) -> None:
    """What an interrupted run left in the destination: the temporary file of the copy it was making (removed),
    and its copies of files that are gone from the source since (set aside in ``quarantine/move-<started>``
    beside them). Both are this move's own files (``journal["targets"]``). Requires: the locks are held."""
    ours = set(journal["targets"])
    names = {os.path.basename(t) for t in ours}
    for folder in dict.fromkeys(os.path.dirname(t) for t in ours):
        if fs.exists(folder):
            disk(partial(remove_temporaries_in, fs, folder, names.__contains__), f"clearing {folder}")
    planned = {m.target for m in moves}
    stale = sorted(ours - planned)
    for target in stale:
        if fs.exists(target):
            # why kept: a log a backup truncated is not needed, but one deleted by hand has no other copy
            quarantine = os.path.join(os.path.dirname(target), "quarantine", f"move-{journal['started']}")
            kept = disk(partial(movepath.set_aside, fs, target, quarantine), f"setting {target} aside")
            result.set_aside.append(kept)
        copied.pop(target, None)
    if stale:
        journal["copied"], journal["targets"] = copied, sorted(planned)
        save_journal(home, journal)


def _switch_config(home: ServerHome, name: str, old: Folders, new: Folders) -> None:
    """Make the configuration name the ``new`` folders, in one atomic replace, read again from disk first so
    that nothing another command saved meanwhile is lost. Raises InvalidParameterError if it no longer names
    the ``old`` folders."""
    fresh = disk(lambda: cfg.load(home.fs, home.path), "reading the configuration")
    index = next((i for i, g in enumerate(fresh.storage_groups) if g.name == name), None)
    if index is None or Folders.of(fresh.storage_groups[index]).resolved(home.path) != old.resolved(home.path):
        raise InvalidParameterError(
            f"the configuration of {name!r} changed while its files were copied; it was left as it is",
            hint=f"run 'shadowstore sg move {shlex.quote(name)} --resume' to look again",
        )
    fresh.storage_groups[index] = dataclasses.replace(fresh.storage_groups[index], **new._asdict())
    disk(lambda: cfg.save(home.fs, home.path, fresh), "saving the configuration")
    home.config = fresh
    # why: a StorageGroup this home made before holds the old folders; ServerHome has no public way to forget
    # one that keeps the storage groups' order (set_storage_group_config moves it to the end).
    home._groups.pop(name, None)


# --- set aside --------------------------------------------------------------------------------------------------


def _set_aside_phase(home: ServerHome, journal: dict[str, Any], result: MoveResult) -> None:
    """Move each old file still in its old folder into ``quarantine/move-<started>`` beside it; then done."""
    fs = home.fs
    stamp = journal["started"]
    entries = sorted(journal["copied"].items())
    # why first: what is set aside in the old folders stays listed (and purgeable) once they are not the group's
    roots = [os.path.join(os.path.dirname(entry["source"]), QUARANTINE) for _target, entry in entries]
    disk(lambda: remember_places(home, result.sg, list(dict.fromkeys(roots))), "recording the old quarantines")
    if not result.moves:  # resumed after the switch: the journal knows what moved
        result.moves = [FileMove(e["role"], e["source"], target, int(e["size"])) for target, e in entries]
        result.kept = len(entries)
    for _target, entry in entries:
        source = entry["source"]
        quarantine = os.path.join(os.path.dirname(source), "quarantine", f"move-{stamp}")
        if quarantine not in result.quarantine:
            result.quarantine.append(quarantine)
        if fs.exists(source):
            disk(partial(movepath.set_aside, fs, source, quarantine), f"setting {source} aside")
            fs.crash_point("move.quarantine.after_file")
    journal["phase"] = "done"
    journal["quarantine"] = result.quarantine
    save_journal(home, journal)
    moved = "; ".join(
        f"{ROLE_NAMES[r]} {getattr(result.old, r)} -> {getattr(result.new, r)}" for r in result.moved_roles
    )
    home.events.emit(
        1050,
        sg=result.sg,
        moved=moved,
        files=len(journal["copied"]),
        bytes=sum(int(e["size"]) for e in journal["copied"].values()),
        quarantine=", ".join(result.quarantine) or "none (there were no old files)",
        sync=True,
    )


# --- dry run, warnings ------------------------------------------------------------------------------------------


def _dry_run(
    home: ServerHome, sg_config: SgConfig, journal: dict[str, Any] | None, result: MoveResult, switched: bool
) -> MoveResult:
    """What the move would do, with every check that needs no lock; nothing is written."""
    fs = home.fs
    system_dir = Folders.of(sg_config).resolved(home.path).system_dir
    holder = fs.lock_holder(os.path.join(system_dir, f"{sg_config.log_base}.lock"))
    if holder is not None:
        result.warnings.append(f"the storage group is in use ({holder}): the move would be refused")
    if not switched:
        copied = dict(journal["copied"]) if journal else {}
        old_abs, new_abs = result.old.resolved(home.path), result.new.resolved(home.path)
        moves, todo = _plan(fs, sg_config, old_abs, new_abs, result, copied)
        _check_targets(fs, moves, set(journal["targets"]) if journal else set())
        _check_room(fs, moves, todo, new_abs, sg_config.log_file_size, result)
    return result


def _staying_folders_short_of_room(home: ServerHome, sg_config: SgConfig, result: MoveResult) -> list[str]:
    """A folder that does not move, left on a disk with less room than a mount needs for its reserve logs."""
    warnings = []
    low = 2 * sg_config.log_file_size
    for role in ROLES:
        if role in result.moved_roles:
            continue
        folder = getattr(result.new.resolved(home.path), role)
        if home.fs.exists(folder) and (free := home.fs.free_space(folder)) < low:
            option = "--" + role.replace("_", "-")
            warnings.append(
                f"the {ROLE_NAMES[role]} {folder} stays on a disk with {free:,} bytes free: mounting may fail on "
                f"it again; move it too ({option})"
            )
    return warnings
