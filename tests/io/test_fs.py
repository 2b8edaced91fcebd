"""The I/O layer's promises (io/fs.py), run over the real file system and the fault-injecting one alike where the
promise is the same: durable folders, files replaced through temporary files of their own, stale temporary files
found and removed, complete appends, and writes that make no progress reported instead of retried forever.
Locks have their own module (test_locks.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from shadowstore.io import replace as replace_module
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.io.fs import FileHandle, FileSystem, OsFileSystem, read_file, write_all
from shadowstore.io.replace import (
    remove_temporaries_of,
    replace_durably,
    temporaries_of,
    temporary_name,
    temporary_target,
)

HEX = "0123456789abcdef"


@pytest.fixture(params=["os", "fault"])
def world(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> tuple[FileSystem, str]:
    """A file system and an existing, empty folder on it."""
    if request.param == "os":
        return OsFileSystem(), str(tmp_path)
    fs = FaultFileSystem(seed=5)
    fs.makedirs("/w")
    return fs, "/w"


def write(fs: FileSystem, path: str, data: bytes) -> None:
    handle = fs.open(path, create=True)
    handle.pwrite(data, 0)
    handle.close()


@pytest.fixture
def fsync_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path of everything the real file system fsyncs from now on. A spy on ``os.fsync`` (which still
    syncs): a power loss cannot be staged on a real disk, so this is how the real makedirs is seen to sync."""
    seen: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


# --- reading into memory of the caller's ------------------------------------------------------------------------


def test_pread_into_fills_the_buffer_and_says_how_much_it_read(world: tuple[FileSystem, str]) -> None:
    fs, folder = world
    path = os.path.join(folder, "f")
    data = bytes(range(256)) * 40
    write(fs, path, data)
    handle = fs.open(path)
    buffer = bytearray(b"\xee" * 4000)
    assert handle.pread_into(memoryview(buffer)[:3000], 100) == 3000
    assert buffer[:3000] == data[100:3100]
    assert buffer[3000:] == b"\xee" * 1000  # nothing past the view
    assert handle.pread_into(memoryview(buffer), len(data) - 10) == 10  # the end of the file: fewer
    assert buffer[:10] == data[-10:]
    handle.close()


def test_pread_into_goes_on_after_a_short_read(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.path.join(str(tmp_path), "f")
    data = os.urandom(10_000)
    write(OsFileSystem(), path, data)
    real = os.preadv

    def short(fd: int, buffers: list[memoryview], offset: int) -> int:  # at most 1,000 bytes a call
        return real(fd, [buffers[0][:1000]], offset)

    monkeypatch.setattr(os, "preadv", short)
    handle = OsFileSystem().open(path)
    buffer = bytearray(10_000)
    assert handle.pread_into(memoryview(buffer), 0) == 10_000
    assert bytes(buffer) == data
    handle.close()


# --- folders ------------------------------------------------------------------------------------------------------


def test_makedirs_creates_every_missing_folder_and_leaves_an_existing_one(world: tuple[FileSystem, str]) -> None:
    fs, root = world
    fs.makedirs(f"{root}/a/b/c")
    write(fs, f"{root}/a/b/c/f", b"kept")
    fs.makedirs(f"{root}/a/b/c")
    assert fs.listdir(f"{root}/a/b/c") == ["f"]
    assert fs.listdir(f"{root}/a") == ["b"]


def test_makedirs_on_the_real_file_system_syncs_the_parent_of_each_new_folder(
    tmp_path: os.PathLike[str], fsync_paths: list[str]
) -> None:
    root = str(tmp_path)
    OsFileSystem().makedirs(f"{root}/a/b/c")
    assert sorted(fsync_paths) == sorted([root, f"{root}/a", f"{root}/a/b"])
    fsync_paths.clear()
    OsFileSystem().makedirs(f"{root}/a/b/c")
    assert fsync_paths == [], "an existing folder needs no sync"


def test_makedirs_on_the_fault_file_system_syncs_the_parent_of_each_new_folder() -> None:
    fs = FaultFileSystem()
    fs.makedirs("/a/b")
    assert fs.fsyncs_seen == ["/", "/a"]


def test_makedirs_refuses_a_path_that_is_a_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "f")
    write(OsFileSystem(), path, b"x")
    with pytest.raises(FileExistsError):
        OsFileSystem().makedirs(path)


