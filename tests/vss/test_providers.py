"""The snapshot providers on real file systems: btrfs, XFS with reflink and ext4 on loop devices (tests/vss/loopfs.py).

Every provider runs on every file system where it applies. Each test works in a folder of its own on the
session's file systems, and the btrfs provider's tests in a subvolume of their own (made with make_subvolume,
which is tested too).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import hashlib
import io
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tokenize
from pathlib import Path

import pytest

from shadowstore.errors import ExitCode, FileNotFoundError_, InvalidParameterError, SnapshotProviderError
from shadowstore.io import clone
from shadowstore.vss import providers, snapshotfolders
from shadowstore.vss.providers import (
    AFTER_COMMIT,
    BEFORE_COMMIT,
    OWNER,
    PROVIDERS,
    SNAPSHOTS,
    Snapshot,
    choose,
    make_subvolume,
    sweep_leftovers,
)
from tests.vss.loopfs import LoopFs, btrfs_fs, ext4_fs, xfs_fs

__all__ = ["btrfs_fs", "ext4_fs", "xfs_fs"]  # session fixtures, found by name

FIFREEZE = 0xC0045877  # _IOWR('X', 119, int)
FITHAW = 0xC0045878  # _IOWR('X', 120, int)
# (provider, file system) for every pair where the provider applies
CASES = [
    ("btrfs", "btrfs"),
    ("reflink", "btrfs"),
    ("reflink", "xfs"),
    ("copy", "btrfs"),
    ("copy", "xfs"),
    ("copy", "ext4"),
]
ONE_PER_PROVIDER = [("btrfs", "btrfs"), ("reflink", "xfs"), ("copy", "ext4")]
# name -> size: a few MiB in two folders, sizes that are not multiples of a page
FILES = {"db/Mailbox.edb": 3 << 20, "db/Mailbox.stm": (1 << 20) + 123, "logs/E00.log": 1 << 20, "logs/E0000A.log": 4097}
SYSCALLS = {"x86_64": {"ioctl": 16, "write": 1}, "aarch64": {"ioctl": 29, "write": 64}}


# --- helpers --------------------------------------------------------------------------------------------------


def workspace(fs: LoopFs, request: pytest.FixtureRequest, *, subvolume: bool = False) -> str:
    """A new folder for this test on ``fs`` (a new btrfs subvolume with ``subvolume``)."""
    path = os.path.join(fs.mountpoint, re.sub(r"[^A-Za-z0-9]+", "-", request.node.name))
    if subvolume:
        assert make_subvolume(path)
    else:
        os.mkdir(path)
    return path


def write_files(folder: str, seed: int) -> list[str]:
    """FILES under ``folder``, filled from random seed ``seed``; their paths."""
    rng = random.Random(seed)
    paths = []
    for name, size in FILES.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_bytes(rng.randbytes(size))
        paths.append(path)
    return paths


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digests(paths: list[str]) -> dict[str, str]:
    return {path: digest(path) for path in paths}


def fs_of(request: pytest.FixtureRequest, kind: str) -> LoopFs:
    fs: LoopFs = request.getfixturevalue(f"{kind}_fs")
    return fs


def setup_case(request: pytest.FixtureRequest, provider: str, kind: str, seed: int = 1) -> list[str]:
    fs = fs_of(request, kind)
    return write_files(workspace(fs, request, subvolume=provider == "btrfs"), seed)


def folder_of(paths: list[str]) -> Path:
    """The test's workspace holding ``paths`` (written by write_files)."""
    return Path(paths[0]).parent.parent


def leftovers(paths: list[str]) -> list[Path]:
    return list(folder_of(paths).rglob(SNAPSHOTS))


def roots_of(snap: Snapshot) -> list[str]:
    return [snap.root, *snap.other_roots]


def btrfs_subvolumes(fs: LoopFs) -> str:
    return subprocess.run(["btrfs", "subvolume", "list", fs.mountpoint], capture_output=True, text=True).stdout


def change_originals(paths: list[str]) -> None:
    """Overwrite the middle of one file, append to another, truncate a third and delete the last."""
    with open(paths[0], "r+b") as f:
        f.seek(1 << 20)
        f.write(b"\xff" * 65536)
    with open(paths[1], "ab") as f:
        f.write(b"appended")
    os.truncate(paths[2], 10)
    os.unlink(paths[3])


