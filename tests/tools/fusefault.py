"""A FUSE file system that passes everything through to a folder and fails the fsyncs a test asks it to.

    python -m tests.tools.fusefault SOURCE MOUNTPOINT

mounts SOURCE on MOUNTPOINT (in the foreground, as root) through the kernel's FUSE driver, so a program under
test makes real system calls and the kernel, not a Python stand-in, carries them here. Every operation is done
on SOURCE, except that an fsync or fdatasync (FUSE's ``fsync`` request; a folder's fsync is ``fsyncdir`` and
is never failed) can be made to fail with EIO. Like Linux after a failed writeback, it fails once: the next
fsync of the same file succeeds and the data still read back, which is exactly what a program must not trust.

It is driven through its standard input and standard output, one line each, so that the test that started it
needs no files, signals or sockets and no two commands can race:

    in:  ``fail-fsync TEXT``          fail the next fsync of a file whose path (under MOUNTPOINT) contains TEXT
    out: ``ready``                    the kernel finished mounting it; requests are served from now on
    out: ``armed TIME TEXT``          the failure is armed (said before any fsync can meet it)
    out: ``failed-fsync TIME PATH``   that fsync is being answered with EIO; the failure is spent

TIME is the moment, in µs since 1970 (the clock the engine stamps commits with), so that a test can tell
the commits made after it from those made before without trusting the order in which two pipes are read.

When its standard input ends (the test finished, failed or died) it unmounts MOUNTPOINT and exits, so a
mount never outlives the test that made it. Needs the ``mfusepy`` binding and libfuse (Debian: ``fuse3``).
"""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
import threading
import time
from typing import Any

import mfusepy as fuse

_STAT_FIELDS = (
    "st_mode",
    "st_nlink",
    "st_uid",
    "st_gid",
    "st_rdev",
    "st_size",
    "st_blocks",
    "st_atime_ns",
    "st_mtime_ns",
    "st_ctime_ns",
)
_STATVFS_FIELDS = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail")


def now_us() -> int:
    return time.time_ns() // 1000


class FsyncFaults:
    """Which fsync fails next (one at a time), and the report of each event on standard output."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: str | None = None

    def say(self, line: str) -> None:
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def arm(self, text: str) -> None:
        with self._lock:
            self._armed = text
            # why inside the lock: "armed" is on the stream before any fsync can report the failure it causes
            sys.stdout.write(f"armed {now_us()} {text}\n")
            sys.stdout.flush()

    def take(self, path: str) -> bool:
        """True (once) when the fsync of ``path`` is to fail; the failure is spent by taking it."""
        with self._lock:
            if self._armed is None or self._armed not in path:
                return False
            self._armed = None
            return True


class Passthrough(fuse.Operations):
    """Each request done on the folder ``source``; ``path`` is relative to the mount point, with a leading "/".
    Requests on an open file use its descriptor (``fh``) and ignore the path, which is None for a file
    deleted while open (``hard_remove``). Locks are left to the kernel: it keeps flock, POSIX and OFD locks
    itself when the file system offers no lock operations."""

    use_ns = True

    def __init__(self, source: str, faults: FsyncFaults) -> None:
        self.source = os.path.realpath(source)
        self.faults = faults

    def _real(self, path: str) -> str:
        return self.source + path

    # --- names ---------------------------------------------------------------------------------------------

    def init(self, path: str) -> None:
        self.faults.say("ready")

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._real(path or "/"))
        return {name.removesuffix("_ns"): getattr(st, name) for name in _STAT_FIELDS}

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._real(path), mode)

    def rmdir(self, path: str) -> None:
        os.rmdir(self._real(path))

    def unlink(self, path: str) -> None:
        os.unlink(self._real(path))

    def rename(self, old: str, new: str) -> None:
        os.rename(self._real(old), self._real(new))

    def link(self, target: str, source: str) -> None:
        os.link(self._real(source), self._real(target))

    def symlink(self, target: str, source: str) -> None:
        os.symlink(source, self._real(target))

    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    def chmod(self, path: str | None, mode: int) -> None:
        os.chmod(self._real(path or "/"), mode)

    def chown(self, path: str | None, uid: int, gid: int) -> None:
        os.chown(self._real(path or "/"), uid, gid)

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> None:
        if times is None:
            os.utime(self._real(path or "/"))  # now
        else:
            os.utime(self._real(path or "/"), ns=times)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._real(path or "/"), length)

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        return {name: getattr(st, name) for name in _STATVFS_FIELDS}

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> None:
        fd = os.open(self._real(path or "/"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- open files ----------------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        # why without O_DIRECT: the kernel already bypasses this mount's page cache for such a file, and the
        # source would demand aligned buffers, which the ones handed on from here are not
        return os.open(self._real(path), flags & ~os.O_DIRECT)

    def create(self, path: str, mode: int, flags: int) -> int:
        return os.open(self._real(path), (flags & ~os.O_DIRECT) | os.O_CREAT, mode)

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def fallocate(self, path: str | None, mode: int, offset: int, size: int, fh: int) -> None:
        if mode:  # punching holes, keeping the size: nothing the engine asks for
            raise fuse.FuseOSError(errno.EOPNOTSUPP)
        os.posix_fallocate(fh, offset, size)

    def flush(self, path: str | None, fh: int) -> None:
        os.close(os.dup(fh))  # a close() of the caller's descriptor, as the source would see it; no sync

    def release(self, path: str | None, fh: int) -> None:
        os.close(fh)

    def fsync(self, path: str | None, datasync: int, fh: int) -> None:
        if path is not None and self.faults.take(path):
            self.faults.say(f"failed-fsync {now_us()} {path}")
            raise fuse.FuseOSError(errno.EIO)
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)


def unmount(mountpoint: str) -> None:
    """Detach the mount at ``mountpoint`` now (lazily: open files keep it until they close), if it is there."""
    subprocess.run(["umount", "--lazy", mountpoint], check=False, capture_output=True, timeout=30)


def follow_commands(faults: FsyncFaults, mountpoint: str) -> None:
    """Carry out the commands on standard input; unmount when it ends, which ends the file system too."""
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "fail-fsync" and argument:
            faults.arm(argument)
        elif command:
            faults.say(f"unknown command {line.strip()!r}")
    unmount(mountpoint)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tools.fusefault", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="the folder whose files the mount shows")
    parser.add_argument("mountpoint", help="an empty folder to mount on")
    args = parser.parse_args(argv)
    faults = FsyncFaults()
    threading.Thread(target=follow_commands, args=(faults, args.mountpoint), name="commands", daemon=True).start()
    fuse.FUSE(
        Passthrough(args.source, faults),
        args.mountpoint,
        foreground=True,
        fsname="fusefault",
        hard_remove=True,  # why: a file deleted while open is gone from its folder, as on the source
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
