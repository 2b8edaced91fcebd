"""Snapshot providers: the part of the shadow-copy framework that freezes the bytes of a set of files while the
writers hold still (DESIGN.md section 6).

Three providers, best first:

* ``btrfs``: a read-only snapshot of each btrfs subvolume holding the files (one ioctl, milliseconds whatever the
  size once the data is written back);
* ``reflink``: a clone of each file (FICLONE) on btrfs or on XFS made with reflink; cost grows with extents;
* ``copy``: a full copy of each file, anywhere, costing a read and a write of every byte.

:func:`choose` picks the best that can snapshot every file (or checks the one named) and says why in one line.

**Snapshot folders.** A snapshot lives in ``<base>/.shadowstore-snapshots/<snapshot id>/`` on the files' own file
system (a clone and a btrfs snapshot cannot cross file systems): ``<base>`` is each file's folder for ``reflink``
and ``copy``, and the root of each subvolume for ``btrfs``. The folder holds ``owner.json`` (which process made it:
pid, its start time, boot id, host, pid namespace) and ``data`` (the copies or clones by file name, or the
read-only subvolume snapshot). It is built as ``.<id>.<pid>.new`` with its owner file and only then renamed to
``<id>``, so every snapshot folder has an owner file, and a crash leaves a folder :func:`sweep_leftovers` can judge.

**Freezing.** Nothing here freezes a file system: ``snapshot`` runs while the writers are frozen at the
application level, and a FIFREEZE of the file system being cloned would block the provider itself. Blocking
kernel calls release the interpreter lock (:mod:`shadowstore.io.clone`), so another thread can thaw the writers
on time. btrfs and reflink write back the files' dirty data before they return: call :func:`flush` before the
freeze to keep the commit short.

**Removal.** ``Snapshot.remove`` removes every folder of the snapshot; a job calls it after the backup, also when
the backup failed. A job that died before that leaves its folders, which the next job's :func:`sweep_leftovers`
removes once their owner is gone. A long-lived process (the service) runs the next job itself, so for folders of
this very process the test is whether anything in it still uses them: a ``snapshot`` call still running, or a
``Snapshot`` object still referenced. A commit the requestor gave up waiting for is thus removed by the next job
once it has finished and its result was dropped.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from shadowstore.errors import FileNotFoundError_, InvalidParameterError, SnapshotProviderError
from shadowstore.io import clone
from shadowstore.io.fs import OsFileSystem
from shadowstore.vss.snapshotfolders import (
    DATA,
    OWNER,
    SNAPSHOTS,
    adopt,
    build_folder,
    give_up,
    judge_folder,
    remove_root,
    sweep_leftovers,
)

__all__ = ["OWNER", "SNAPSHOTS", "judge_folder", "sweep_leftovers"]  # why: the layout's names, also used from here

BEFORE_COMMIT = "vss.provider.before_commit"  # crash points: the folders and owner files exist
AFTER_COMMIT = "vss.provider.after_commit"  # the snapshot is complete, not yet returned
NAMES = ("btrfs", "reflink", "copy")
MiB = 1 << 20

CrashPoint = Callable[[str], None]


@dataclass
class Snapshot:
    """The frozen copies of a set of files. ``root`` is the first snapshot folder; a snapshot of files on
    several file systems (or btrfs subvolumes) has one folder per place, the others in ``other_roots``."""

    provider: str  # "btrfs" | "reflink" | "copy"
    root: str
    files: dict[str, str]  # original absolute path -> path of its frozen copy
    commit_seconds: float  # how long ``Provider.snapshot`` took (writers are frozen all along)
    other_roots: list[str] = field(default_factory=list, repr=False)

    def remove(self) -> None:
        """Remove every folder of the snapshot; one already removed is skipped. Tries them all, then raises
        the first failure as a SnapshotProviderError (a btrfs snapshot cannot be deleted without root)."""
        failures = []
        for root in [self.root, *self.other_roots]:
            try:
                remove_root(root)
            except SnapshotProviderError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


class Provider(Protocol):
    name: str

    def unsuitable(self, paths: list[str]) -> str | None:
        """None when this provider can snapshot every one of these files, else why not (one line)."""

    def snapshot(self, paths: list[str], snapshot_id: str) -> Snapshot:
        """Freeze these files' bytes (called while their writers are frozen). Raises SnapshotProviderError, and
        FileNotFoundError_ or InvalidParameterError for a path that is not a file or an unusable id."""


# --- the providers --------------------------------------------------------------------------------------------


class _Base:
    """What the three providers share: checking the files, building snapshot folders, timing the commit and
    cleaning up after a failure. A subclass groups the files by snapshot folder (``_bases``), names their frozen
    copies (``_lay_out``) and makes them (``_commit``)."""

    name: str

    def __init__(self, crash_point: CrashPoint | None = None) -> None:
        # why a hook and not a patch: tests stop a real provider at BEFORE_COMMIT or AFTER_COMMIT this way, and
        # $SHADOWSTORE_PAUSE_AT (io/fs.py) stops one in another process for the kill -9 tests
        self._crash_point = crash_point or OsFileSystem().crash_point

    def unsuitable(self, paths: list[str]) -> str | None:
        try:
            files = resolve(paths)
            return self._unsuitable(files)
        except FileNotFoundError_ as exc:
            return exc.message
        except OSError as exc:
            return f"cannot look at {exc.filename}: {exc.strerror}"

    def _unsuitable(self, files: dict[str, str]) -> str | None:
        raise NotImplementedError

    def describe(self, paths: list[str]) -> str:
        """Why this provider fits these files, for :func:`choose`'s reason (they are suitable)."""
        raise NotImplementedError

    def snapshot(self, paths: list[str], snapshot_id: str) -> Snapshot:
        started = time.perf_counter()
        check_id(snapshot_id)
        files = resolve(paths)
        roots: list[str] = []
        building: list[str] = []
        try:
            groups = self._bases(files)
            for base in groups:
                roots.append(build_folder(base, snapshot_id, self.name, building))
            frozen: dict[str, str] = {}
            for root, (base, group) in zip(roots, groups.items(), strict=True):
                frozen.update(self._lay_out(root, base, group))
            self._crash_point(BEFORE_COMMIT)
            for root, (base, group) in zip(roots, groups.items(), strict=True):
                self._commit(root, base, group)
            self._crash_point(AFTER_COMMIT)
        except BaseException as exc:
            give_up(roots, building)
            if not isinstance(exc, OSError):
                raise
            raise SnapshotProviderError(
                f"the {self.name} provider could not snapshot {exc.filename or 'the files'}: {exc.strerror}",
                hint="'copy' works on any file system with room for the files (see 'auto')",
            ) from exc
        snap = Snapshot(self.name, roots[0], frozen, time.perf_counter() - started, roots[1:])
        adopt(roots, snap, building)
        return snap

    def _bases(self, files: dict[str, str]) -> dict[str, dict[str, str]]:
        """The files (original -> real path) by the folder that holds their snapshot folder: their own."""
        groups: dict[str, dict[str, str]] = {}
        for original, real in files.items():
            groups.setdefault(os.path.dirname(real), {})[original] = real
        return groups

    def _lay_out(self, root: str, base: str, files: dict[str, str]) -> dict[str, str]:
        """Create the empty copies in ``root/data`` (so the commit writes only data) and map each file to its."""
        clone.make_folder(os.path.join(root, DATA))
        frozen = {}
        for original, real in files.items():
            frozen[original] = os.path.join(root, DATA, os.path.basename(real))
            clone.create_file(frozen[original])
        return frozen

    def _commit(self, root: str, base: str, files: dict[str, str]) -> None:
        raise NotImplementedError