# --- a snapshot is the files as they were ---------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "kind"), CASES)
def test_snapshot_holds_the_bytes_of_snapshot_time(request: pytest.FixtureRequest, provider: str, kind: str) -> None:
    paths = setup_case(request, provider, kind)
    before = digests(paths)
    started = time.perf_counter()
    snap = PROVIDERS[provider]().snapshot(paths, "s1")
    wall = time.perf_counter() - started
    try:
        assert snap.provider == provider
        assert sorted(snap.files) == sorted(paths)
        assert {p: digest(snap.files[p]) for p in paths} == before
        for frozen in snap.files.values():
            assert any(frozen.startswith(root + "/") for root in roots_of(snap))
        # one snapshot folder per subvolume (btrfs) or per folder of files (reflink, copy)
        assert len(roots_of(snap)) == (1 if provider == "btrfs" else 2)
        assert 0 < snap.commit_seconds <= wall
    finally:
        snap.remove()


@pytest.mark.parametrize(("provider", "kind"), CASES)
def test_later_writes_do_not_reach_the_snapshot(request: pytest.FixtureRequest, provider: str, kind: str) -> None:
    paths = setup_case(request, provider, kind)
    before = digests(paths)
    snap = PROVIDERS[provider]().snapshot(paths, "s1")
    try:
        change_originals(paths)
        assert digests(paths[:3]) != {p: before[p] for p in paths[:3]}
        assert {p: digest(snap.files[p]) for p in paths} == before
    finally:
        snap.remove()


def test_a_btrfs_snapshot_is_read_only(request: pytest.FixtureRequest) -> None:
    paths = setup_case(request, "btrfs", "btrfs")
    snap = PROVIDERS["btrfs"]().snapshot(paths, "s1")
    try:
        with pytest.raises(OSError, match="Read-only") as raised:
            Path(snap.files[paths[0]]).write_bytes(b"x")
        assert raised.value.errno == errno.EROFS
    finally:
        snap.remove()


@pytest.mark.parametrize("kind", ["btrfs", "xfs"])
def test_reflink_shares_the_data_instead_of_copying_it(request: pytest.FixtureRequest, kind: str) -> None:
    paths = setup_case(request, "reflink", kind)
    snap = PROVIDERS["reflink"]().snapshot(paths, "s1")
    try:
        shown = subprocess.run(["filefrag", "-v", snap.files[paths[0]]], capture_output=True, text=True, check=True)
        assert "shared" in shown.stdout, shown.stdout
    finally:
        snap.remove()


@pytest.mark.parametrize(("provider", "kind"), CASES)
def test_remove_removes_everything_and_can_be_repeated(
    request: pytest.FixtureRequest, provider: str, kind: str
) -> None:
    paths = setup_case(request, provider, kind)
    snap = PROVIDERS[provider]().snapshot(paths, "s1")
    roots = roots_of(snap)
    snap.remove()
    for root in roots:
        assert not os.path.lexists(root)
        assert not os.path.lexists(os.path.dirname(root)), "the empty .shadowstore-snapshots folder stays"
    if kind == "btrfs":
        assert SNAPSHOTS not in btrfs_subvolumes(fs_of(request, kind))
    snap.remove()  # already removed: nothing to do, no error
    assert all(os.path.exists(p) for p in paths)


@pytest.mark.parametrize(("provider", "kind"), [("reflink", "ext4"), ("btrfs", "xfs")])
def test_a_failed_snapshot_leaves_nothing_behind(request: pytest.FixtureRequest, provider: str, kind: str) -> None:
    """Called directly (choose would refuse), the provider fails in the kernel and removes what it made."""
    paths = setup_case(request, "copy", kind)
    with pytest.raises(SnapshotProviderError) as raised:
        PROVIDERS[provider]().snapshot(paths, "s1")
    assert raised.value.exit_code == ExitCode.BACKUP_FAILED
    assert leftovers(paths) == []


