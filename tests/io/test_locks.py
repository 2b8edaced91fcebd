"""Storage-group locks (FileSystem.lock, lock_holder, Lock.path_intact): the same rules on both file systems in one
process, then, on the real one, with real processes: a probe never takes the lock, the lock dies with its holder,
and deleting and recreating the lock file while it is held does not let a second process in."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator

import pytest

from shadowstore.errors import StorageGroupBusyError
from shadowstore.home import is_locked
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.io.fs import FileSystem, OsFileSystem, read_file


@pytest.fixture(params=["os", "fault"])
def world(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> tuple[FileSystem, str]:
    """A file system and the path of a lock file in an existing folder on it."""
    if request.param == "os":
        return OsFileSystem(), os.path.join(tmp_path, "E00.lock")
    fs = FaultFileSystem(seed=6)
    fs.makedirs("/sg")
    return fs, "/sg/E00.lock"


def recreate(fs: FileSystem, path: str) -> None:
    """What a person or a cleanup script might do to a lock file: delete it and make a new one."""
    fs.unlink(path)
    handle = fs.open(path, create=True)
    handle.pwrite(b"nobody\n", 0)
    handle.close()


# --- one process, both file systems -------------------------------------------------------------------------------


def test_a_lock_is_exclusive_names_its_owner_and_is_free_again_once_released(world: tuple[FileSystem, str]) -> None:
    fs, path = world
    assert fs.lock_holder(path) is None
    lock = fs.lock(path, "pid 1 (mount)")
    assert fs.lock_holder(path) == "pid 1 (mount)"
    assert read_file(fs, path) == b"pid 1 (mount)\n"
    with pytest.raises(StorageGroupBusyError, match=r"is locked by pid 1 \(mount\)"):
        fs.lock(path, "pid 2 (mount)")
    lock.release()
    assert fs.lock_holder(path) is None
    fs.lock(path, "pid 2 (mount)").release()


def test_probing_a_held_lock_leaves_it_held(world: tuple[FileSystem, str]) -> None:
    fs, path = world
    lock = fs.lock(path, "holder")
    for _ in range(3):
        assert fs.lock_holder(path) == "holder"
        assert is_locked(fs, path)
    with pytest.raises(StorageGroupBusyError):
        fs.lock(path, "second")
    assert read_file(fs, path) == b"holder\n", "a probe writes nothing"
    lock.release()


def test_probing_a_free_lock_takes_nothing_and_writes_nothing(world: tuple[FileSystem, str]) -> None:
    fs, path = world
    fs.lock(path, "earlier holder").release()
    assert not is_locked(fs, path)
    assert read_file(fs, path) == b"earlier holder\n"
    assert not is_locked(fs, path + ".missing")
    assert not fs.exists(path + ".missing"), "a probe creates nothing"


def test_a_lock_file_deleted_and_recreated_while_held_keeps_the_lock_exclusive(
    world: tuple[FileSystem, str],
) -> None:
    fs, path = world
    lock = fs.lock(path, "holder")
    assert lock.path_intact()
    recreate(fs, path)
    assert not lock.path_intact()
    assert fs.lock_holder(path) is not None
    with pytest.raises(StorageGroupBusyError, match="is locked by"):
        fs.lock(path, "second")
    lock.release()
    assert fs.lock_holder(path) is None
    fs.lock(path, "second").release()


def test_path_intact_notices_a_deleted_lock_file(world: tuple[FileSystem, str]) -> None:
    fs, path = world
    lock = fs.lock(path, "holder")
    fs.unlink(path)
    assert not lock.path_intact()
    assert fs.lock_holder(path) is not None, "still held, though its file is gone"
    lock.release()


# --- real processes -----------------------------------------------------------------------------------------------

HOLDER = """
import sys
from shadowstore.errors import StorageGroupBusyError
from shadowstore.io.fs import OsFileSystem
fs, path, lock = OsFileSystem(), sys.argv[1], None
for command in sys.stdin:
    word, *rest = command.split()
    try:
        if word == "lock":
            lock = fs.lock(path, rest[0])
            print("locked")
        elif word == "intact":
            print("intact" if lock.path_intact() else "not intact")
        elif word == "release":
            lock.release()
            print("released")
        elif word == "cycle":  # take and release the lock n times; report how many takes found it busy
            busy = 0
            for _ in range(int(rest[0])):
                try:
                    fs.lock(path, "cycler").release()
                except StorageGroupBusyError:
                    busy += 1
            print(f"busy {busy}")
    except StorageGroupBusyError as exc:
        print(f"busy: {exc}")
    sys.stdout.flush()
