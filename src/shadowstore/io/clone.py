"""The snapshot providers' door to the operating system: file clones, btrfs subvolumes, and the plain file and
folder calls the providers' snapshot folders need (:mod:`shadowstore.vss.providers` holds the policy).

Every call that can block in the kernel for long releases the interpreter lock, so that a watchdog or a thaw in
another thread of this process can always run (``research/vss.md`` section 4f):

* the btrfs ioctls take a 4096-byte argument. ``fcntl.ioctl`` with a mutable buffer over 1024 bytes calls
  ``ioctl()`` *without* releasing the lock, so they go through ``ctypes.CDLL(None).ioctl``, which releases it;
* FICLONE takes an int argument, for which ``fcntl.ioctl`` releases the lock;
* ``statfs`` and ``syncfs`` go through ctypes as well (``os`` offers neither).

Nothing here freezes a file system (FIFREEZE): a provider that froze the file system it clones or snapshots
would block on its own freeze. Writers quiesce at the application level instead.

Nothing here fsyncs either: snapshot folders are temporary, and one that a crash leaves behind is found by its
owner file and removed by the next job, whatever state it is in.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import shutil
import stat

from shadowstore.io.fs import write_all

FICLONE = 0x40049409  # _IOW(0x94, 9, int)
BTRFS_IOC_SUBVOL_CREATE = 0x5000940E  # _IOW(0x94, 14, struct btrfs_ioctl_vol_args)
BTRFS_IOC_SNAP_DESTROY = 0x5000940F  # _IOW(0x94, 15, struct btrfs_ioctl_vol_args)
BTRFS_IOC_SNAP_CREATE_V2 = 0x50009417  # _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)
BTRFS_SUBVOL_RDONLY = 1 << 1
BTRFS_FIRST_FREE_OBJECTID = 256  # the inode number of every subvolume's root folder
CAP_SYS_ADMIN = 21

# statfs f_type values (linux/magic.h) and the names we print for them
BTRFS_SUPER_MAGIC = 0x9123683E
XFS_SUPER_MAGIC = 0x58465342
EXT4_SUPER_MAGIC = 0xEF53
_FS_NAMES = {
    BTRFS_SUPER_MAGIC: "btrfs",
    XFS_SUPER_MAGIC: "XFS",
    EXT4_SUPER_MAGIC: "ext4",  # also ext2 and ext3: one magic
    0x01021994: "tmpfs",
    0x794C7630: "overlayfs",
    0x6969: "NFS",
    0xFF534D42: "CIFS",
    0x2FC12FC1: "ZFS",
    0x65735546: "FUSE",
    0x4D44: "FAT",
    0x5346544E: "NTFS",
    0xF2F52010: "F2FS",
}
COPY_CHUNK = 8 << 20  # bytes per read and write of a copy


class _VolArgs(ctypes.Structure):
    """struct btrfs_ioctl_vol_args (linux/btrfs.h): SUBVOL_CREATE and SNAP_DESTROY."""

    _fields_ = (
        ("fd", ctypes.c_int64),  # 0: unused by these two calls
        ("name", ctypes.c_char * 4088),  # 8: BTRFS_PATH_NAME_MAX + 1, NUL-terminated
    )


class _VolArgsV2(ctypes.Structure):
    """struct btrfs_ioctl_vol_args_v2 (linux/btrfs.h): SNAP_CREATE_V2."""

    _fields_ = (
        ("fd", ctypes.c_int64),  # 0: the source subvolume's root folder
        ("transid", ctypes.c_uint64),  # 8: out, unused
        ("flags", ctypes.c_uint64),  # 16: BTRFS_SUBVOL_RDONLY
        ("unused", ctypes.c_uint64 * 4),  # 24: qgroup inheritance, unused
        ("name", ctypes.c_char * 4040),  # 56: BTRFS_SUBVOL_NAME_MAX + 1, NUL-terminated
    )


class _StatFs(ctypes.Structure):
    """struct statfs on 64-bit Linux (x86_64 and the generic layout of arm64): only ``f_type`` is read."""

    _fields_ = (
        ("f_type", ctypes.c_long),  # 0
        ("f_bsize", ctypes.c_long),  # 8
        ("f_counts", ctypes.c_uint64 * 5),  # 16: blocks, bfree, bavail, files, ffree
        ("f_fsid", ctypes.c_int * 2),  # 56
        ("f_namelen", ctypes.c_long),  # 64
        ("f_frsize", ctypes.c_long),  # 72
        ("f_flags", ctypes.c_long),  # 80
        ("f_spare", ctypes.c_long * 4),  # 88
    )


assert ctypes.sizeof(_VolArgs) == 4096
assert ctypes.sizeof(_VolArgsV2) == 4096
assert ctypes.sizeof(_StatFs) == 120


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, whose calls release the interpreter lock (a ``CDLL``, not a ``PyDLL``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
    libc.ioctl.restype = ctypes.c_int
    libc.statfs.argtypes = (ctypes.c_char_p, ctypes.c_void_p)
    libc.statfs.restype = ctypes.c_int
    libc.syncfs.argtypes = (ctypes.c_int,)
    libc.syncfs.restype = ctypes.c_int
    return libc


def _check(result: int, path: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)


def _open_folder(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _vol_args_name(name: str, size: int) -> bytes:
    raw = os.fsencode(name)
    if not raw or b"/" in raw or raw in (b".", b"..") or len(raw) >= size:
        raise OSError(errno.EINVAL, "not a usable subvolume name", name)
    return raw


# --- file systems ---------------------------------------------------------------------------------------------


def fs_type(path: str) -> int:
    """The statfs magic number of the file system holding ``path``. Raises OSError."""
    buf = _StatFs()
    _check(_libc().statfs(os.fsencode(path), ctypes.byref(buf)), path)
    return int(buf.f_type) & 0xFFFFFFFF


def fs_name(magic: int) -> str:
    """A file system's name for messages ("btrfs", "XFS", "ext4"), or its magic number when unknown."""
    return _FS_NAMES.get(magic, f"a file system of type {magic:#x}")