def test_a_snapshot_id_in_use_is_refused_and_the_first_snapshot_kept(request: pytest.FixtureRequest) -> None:
    paths = setup_case(request, "copy", "ext4")
    first = PROVIDERS["copy"]().snapshot(paths, "s1")
    try:
        with pytest.raises(SnapshotProviderError, match="exists"):
            PROVIDERS["copy"]().snapshot(paths, "s1")
        assert all(os.path.exists(f) for f in first.files.values())
        with pytest.raises(InvalidParameterError):
            PROVIDERS["copy"]().snapshot(paths, "../s2")
    finally:
        first.remove()


# --- choosing a provider --------------------------------------------------------------------------------------


def test_auto_picks_btrfs_in_a_subvolume_and_says_which(request: pytest.FixtureRequest) -> None:
    paths = setup_case(request, "btrfs", "btrfs")
    subvolume = os.path.dirname(os.path.dirname(paths[0]))
    provider, why = choose(paths)
    assert provider.name == "btrfs"
    assert why == f"btrfs: every file is in subvolume {subvolume}"


def test_auto_picks_reflink_on_xfs(request: pytest.FixtureRequest) -> None:
    provider, why = choose(setup_case(request, "reflink", "xfs"))
    assert (provider.name, why) == ("reflink", "reflink: XFS with reflink")


def test_auto_picks_copy_on_ext4_and_says_why(request: pytest.FixtureRequest) -> None:
    paths = setup_case(request, "copy", "ext4")
    provider, why = choose(paths)
    assert (provider.name, why) == ("copy", f"copy: {os.path.dirname(paths[0])} is ext4, which cannot clone")


def test_files_on_two_file_systems_get_what_handles_both(request: pytest.FixtureRequest) -> None:
    on_btrfs = setup_case(request, "reflink", "btrfs")
    on_xfs = write_files(workspace(fs_of(request, "xfs"), request), seed=2)
    on_ext4 = write_files(workspace(fs_of(request, "ext4"), request), seed=3)
    provider, why = choose(on_btrfs + on_ext4)
    assert provider.name == "copy"
    assert "is ext4, which cannot clone" in why
    provider, why = choose(on_btrfs + on_xfs)
    assert (provider.name, why) == ("reflink", "reflink: XFS and btrfs with reflink")
    before = digests(on_btrfs + on_xfs)
    snap = provider.snapshot(on_btrfs + on_xfs, "s1")
    assert len(roots_of(snap)) == 4  # two folders on each file system
    assert {p: digest(f) for p, f in snap.files.items()} == before
    snap.remove()
    assert not any(os.path.lexists(root) for root in roots_of(snap))


@pytest.mark.parametrize(
    ("kind", "wanted", "says", "would_work"),
    [
        ("ext4", "btrfs", "is ext4, not btrfs", "copy"),
        ("ext4", "reflink", "is ext4, which cannot clone", "copy"),
        ("xfs", "btrfs", "is XFS, not btrfs", "reflink"),
    ],
)
def test_a_named_provider_that_cannot_is_refused_saying_why_and_what_would(
    request: pytest.FixtureRequest, kind: str, wanted: str, says: str, would_work: str
) -> None:
    paths = setup_case(request, "copy", kind)
    with pytest.raises(InvalidParameterError) as raised:
        choose(paths, wanted)
    assert f"the {wanted} provider cannot snapshot these files: {os.path.dirname(paths[0])} {says}" in str(raised.value)
    assert raised.value.hint == f"use the '{would_work}' provider (or 'auto')"
    assert raised.value.exit_code == ExitCode.USAGE


def test_a_named_provider_that_can_is_used(request: pytest.FixtureRequest) -> None:
    paths = setup_case(request, "btrfs", "btrfs")
    provider, why = choose(paths, "copy")
    assert provider.name == "copy"
    assert why == "copy: a full copy of every file (6 MiB)"
    provider, why = choose(paths, "reflink")
    assert (provider.name, why) == ("reflink", "reflink: btrfs with reflink")