class BtrfsProvider(_Base):
    """A read-only snapshot of each btrfs subvolume holding the files, in ``<subvolume>/.shadowstore-snapshots``.
    Removing it needs CAP_SYS_ADMIN, so without it the provider is unsuitable (a snapshot that cannot be removed
    would pin the subvolume's old data)."""

    name = "btrfs"

    def _unsuitable(self, files: dict[str, str]) -> str | None:
        for folder in _folders(files.values()):
            kind = clone.fs_type(folder)
            if kind != clone.BTRFS_SUPER_MAGIC:
                return f"{folder} is {clone.fs_name(kind)}, not btrfs"
            root = clone.subvolume_root(folder)
            if root is None:
                return f"{folder} is on btrfs, but the root of its subvolume is not visible here (a bind mount?)"
            if not clone.writable(root):
                return f"cannot write in {root}, where the snapshot of its subvolume would go"
        if not clone.has_cap_sys_admin():
            return "removing a btrfs snapshot needs root (CAP_SYS_ADMIN), which this process lacks"
        return None

    def describe(self, paths: list[str]) -> str:
        roots = sorted(self._bases(resolve(paths)))
        if len(roots) == 1:
            return f"every file is in subvolume {roots[0]}"
        return f"the files are in subvolumes {', '.join(roots)}"

    def _bases(self, files: dict[str, str]) -> dict[str, dict[str, str]]:
        groups: dict[str, dict[str, str]] = {}
        for original, real in files.items():
            root = clone.subvolume_root(os.path.dirname(real))
            if root is None:
                raise OSError(errno.EINVAL, "not in a visible btrfs subvolume", real)
            groups.setdefault(root, {})[original] = real
        return groups

    def _lay_out(self, root: str, base: str, files: dict[str, str]) -> dict[str, str]:
        return {original: os.path.join(root, DATA, os.path.relpath(real, base)) for original, real in files.items()}

    def _commit(self, root: str, base: str, files: dict[str, str]) -> None:
        clone.snapshot_subvolume(base, root, DATA)