def syncfs(path: str) -> None:
    """Write back every dirty page of the file system holding ``path`` (blocks; the lock is released)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc().syncfs(fd), path)
    finally:
        os.close(fd)


def has_cap_sys_admin() -> bool:
    """Whether this process holds CAP_SYS_ADMIN, which deleting a btrfs subvolume needs."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


# --- btrfs ----------------------------------------------------------------------------------------------------


def is_subvolume(path: str) -> bool:
    """Whether ``path`` is the root folder of a btrfs subvolume (in btrfs, inode 256 of every subvolume is its
    root folder, and no other file has that number)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_ino == BTRFS_FIRST_FREE_OBJECTID and fs_type(path) == BTRFS_SUPER_MAGIC


def subvolume_root(folder: str) -> str | None:
    """The root folder of the btrfs subvolume holding ``folder``, or None when ``folder`` is not on btrfs or the
    root is not visible from here (a bind mount of a folder inside a subvolume)."""
    path = os.path.realpath(folder)
    if fs_type(path) != BTRFS_SUPER_MAGIC:
        return None
    dev = os.stat(path).st_dev
    while path != "/":
        parent = os.path.dirname(path)
        if os.stat(parent).st_dev != dev:
            break
        path = parent
    return path if os.stat(path).st_ino == BTRFS_FIRST_FREE_OBJECTID else None


def snapshot_subvolume(source: str, folder: str, name: str) -> None:
    """Make ``folder/name`` a read-only snapshot of the subvolume whose root is ``source``
    (BTRFS_IOC_SNAP_CREATE_V2). Blocks while btrfs writes back the subvolume's dirty data, with the interpreter
    lock released. Raises OSError."""
    args = _VolArgsV2(flags=BTRFS_SUBVOL_RDONLY, name=_vol_args_name(name, 4040))
    src = _open_folder(source)
    try:
        dest = _open_folder(folder)
        try:
            args.fd = src
            _check(_libc().ioctl(dest, BTRFS_IOC_SNAP_CREATE_V2, ctypes.byref(args)), os.path.join(folder, name))
        finally:
            os.close(dest)
    finally:
        os.close(src)


def create_subvolume(folder: str, name: str) -> None:
    """Make ``folder/name`` a new, empty btrfs subvolume (BTRFS_IOC_SUBVOL_CREATE). Raises OSError (EEXIST
    when the name is taken, ENOTTY when ``folder`` is not on btrfs)."""
    args = _VolArgs(name=_vol_args_name(name, 4088))
    dest = _open_folder(folder)
    try:
        _check(_libc().ioctl(dest, BTRFS_IOC_SUBVOL_CREATE, ctypes.byref(args)), os.path.join(folder, name))
    finally:
        os.close(dest)


def delete_subvolume(path: str) -> None:
    """Delete the btrfs subvolume whose root is ``path``, read-only or not, with what it holds
    (BTRFS_IOC_SNAP_DESTROY; needs CAP_SYS_ADMIN, else EPERM). Raises OSError."""
    folder, name = os.path.split(os.path.abspath(path))
    args = _VolArgs(name=_vol_args_name(name, 4088))
    parent = _open_folder(folder)
    try:
        _check(_libc().ioctl(parent, BTRFS_IOC_SNAP_DESTROY, ctypes.byref(args)), path)
    finally:
        os.close(parent)


# --- clones and copies ----------------------------------------------------------------------------------------


def clone_probe(folder: str) -> OSError | None:
    """Why files in ``folder`` cannot be cloned (the OSError of a FICLONE between two unnamed temporary files
    made there), or None when they can. Leaves nothing behind, even if this process dies."""
    flags = os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC
    fds: list[int] = []
    try:
        fds.append(os.open(folder, flags, 0o600))
        os.write(fds[0], bytes(4096))
        fds.append(os.open(folder, flags, 0o600))
        fcntl.ioctl(fds[1], FICLONE, fds[0])
    except OSError as exc:
        return exc
    finally:
        for fd in fds:
            os.close(fd)
    return None


def create_file(path: str) -> None:
    """Create the empty file ``path``, readable by its owner only (it will hold a copy of private data).
    Raises FileExistsError when it exists."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def clone_file(source: str, dest: str) -> None:
    """Make the existing file ``dest`` share all of ``source``'s data (FICLONE; the interpreter lock is
    released). Raises OSError: EOPNOTSUPP or EINVAL where the file system cannot clone, EXDEV across two."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(dest, os.O_WRONLY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(dst, FICLONE, src)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def copy_file(source: str, dest: str) -> int:
    """Copy all of ``source`` into the existing empty file ``dest`` in large reads and writes; returns the
    bytes copied. Raises OSError, with EIO when the source changed size during the copy (its writers were not
    frozen: the copy would not be a snapshot)."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(src).st_size
        dst = os.open(dest, os.O_WRONLY | os.O_CLOEXEC)
        try:
            copied = _copy_fd(src, dst, dest)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    if copied != size:
        raise OSError(errno.EIO, f"the file changed size while it was copied ({size} then {copied} bytes)", source)
    return copied