def test_unknown_provider_and_missing_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(InvalidParameterError, match="unknown snapshot provider 'zfs'"):
        choose([str(tmp_path / "f")], "zfs")
    with pytest.raises(FileNotFoundError_, match="not a file"):
        choose([str(tmp_path / "f"), str(tmp_path / "gone")])
    assert (
        PROVIDERS["copy"]().unsuitable([str(tmp_path / "gone")]) == f"cannot snapshot {tmp_path}/gone: it is not a file"
    )


def test_without_cap_sys_admin_btrfs_is_unsuitable_and_its_removal_fails_saying_so(
    request: pytest.FixtureRequest,
) -> None:
    """Root without CAP_SYS_ADMIN (setpriv drops it from the bounding set) can snapshot a subvolume but not
    delete one: auto falls back to reflink, and removing a btrfs snapshot fails naming the command to run."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed (util-linux)")
    paths = setup_case(request, "btrfs", "btrfs")
    snap = PROVIDERS["btrfs"]().snapshot(paths, "s1")
    code = (
        "import sys; from shadowstore.vss.providers import Snapshot, choose; "
        "print(choose(sys.argv[2:])[1]); print(choose(sys.argv[2:], 'reflink')[1])\n"
        "try: choose(sys.argv[2:], 'btrfs')\n"
        "except Exception as exc: print(exc.message)\n"
        "try: Snapshot('btrfs', sys.argv[1], {}, 0.0).remove()\n"
        "except Exception as exc: print(type(exc).__name__, exc.message, exc.hint, sep='\\n')"
    )
    try:
        done = subprocess.run(
            ["setpriv", "--bounding-set=-sys_admin", sys.executable, "-c", code, snap.root, *paths],
            capture_output=True,
            text=True,
        )
        data = os.path.join(snap.root, "data")
        assert done.stdout.splitlines() == [
            "reflink: btrfs with reflink",
            "reflink: btrfs with reflink",
            "the btrfs provider cannot snapshot these files: removing a btrfs snapshot needs root (CAP_SYS_ADMIN), "
            "which this process lacks",
            "SnapshotProviderError",
            f"could not remove snapshot {snap.root}: Operation not permitted ({data})",
            f"deleting a btrfs snapshot needs root: run 'btrfs subvolume delete {data}' as root",
        ], done.stderr
        assert os.path.isdir(os.path.join(snap.root, "data"))
    finally:
        snap.remove()
    assert not os.path.lexists(snap.root)


# --- make_subvolume -------------------------------------------------------------------------------------------


def test_make_subvolume_on_btrfs_and_not_elsewhere(btrfs_fs: LoopFs, ext4_fs: LoopFs) -> None:
    path = os.path.join(btrfs_fs.mountpoint, "home-subvolume")
    assert make_subvolume(path)
    assert os.stat(path).st_ino == 256
    assert subprocess.run(["btrfs", "subvolume", "show", path], capture_output=True).returncode == 0
    assert make_subvolume(path)  # already one
    plain = os.path.join(btrfs_fs.mountpoint, "plain-folder")
    os.mkdir(plain)
    assert not make_subvolume(plain)
    assert not make_subvolume(os.path.join(ext4_fs.mountpoint, "home"))
    assert not os.path.exists(os.path.join(ext4_fs.mountpoint, "home"))


# --- leftovers of crashed jobs --------------------------------------------------------------------------------


def paused_snapshot(paths: list[str], provider: str, snapshot_id: str) -> subprocess.Popen[str]:
    """Another process that took a snapshot of ``paths`` and stopped at AFTER_COMMIT, before returning it."""
    code = (
        "import sys; from shadowstore.vss.providers import PROVIDERS; "
        "PROVIDERS[sys.argv[1]]().snapshot(sys.argv[3:], sys.argv[2])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, provider, snapshot_id, *paths],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SHADOWSTORE_PAUSE_AT": AFTER_COMMIT},
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.strip() == f"paused at {AFTER_COMMIT}", line + proc.stderr.read()
    return proc


@pytest.mark.parametrize(("provider", "kind"), ONE_PER_PROVIDER)
def test_sweep_removes_a_killed_jobs_snapshot_and_keeps_live_ones(
    request: pytest.FixtureRequest, provider: str, kind: str
) -> None:
    paths = setup_case(request, provider, kind)
    ours = PROVIDERS[provider]().snapshot(paths, "ours")
    other = paused_snapshot(paths, provider, "killed")
    try:
        theirs = sorted(os.path.join(os.path.dirname(root), "killed") for root in roots_of(ours))
        assert all(os.path.isdir(root) for root in theirs)
        assert sweep_leftovers(paths) == []  # its job still runs, and so does ours
        other.kill()
        other.wait()
        assert sorted(sweep_leftovers(paths)) == theirs
        assert not any(os.path.lexists(root) for root in theirs)
        assert {p: digest(f) for p, f in ours.files.items()} == digests(paths)
        if kind == "btrfs":
            assert f"{SNAPSHOTS}/killed/" not in btrfs_subvolumes(fs_of(request, kind))
        assert sweep_leftovers(paths) == []
    finally:
        other.kill()
        other.wait()
        ours.remove()


def dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def rewrite_owner(root: str, **changes: object) -> None:
    owner = snapshotfolders.parse_owner(Path(root, OWNER).read_bytes())
    assert owner is not None
    Path(root, OWNER).write_bytes(dataclasses.replace(owner, **changes).to_json())


@pytest.mark.parametrize(
    ("change", "removed"),
    [
        ({}, True),  # this process made it and holds no Snapshot for it any more
        ({"pid": "dead"}, True),
        ({"boot_id": "another-boot"}, True),
        ({"start": 1}, True),  # the pid now names another process
        ({"pid": "parent", "start": "parent start"}, False),  # a live job in another process
        ({"host": "elsewhere", "pid": "dead"}, False),  # cannot look at another host's processes
        ({"pid_ns": 1, "pid": "dead"}, False),  # nor into another pid namespace
    ],
)
def test_sweep_judges_a_dropped_snapshot_by_its_owner_file(
    tmp_path: Path, change: dict[str, object], removed: bool
) -> None:
    paths = write_files(str(tmp_path), seed=4)
    roots = roots_of(PROVIDERS["copy"]().snapshot(paths, "s1"))  # the Snapshot itself is dropped at once
    values = {"dead": dead_pid(), "parent": os.getppid(), "parent start": clone.process_start(os.getppid())}
    change = {k: values.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    for root in roots:
        rewrite_owner(root, **change)
    assert sorted(sweep_leftovers(paths)) == (sorted(roots) if removed else [])
    assert all(os.path.isdir(root) != removed for root in roots)
    Snapshot("copy", roots[0], {}, 0.0, roots[1:]).remove()


def test_sweep_keeps_what_this_process_uses_and_removes_what_it_dropped(tmp_path: Path) -> None:
    """The service runs job after job in one process: a commit the requestor gave up waiting for finishes
    later, and the next job's sweep must remove it once its Snapshot is dropped, but never one in use."""
    paths = write_files(str(tmp_path), seed=7)
    held = PROVIDERS["copy"]().snapshot(paths, "held")
    dropped = roots_of(PROVIDERS["copy"]().snapshot(paths, "dropped"))
    swept_mid_commit: list[list[str]] = []

    def sweep_now(point: str) -> None:
        if point == BEFORE_COMMIT:
            swept_mid_commit.append(sweep_leftovers(paths))

    running = PROVIDERS["copy"](crash_point=sweep_now).snapshot(paths, "running")
    assert [sorted(swept) for swept in swept_mid_commit] == [sorted(dropped)]  # the running call's folders stay
    assert all(os.path.isdir(root) for root in roots_of(held) + roots_of(running))
    assert sweep_leftovers(paths) == []
    held.remove()
    running.remove()