# --- replacing a file -------------------------------------------------------------------------------------------


def test_replace_durably_writes_a_temporary_file_of_its_own_beside_the_file(world: tuple[FileSystem, str]) -> None:
    fs, root = world
    path = f"{root}/E00.chk"
    write(fs, path, b"old")
    used: list[str] = []

    def fill(handle: FileHandle) -> None:
        used.append(handle.path)
        handle.pwrite(b"new", 0)

    replace_durably(fs, path, fill)
    replace_durably(fs, path, fill)
    assert read_file(fs, path) == b"new"
    assert used[0] != used[1], "each replace has a temporary name of its own"
    for tmp in used:
        assert os.path.dirname(tmp) == root
        assert temporary_target(os.path.basename(tmp)) == "E00.chk"
    assert fs.listdir(root) == ["E00.chk"]


def test_two_replaces_of_one_file_at_once_do_not_write_into_each_others_temporary_file(
    world: tuple[FileSystem, str],
) -> None:
    fs, root = world
    path = f"{root}/restore.json"
    filled, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_fill(handle: FileHandle) -> None:
        handle.pwrite(b"first", 0)
        filled.set()
        go_on.wait(timeout=30)

    def first() -> None:
        try:
            replace_durably(fs, path, slow_fill)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert filled.wait(timeout=30)
    replace_durably(fs, path, lambda handle: handle.pwrite(b"second", 0))
    assert read_file(fs, path) == b"second"
    go_on.set()
    thread.join(timeout=30)
    assert errors == []
    assert read_file(fs, path) == b"first", "the first replace kept its own content and renamed it in last"
    assert fs.listdir(root) == ["restore.json"]