class ReflinkProvider(_Base):
    """A clone of each file (FICLONE), next to it: btrfs, or XFS made with reflink (the mkfs default)."""

    name = "reflink"

    def _unsuitable(self, files: dict[str, str]) -> str | None:
        for folder in _folders(files.values()):
            problem = clone.clone_probe(folder)
            if problem is None:
                continue
            kind = clone.fs_type(folder)
            if problem.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY, errno.EXDEV, errno.EISDIR):
                return f"cannot clone a file in {folder}: {problem.strerror}"
            without = " made without reflink" if kind == clone.XFS_SUPER_MAGIC else ""
            return f"{folder} is {clone.fs_name(kind)}{without}, which cannot clone"
        return None

    def describe(self, paths: list[str]) -> str:
        kinds = sorted({clone.fs_name(clone.fs_type(folder)) for folder in _folders(resolve(paths).values())})
        return f"{' and '.join(kinds)} with reflink"

    def _commit(self, root: str, base: str, files: dict[str, str]) -> None:
        for real in files.values():
            clone.clone_file(real, os.path.join(root, DATA, os.path.basename(real)))


class CopyProvider(_Base):
    """A full copy of each file, next to it: works on any file system with room for the copies."""

    name = "copy"

    def _unsuitable(self, files: dict[str, str]) -> str | None:
        need: dict[int, int] = {}
        folder_of: dict[int, str] = {}
        for folder in _folders(files.values()):
            if not clone.writable(folder):
                return f"cannot write in {folder}"
            dev = clone.device(folder)
            folder_of.setdefault(dev, folder)
            need[dev] = need.get(dev, 0) + sum(
                clone.regular_size(real) or 0 for real in files.values() if os.path.dirname(real) == folder
            )
        for dev, bytes_needed in need.items():
            free = clone.free_bytes(folder_of[dev])
            if free < bytes_needed:
                return f"{folder_of[dev]} has {free // MiB} MiB free; the copies need {-(-bytes_needed // MiB)} MiB"
        return None

    def describe(self, paths: list[str]) -> str:
        total = sum(clone.regular_size(real) or 0 for real in resolve(paths).values())
        return f"a full copy of every file ({-(-total // MiB)} MiB)"

    def _commit(self, root: str, base: str, files: dict[str, str]) -> None:
        for real in files.values():
            clone.copy_file(real, os.path.join(root, DATA, os.path.basename(real)))