def test_sweep_judges_folders_without_an_owner_file(tmp_path: Path) -> None:
    paths = write_files(str(tmp_path), seed=5)
    snapshots = tmp_path / "db" / SNAPSHOTS
    begun_by_dead = snapshots / f".s1.{dead_pid()}.new"  # a job died while it built the folder
    begun_by_us = snapshots / f".s2.{os.getpid()}.new"
    no_owner = snapshots / "s3"
    older_than_boot = snapshots / "s4"
    for folder in (begun_by_dead, begun_by_us, no_owner, older_than_boot):
        (folder / "data").mkdir(parents=True)
    os.utime(older_than_boot, (clone.boot_time() - 60, clone.boot_time() - 60))
    assert sorted(sweep_leftovers(paths)) == sorted([str(begun_by_dead), str(older_than_boot)])
    assert begun_by_us.is_dir()
    assert no_owner.is_dir()


def test_the_owner_file_names_this_process(tmp_path: Path) -> None:
    paths = write_files(str(tmp_path), seed=6)
    snap = PROVIDERS["copy"]().snapshot(paths, "s1")
    owner = snapshotfolders.parse_owner(Path(snap.root, OWNER).read_bytes())
    assert owner is not None
    assert (owner.pid, owner.host, owner.provider) == (os.getpid(), socket.gethostname(), "copy")
    assert owner.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert owner.judge() == (True, f"its job (pid {os.getpid()}, copy) is running")
    snap.remove()