def test_replace_durably_never_takes_an_existing_file_as_its_temporary(
    world: tuple[FileSystem, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, root = world
    path = f"{root}/E00.chk"
    monkeypatch.setattr(replace_module.secrets, "token_hex", lambda n: HEX)  # the one name it will choose
    taken = f"{root}/.E00.chk.tmp-{HEX}"
    write(fs, taken, b"someone else's")
    with pytest.raises(FileExistsError):
        replace_durably(fs, path, lambda handle: handle.pwrite(b"new", 0))
    assert read_file(fs, taken) == b"someone else's"
    assert not fs.exists(path)


def test_replace_durably_removes_its_temporary_file_when_fill_fails(world: tuple[FileSystem, str]) -> None:
    fs, root = world
    path = f"{root}/priv1.edb"
    write(fs, path, b"old")

    def failing(handle: FileHandle) -> None:
        handle.pwrite(b"half", 0)
        raise ValueError("the copy's hash differs")

    with pytest.raises(ValueError, match="hash differs"):
        replace_durably(fs, path, failing, suffix=".restoring")
    assert fs.listdir(root) == ["priv1.edb"]
    assert read_file(fs, path) == b"old"


def test_replace_durably_removes_its_temporary_file_when_the_fsync_fails() -> None:
    fs = FaultFileSystem()
    fs.makedirs("/w")
    fs.fail_fsync(".E00.chk.tmp-")
    with pytest.raises(OSError, match="Input/output error"):
        replace_durably(fs, "/w/E00.chk", lambda handle: handle.pwrite(b"new", 0))
    assert fs.listdir("/w") == []


def test_temporary_names_take_only_known_suffixes() -> None:
    assert os.path.basename(temporary_name("/x/E00.chk")).startswith(".E00.chk.tmp-")
    assert os.path.basename(temporary_name("/x/priv1.edb", ".restoring")).startswith(".priv1.edb.restoring-")
    with pytest.raises(ValueError, match="not one of"):
        temporary_name("/x/E00.chk", ".bak")


# --- temporary files a crash left behind --------------------------------------------------------------------------

LOOKALIKES = [
    "E00.chk",  # the file itself
    "E00.chk.tmp",  # the old fixed name: not ours to judge
    f".E00.chk.tmp-{HEX[:15]}",  # too short
    f".E00.chk.tmp-{HEX.upper()}",  # not lower-case hex
    f".E00.chk.old-{HEX}",  # a suffix replace_durably never uses
    f".E00.chkx.tmp-{HEX}",  # another file's
    f".xE00.chk.tmp-{HEX}",
    f".E01.chk.tmp-{HEX}",
    f"E00.chk.tmp-{HEX}",  # no leading dot
]


def test_temporaries_of_a_file_are_its_leftovers_and_nothing_else(world: tuple[FileSystem, str]) -> None:
    fs, root = world
    ours = [f".E00.chk.tmp-{HEX}", f".E00.chk.tmp-{HEX[::-1]}", f".E00.chk.restoring-{HEX}"]
    for name in ours + LOOKALIKES:
        write(fs, f"{root}/{name}", b"x")
    assert temporaries_of(fs, f"{root}/E00.chk") == sorted(f"{root}/{name}" for name in ours)
    assert remove_temporaries_of(fs, f"{root}/E00.chk") == sorted(f"{root}/{name}" for name in ours)
    assert sorted(fs.listdir(root)) == sorted(LOOKALIKES)
    assert remove_temporaries_of(fs, f"{root}/E00.chk") == []
    assert temporaries_of(fs, f"{root}/missing/E00.chk") == []


def test_removed_temporaries_stay_removed_after_a_power_loss() -> None:
    fs = FaultFileSystem(seed=3)
    fs.makedirs("/w")
    for name in (f".E00.chk.tmp-{HEX}", "E00.chk"):
        write(fs, f"/w/{name}", b"x")
    fs.fsync_dir("/w")
    remove_temporaries_of(fs, "/w/E00.chk")
    assert fs.crash("drop").listdir("/w") == ["E00.chk"]


# --- appending and writing ----------------------------------------------------------------------------------------


def test_append_adds_everything_at_the_end(world: tuple[FileSystem, str]) -> None:
    fs, root = world
    fs.append(f"{root}/log", b"one\n")
    fs.append(f"{root}/log", b"two\n" * 50_000, sync=True)
    assert read_file(fs, f"{root}/log") == b"one\n" + b"two\n" * 50_000


def test_a_synced_append_survives_a_power_loss_and_an_unsynced_one_need_not() -> None:
    fs = FaultFileSystem(seed=4)
    fs.makedirs("/w")
    fs.append("/w/log", b"one\n", sync=True)
    fs.fsync_dir("/w")
    fs.append("/w/log", b"two\n")
    assert read_file(fs.copy(), "/w/log") == b"one\ntwo\n"
    assert read_file(fs.crash("drop"), "/w/log") == b"one\n"


class ScriptedWrites:
    """A write function that writes at most the given counts, one per call, into ``self.data``."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = counts
        self.data = bytearray(16)
        self.calls = 0

    def __call__(self, view: memoryview, offset: int) -> int:
        n = min(len(view), self.counts[self.calls])
        self.calls += 1
        self.data[offset : offset + n] = view[:n]
        return n


def test_write_all_goes_on_after_short_writes_from_where_each_stopped() -> None:
    writes = ScriptedWrites([3, 1, 100])
    write_all(writes, b"abcdefgh", 4, "f")
    assert writes.calls == 3
    assert bytes(writes.data[4:12]) == b"abcdefgh"


def test_a_write_that_writes_nothing_is_an_error_not_a_loop() -> None:
    writes = ScriptedWrites([3, 0, 100])
    with pytest.raises(OSError, match="writing 5 bytes at offset 7 wrote nothing") as info:
        write_all(writes, b"abcdefgh", 4, "/w/E00.log")
    assert info.value.filename == "/w/E00.log"
    assert writes.calls == 2


def test_writing_nothing_writes_nothing() -> None:
    writes = ScriptedWrites([])
    write_all(writes, b"", 0, "f")
    assert writes.calls == 0


CUT_SHORT = """
import resource, sys
from shadowstore.io.fs import OsFileSystem
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))  # a write past 1000 bytes is cut short, then refused
handle = OsFileSystem().open(sys.argv[1], create=True)
try:
    handle.pwrite(b"x" * 1500, 0)
except OSError as exc:
    print(exc.errno)
"""


def test_a_real_short_write_is_continued_and_the_refusal_that_follows_is_raised(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "f")
    done = subprocess.run([sys.executable, "-c", CUT_SHORT, path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "27", "EFBIG: the write went on after the short one and was refused"
    assert os.path.getsize(path) == 1000