def _copy_fd(src: int, dst: int, dest: str) -> int:
    buf = bytearray(COPY_CHUNK)
    view = memoryview(buf)
    copied = 0
    while n := os.readv(src, [buf]):
        write_all(lambda rest, _offset: os.write(dst, rest), view[:n], copied, dest)
        copied += n
    return copied


# --- snapshot folders -----------------------------------------------------------------------------------------


def make_folder(path: str, *, parents: bool = False) -> None:
    """Create the folder ``path`` for this user only (``parents``: and missing parents; an existing folder is
    then fine). Raises FileExistsError (without ``parents``) and OSError."""
    if parents:
        os.makedirs(path, mode=0o700, exist_ok=True)
    else:
        os.mkdir(path, 0o700)


def write_new(path: str, data: bytes) -> None:
    """Write ``data`` as the new file ``path`` (not synced). Raises FileExistsError and OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        write_all(lambda rest, _offset: os.write(fd, rest), data, 0, path)
    finally:
        os.close(fd)


def read_small(path: str, limit: int = 1 << 16) -> bytes | None:
    """Up to ``limit`` bytes of ``path``; None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def rename(source: str, dest: str) -> None:
    os.rename(source, dest)


def folders_in(path: str) -> list[str]:
    """The names of the folders directly in ``path`` (not following links); [] when it does not exist."""
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def modified_at(path: str) -> float | None:
    try:
        return os.lstat(path).st_mtime
    except FileNotFoundError:
        return None


def remove_tree(path: str) -> bool:
    """Remove the folder ``path`` and what it holds, deleting the btrfs subvolumes directly in it as
    subvolumes (``shutil.rmtree`` cannot remove a read-only snapshot). Returns False when it did not exist.
    Raises OSError (EPERM from a subvolume deletion without CAP_SYS_ADMIN)."""
    try:
        with os.scandir(path) as scan:
            entries = list(scan)
    except FileNotFoundError:
        return False
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and is_subvolume(entry.path):
            delete_subvolume(entry.path)
        elif entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return False
    return True


def remove_if_empty(path: str) -> None:
    """Remove the folder ``path`` when it is empty; leave it otherwise (another job may be using it)."""
    try:
        os.rmdir(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT, errno.EBUSY):
            raise


def writable(folder: str) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def free_bytes(folder: str) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def regular_size(path: str) -> int | None:
    """The size of the regular file at ``path`` (links followed); None when there is none."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def device(path: str) -> int:
    """The device number of the file system (for btrfs: the subvolume) holding ``path``. Raises OSError."""
    return os.stat(path).st_dev


# --- processes ------------------------------------------------------------------------------------------------


def boot_id() -> str:
    """This boot's random id (a new one after every reboot); "" when the kernel does not say."""
    return (read_small("/proc/sys/kernel/random/boot_id") or b"").decode(errors="replace").strip()


def boot_time() -> float:
    """When this system booted (seconds since the epoch); 0.0 when unknown."""
    for line in (read_small("/proc/stat", 1 << 20) or b"").decode(errors="replace").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def pid_namespace() -> int:
    """The id of this process's pid namespace: processes in another see other process ids."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (tells a process from a later one that reuses
    its id); None when there is no such process."""
    raw = read_small(f"/proc/{pid}/stat", 4096)
    if not raw:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()  # why rfind: the command name in parentheses may hold anything
    return int(fields[19])  # field 22 of proc(5), counting from 1 with pid and comm as fields 1 and 2