# --- the interpreter lock and freezing ------------------------------------------------------------------------


def task_syscall(tid: int) -> int | None:
    """The system call thread ``tid`` of this process is blocked in, or None when it is not in one (or ended)."""
    try:
        first = Path(f"/proc/self/task/{tid}/syscall").read_text().split()[0]
    except FileNotFoundError:
        return None
    return int(first) if first.lstrip("-").isdigit() and int(first) >= 0 else None


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("provider", "kind"), ONE_PER_PROVIDER)
def test_the_commit_releases_the_interpreter_lock_while_the_kernel_blocks_it(
    request: pytest.FixtureRequest, provider: str, kind: str
) -> None:
    """The test freezes the file system (the provider never does) at BEFORE_COMMIT, so the commit's kernel
    call blocks until a thaw: btrfs and FICLONE ioctls in mnt_want_write_file, a copy's write in
    sb_start_write. With the interpreter lock held across that call this thread could not run, and only the
    external watchdog would thaw it (research/vss.md 4f.1: the fcntl.ioctl self-deadlock)."""
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        pytest.skip(f"no system call numbers for {platform.machine()} here")
    expected = numbers["write" if provider == "copy" else "ioctl"]
    fs = fs_of(request, kind)
    paths = setup_case(request, provider, kind)
    before = digests(paths)
    frozen = threading.Event()
    tid: list[int] = []
    result: list[Snapshot | BaseException] = []

    def freeze_at_commit(point: str) -> None:
        if point == BEFORE_COMMIT:
            fd = os.open(fs.mountpoint, os.O_RDONLY)
            try:
                fcntl.ioctl(fd, FIFREEZE, 0)
            finally:
                os.close(fd)
            frozen.set()

    def take() -> None:
        tid.append(threading.get_native_id())
        try:
            result.append(PROVIDERS[provider](crash_point=freeze_at_commit).snapshot(paths, "s1"))
        except BaseException as exc:
            result.append(exc)

    watchdog = subprocess.Popen(["sh", "-c", f"sleep 8; exec fsfreeze -u {fs.mountpoint}"])
    worker = threading.Thread(target=take)
    root = os.open(fs.mountpoint, os.O_RDONLY)
    try:
        worker.start()
        assert frozen.wait(10)
        deadline = time.monotonic() + 5
        while task_syscall(tid[0]) != expected:
            assert time.monotonic() < deadline, (
                f"this thread never saw the commit blocked in system call {expected}: if the commit held the "
                "interpreter lock, this thread could not run until the watchdog thawed the file system"
            )
            time.sleep(0.001)
        work = sum(i * i for i in range(200_000))  # Python runs here while the commit is in the kernel
        assert task_syscall(tid[0]) == expected, "the commit left its system call while this thread ran"
        fcntl.ioctl(root, FITHAW, 0)  # EINVAL here would mean the watchdog had to thaw it
        worker.join(10)
        assert not worker.is_alive()
        assert work > 0
    finally:
        with contextlib.suppress(OSError):
            fcntl.ioctl(root, FITHAW, 0)
        os.close(root)
        worker.join(10)
        watchdog.kill()
        watchdog.wait()
    snap = result[0]
    assert isinstance(snap, Snapshot), snap
    assert {p: digest(f) for p, f in snap.files.items()} == before
    snap.remove()