"""


class Process:
    """Another process that takes, tests and releases the lock on ``path`` when told, one line at a time."""

    def __init__(self, path: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, command: str) -> str:
        """Send ``command`` and wait for its answer (the pytest timeout bounds the wait)."""
        self.start(command)
        return self.answer()

    def start(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def answer(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def has_answered(self) -> bool:
        assert self.proc.stdout is not None
        return bool(select.select([self.proc.stdout], [], [], 0)[0])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def lock_path(tmp_path: os.PathLike[str]) -> str:
    return os.path.join(tmp_path, "E00.lock")


@pytest.fixture
def processes(lock_path: str) -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def spawn(processes: list[Process], path: str) -> Process:
    process = Process(path)
    processes.append(process)
    return process


def test_a_lock_held_by_another_process_is_seen_and_refused(lock_path: str, processes: list[Process]) -> None:
    holder = spawn(processes, lock_path)
    assert holder.ask("lock pid-A") == "locked"
    assert OsFileSystem().lock_holder(lock_path) == "pid-A"
    with pytest.raises(StorageGroupBusyError, match="is locked by pid-A"):
        OsFileSystem().lock(lock_path, "parent")
    assert holder.ask("release") == "released"
    assert OsFileSystem().lock_holder(lock_path) is None
    OsFileSystem().lock(lock_path, "parent").release()


def test_probes_never_make_another_process_fail_to_take_the_lock(lock_path: str, processes: list[Process]) -> None:
    fs = OsFileSystem()
    fs.lock(lock_path, "first").release()
    taker = spawn(processes, lock_path)
    taker.start("cycle 3000")
    probes = 0
    while not taker.has_answered():  # probe as fast as we can while the other process takes and releases
        for _ in range(50):
            fs.lock_holder(lock_path)
        probes += 50
    assert taker.answer() == "busy 0", f"a take found the lock busy while {probes} probes ran"


def test_a_probe_in_the_holders_own_process_does_not_release_its_lock(lock_path: str, processes: list[Process]) -> None:
    fs = OsFileSystem()
    lock = fs.lock(lock_path, "this process")
    assert fs.lock_holder(lock_path) == "this process"  # opens and closes the file here
    other = spawn(processes, lock_path)
    assert other.ask("lock other").startswith("busy: ")
    lock.release()
    assert other.ask("lock other") == "locked"


def test_a_lock_file_deleted_and_recreated_while_held_does_not_let_a_second_process_in(
    lock_path: str, processes: list[Process]
) -> None:
    holder, second = spawn(processes, lock_path), spawn(processes, lock_path)
    assert holder.ask("lock pid-A") == "locked"
    assert holder.ask("intact") == "intact"
    os.unlink(lock_path)
    with open(lock_path, "w") as f:
        f.write("nobody\n")
    assert second.ask("lock pid-B").startswith("busy: "), "the second process got in"
    assert OsFileSystem().lock_holder(lock_path) is not None
    assert holder.ask("intact") == "not intact"
    assert holder.ask("release") == "released"
    assert second.ask("lock pid-B") == "locked"
    assert OsFileSystem().lock_holder(lock_path) == "pid-B"


def test_a_lock_file_deleted_while_held_does_not_let_a_second_process_in(
    lock_path: str, processes: list[Process]
) -> None:
    holder, second = spawn(processes, lock_path), spawn(processes, lock_path)
    assert holder.ask("lock pid-A") == "locked"
    os.unlink(lock_path)
    assert OsFileSystem().lock_holder(lock_path) is not None
    assert second.ask("lock pid-B").startswith("busy: "), "the second process got in"
    assert holder.ask("intact") == "not intact"


def test_the_lock_dies_with_its_process(lock_path: str, processes: list[Process]) -> None:
    holder = spawn(processes, lock_path)
    assert holder.ask("lock pid-A") == "locked"
    holder.kill()
    assert OsFileSystem().lock_holder(lock_path) is None
    OsFileSystem().lock(lock_path, "parent").release()