PROVIDERS: dict[str, type[_Base]] = {"btrfs": BtrfsProvider, "reflink": ReflinkProvider, "copy": CopyProvider}


# --- choosing, sweeping, helpers ------------------------------------------------------------------------------


def choose(paths: list[str], wanted: str = "auto") -> tuple[Provider, str]:
    """The provider for these files and a one-line reason ("btrfs: every file is in subvolume /x"). ``auto``
    takes the first of btrfs, reflink, copy that can snapshot every file. Raises InvalidParameterError for an
    unknown name or a named provider that cannot (saying why and which would), SnapshotProviderError when none
    can, and FileNotFoundError_ for a path that is not a file."""
    if wanted != "auto" and wanted not in PROVIDERS:
        raise InvalidParameterError(f"unknown snapshot provider {wanted!r}; choose auto, {', '.join(NAMES)}")
    resolve(paths)
    if wanted != "auto":
        provider = PROVIDERS[wanted]()
        why_not = provider.unsuitable(paths)
        if why_not is None:
            return provider, f"{wanted}: {provider.describe(paths)}"
        others = {name: PROVIDERS[name]().unsuitable(paths) for name in NAMES if name != wanted}
        works = next((name for name, why in others.items() if why is None), None)
        hint = f"use the '{works}' provider (or 'auto')" if works else f"no provider can: {_why_none(others)}"
        raise InvalidParameterError(f"the {wanted} provider cannot snapshot these files: {why_not}", hint=hint)
    verdicts: dict[str, str | None] = {}
    for name in NAMES:
        provider = PROVIDERS[name]()
        verdicts[name] = provider.unsuitable(paths)
        if verdicts[name] is None:
            if name == "copy":
                return provider, f"copy: {verdicts['reflink']}"
            return provider, f"{name}: {provider.describe(paths)}"
    raise SnapshotProviderError(f"no snapshot provider can snapshot these files: {_why_none(verdicts)}")


def _why_none(verdicts: dict[str, str | None]) -> str:
    return "; ".join(f"{name}: {why}" for name, why in verdicts.items() if why)


def make_subvolume(path: str) -> bool:
    """Create the folder ``path`` as a btrfs subvolume when its (existing) parent is on btrfs, so the btrfs
    provider snapshots just it. Returns True when ``path`` is now a subvolume (made, or one already), False when
    its parent is not on btrfs or ``path`` already exists as a plain folder. Raises OSError from the kernel."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    if clone.fs_type(parent) != clone.BTRFS_SUPER_MAGIC:
        return False
    if clone.modified_at(path) is not None:
        return clone.is_subvolume(path)
    clone.create_subvolume(parent, name)
    return True


def flush(paths: list[str]) -> None:
    """Write back the dirty data of every file system holding these files (syncfs). Call it in
    PrepareForSnapshot: btrfs and reflink write dirty data back inside the commit otherwise (about 2.5 s per GiB
    on the test machine), while the writers are frozen. Raises OSError."""
    for folder in _folders(os.path.realpath(path) for path in paths):
        clone.syncfs(folder)


def resolve(paths: list[str]) -> dict[str, str]:
    """Each path as given (made absolute) -> its real path. Raises InvalidParameterError for an empty list and
    FileNotFoundError_ for a path that is not a regular file."""
    if not paths:
        raise InvalidParameterError("no files to snapshot")
    files = {}
    for path in paths:
        real = os.path.realpath(path)
        if clone.regular_size(real) is None:
            raise FileNotFoundError_(f"cannot snapshot {path}: it is not a file")
        files[os.path.abspath(path)] = real
    return files


def check_id(snapshot_id: str) -> None:
    """Raise InvalidParameterError unless ``snapshot_id`` can name a snapshot folder."""
    if not snapshot_id or "/" in snapshot_id or snapshot_id.startswith(".") or len(snapshot_id.encode()) > 200:
        raise InvalidParameterError(f"{snapshot_id!r} cannot name a snapshot (no '/', no leading '.', 200 bytes)")


def _folders(reals: Iterable[str]) -> list[str]:
    return sorted({os.path.dirname(real) for real in reals})