NO_FREEZE_SCRIPT = r"""
import ctypes, fcntl, os, struct, sys
AUDIT_ARCH, IOCTL = {"x86_64": (0xC000003E, 16), "aarch64": (0xC00000B7, 29)}[os.uname().machine]
FIFREEZE, FITHAW = 0xC0045877, 0xC0045878
LD, JEQ, RET = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
ALLOW, KILL_PROCESS = 0x7FFF0000, 0x80000000
program = [  # seccomp_data: nr at 0, arch at 4, args[1] (the request; its low word) at 24
    (LD, 0, 0, 4), (JEQ, 0, 5, AUDIT_ARCH), (LD, 0, 0, 0), (JEQ, 0, 3, IOCTL), (LD, 0, 0, 24),
    (JEQ, 2, 0, FIFREEZE), (JEQ, 1, 0, FITHAW), (RET, 0, 0, ALLOW), (RET, 0, 0, KILL_PROCESS),
]
raw = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))
fprog = struct.pack("HxxxxxxP", len(program), ctypes.addressof(raw))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0, ctypes.get_errno()  # PR_SET_SECCOMP, FILTER

from shadowstore.vss.providers import PROVIDERS, choose, sweep_leftovers
for name, paths in zip(sys.argv[1::2], sys.argv[2::2]):
    paths = paths.split(",")
    provider, why = choose(paths)
    assert provider.name == name, why
    sweep_leftovers(paths)
    PROVIDERS[name]().snapshot(paths, "s1").remove()
print("providers done", flush=True)
read, write = os.pipe()
fcntl.ioctl(read, FIFREEZE, 0)  # the filter's proof: killed here (on a pipe it would only fail with ENOTTY)
print("the filter let FIFREEZE through", flush=True)
"""


def test_no_provider_ever_freezes_a_file_system(request: pytest.FixtureRequest) -> None:
    """Each provider takes and removes a snapshot in a process where a FIFREEZE or FITHAW ioctl, from any code
    at all, kills the process (a seccomp filter); the last line shows the filter works."""
    if platform.machine() not in SYSCALLS:
        pytest.skip(f"no seccomp filter for {platform.machine()} here")
    args = []
    cases = [setup_case(request, provider, kind) for provider, kind in ONE_PER_PROVIDER]
    for (provider, _kind), paths in zip(ONE_PER_PROVIDER, cases, strict=True):
        args += [provider, ",".join(paths)]
    done = subprocess.run([sys.executable, "-c", NO_FREEZE_SCRIPT, *args], capture_output=True, text=True)
    assert done.stdout == "providers done\n", f"exit {done.returncode}: {done.stdout}{done.stderr}"
    assert done.returncode == -signal.SIGSYS, done.stderr
    assert [leftovers(paths) for paths in cases] == [[], [], []]


def test_the_provider_modules_name_no_freeze_call() -> None:
    """A supplement to the test above: no code token (comments and docstrings aside) names FIFREEZE, FITHAW,
    their request numbers or the fsfreeze command."""
    for module in (providers, clone):
        assert module.__file__ is not None
        source = Path(module.__file__).read_text()
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.NAME:
                assert token.string.upper() not in ("FIFREEZE", "FITHAW"), (module.__name__, token)
            elif token.type == tokenize.NUMBER and not re.search(r"[.jJ]|^[1-9][0-9_]*[eE]", token.string):
                assert int(token.string, 0) not in (FIFREEZE, FITHAW), (module.__name__, token)
            elif token.type == tokenize.STRING and not token.string.startswith('"""'):
                assert "fsfreeze" not in token.string, (module.__name__, token)


def test_the_btrfs_ioctls_go_through_ctypes() -> None:
    """fcntl.ioctl with a buffer over 1024 bytes holds the interpreter lock; the btrfs calls' arguments are
    4096 bytes, so they must be ctypes calls (a supplement to the blocking test above)."""
    assert isinstance(clone._libc(), ctypes.CDLL)
    assert not isinstance(clone._libc(), ctypes.PyDLL)
    source = Path(clone.__file__ or "").read_text()
    assert source.count("fcntl.ioctl(") == 2  # FICLONE and its probe: int arguments, which release the lock
