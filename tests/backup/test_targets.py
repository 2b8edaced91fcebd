"""Conformance tests for backup targets: every test taking ``target`` runs against a local directory, memory://
and s3:// on a real moto server (see conftest.py). Then tests of what only one backend can show."""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from s3fs.errors import translate_boto_error

from shadowstore.backup.fsspectarget import ENDPOINT_VARIABLE, PART_SIZE, FsspecTarget
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.target import Target, open_target
from shadowstore.errors import (
    BackupTargetError,
    BackupTargetFullError,
    BackupTargetNotFoundError,
    InvalidParameterError,
)

MiB = 1 << 20


class Boom(Exception):
    """Raised by a chunk iterator, as a failing source file would."""


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def pieces(data: bytes, seed: int, largest: int = 300_000) -> Iterator[bytes]:
    """``data`` in chunks of irregular sizes (some empty)."""
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = rng.choice([0, 1, 4096, rng.randrange(1, largest)])
        yield data[pos : pos + step]
        pos += step


def failing_after(chunks: int, chunk_size: int = 4 * MiB) -> Iterator[bytes]:
    yield from (bytes([n]) * chunk_size for n in range(chunks))
    raise Boom("source file became unreadable")


def beside(target: Target) -> Target:
    """The folder that holds ``target`` (fresh and empty but for the target): nothing may leak into it."""
    return open_target(target.url.rsplit("/", 1)[0])


def everything_beside(target: Target) -> list[str]:
    """Every file in the folder that holds ``target``, temporary files included."""
    if isinstance(target, LocalTarget):  # why: its list() hides temporaries, so look at the disk itself
        folder = Path(target.url).parent
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return beside(target).list()  # an object store has no temporary files to hide


def beside_name(target: Target, relative: str) -> str:
    """The name of ``relative`` in the folder that holds ``target``."""
    return f"{target.url.rsplit('/', 1)[1]}/{relative}"


# --- conformance: every backend ------------------------------------------------------------------------------


def test_round_trip_in_chunks(target: Target) -> None:
    cases = {"empty": [], "empty-chunk": [b""], "small": [b"ab", b"", b"cde"], "big.bin": payload(3 * MiB + 17, 1)}
    for name, content in cases.items():
        data = content if isinstance(content, bytes) else b"".join(content)
        chunks = pieces(data, seed=2) if isinstance(content, bytes) else iter(content)
        assert target.write_file(name, chunks) == len(data)
        assert target.read_bytes(name) == data
        read = list(target.read_file(name, chunk_size=64 * 1024))
        assert b"".join(read) == data
        assert all(0 < len(chunk) <= 64 * 1024 for chunk in read)
        assert target.size(name) == len(data)
    assert target.list() == sorted(cases)


def test_write_replaces_an_existing_file(target: Target) -> None:
    target.write_file("set/f", [payload(200_000, 3)])
    target.write_file("set/f", [b"short"])
    assert target.read_bytes("set/f") == b"short"
    assert target.size("set/f") == 5
    assert target.list() == ["set/f"]


def test_subfolders_and_list_prefixes_sorted(target: Target) -> None:
    names = ["sg2/b/z", "sg1/20261125T0845Z-full/priv1.edb", "sg1/20261125T0845Z-full/manifest.json"]
    names += ["sg1/20261126T0100Z-incremental/E0000005.log", "top.txt", "sg10/x", "sg1-other"]
    for name in names:
        target.write_file(name, [name.encode()])
    assert target.list() == sorted(names)
    assert target.list("sg1/") == sorted(n for n in names if n.startswith("sg1/"))
    assert target.list("sg1/20261125") == ["sg1/20261125T0845Z-full/manifest.json", "sg1/20261125T0845Z-full/priv1.edb"]
    assert target.list("sg1") == sorted(n for n in names if n.startswith("sg1"))
    assert target.list("sg2/b/z") == ["sg2/b/z"]
    assert target.list("nope/") == target.list("sg3") == []
    assert [target.read_bytes(n) for n in names] == [n.encode() for n in names]


def test_during_a_write_list_shows_only_complete_files(target: Target) -> None:
    target.write_file("set/f", [b"old"])
    seen: list[object] = []

    def chunks() -> Iterator[bytes]:
        yield payload(MiB, 4)
        seen.extend([target.list(), beside(target).list(), target.read_bytes("set/f"), target.exists("set/g")])
        seen.append(target.sizes())
        yield payload(MiB, 5)

    target.write_file("set/f", chunks())
    target.write_file("set/g", [b"g"])
    assert seen == [["set/f"], [beside_name(target, "set/f")], b"old", False, {"set/f": 3}]
    assert target.read_bytes("set/f") == payload(MiB, 4) + payload(MiB, 5)
    assert target.list() == ["set/f", "set/g"]


def test_size_and_exists(target: Target) -> None:
    target.write_file("a/b", [b"xyz"])
    assert target.exists("a/b")
    assert target.size("a/b") == 3
    for missing in ("a", "a/c", "zz/top"):  # "a" is a folder, not a file
        assert not target.exists(missing)
        with pytest.raises(BackupTargetNotFoundError):
            target.size(missing)


def test_delete(target: Target) -> None:
    for n in ("a/b", "a/c", "d"):
        target.write_file(n, [n.encode()])
    target.delete("a/b")
    assert not target.exists("a/b")
    assert target.list() == ["a/c", "d"]
    target.delete("a/b")  # already gone: no error
    target.delete("never/was")
    target.delete("a/c")
    assert target.list() == ["d"]
    target.write_file("a/b", [b"again"])
    assert target.read_bytes("a/b") == b"again"


def test_read_of_a_missing_file_is_not_found(target: Target) -> None:
    target.write_file("here", [b"x"])
    with pytest.raises(BackupTargetNotFoundError, match="no/such") as info:
        target.read_file("no/such")
    assert target.url in str(info.value)
    with pytest.raises(BackupTargetNotFoundError):
        target.read_bytes("no/such")


@pytest.mark.parametrize("bad", ["../x", "/abs", "a//b", "", "a/./b", "a/", "x/../../y", "a\\b"])
def test_bad_names_are_refused_and_write_nothing(target: Target, bad: str) -> None:
    calls: list[Any] = [
        lambda: target.write_file(bad, [b"data"]),
        lambda: target.read_file(bad),
        lambda: target.read_bytes(bad),
        lambda: target.exists(bad),
        lambda: target.size(bad),
        lambda: target.delete(bad),
    ]
    if bad and bad != "a/":  # "" and "a/" are fine prefixes
        calls += [lambda: target.list(bad), lambda: target.sizes(bad)]
    for call in calls:
        with pytest.raises(InvalidParameterError):
            call()
    assert everything_beside(target) == []


def test_failing_chunk_iterator_leaves_no_file(target: Target) -> None:
    # 12 MiB: more than one S3 part has been uploaded when the iterator fails
    with pytest.raises(Boom):
        target.write_file("set/db.edb", failing_after(3))
    assert not target.exists("set/db.edb")
    assert target.list() == []
    assert everything_beside(target) == []  # no temporary file either


def test_failing_chunk_iterator_keeps_the_previous_file(target: Target) -> None:
    target.write_file("f", [b"previous"])
    with pytest.raises(Boom):
        target.write_file("f", failing_after(1, MiB))
    assert target.read_bytes("f") == b"previous"
    assert everything_beside(target) == [beside_name(target, "f")]


KILLED_WRITER = """
import os, signal, sys
from shadowstore.backup.target import open_target

def chunks():
    yield b"x" * (9 << 20)  # more than one S3 part: the multipart upload has begun
    yield b"y" * (1 << 20)
    os.kill(os.getpid(), signal.SIGKILL)
    yield b""

open_target(sys.argv[1]).write_file(sys.argv[2], chunks())
"""


def killed_while_writing(target: Target, name: str) -> None:
    """Write ``name`` from another process that is killed (SIGKILL) halfway through the write."""
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, target.url, name], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr


def test_a_write_killed_midway_leaves_a_partial_that_discard_removes(target: Target) -> None:
    target.write_file("s/f", [b"previous"])
    target.write_file("t/g", [b"other"])
    killed_while_writing(target, "s/f")
    killed_while_writing(target, "s/new/h")
    # memory:// lives in the killed process's memory: nothing of its writes is anywhere
    left = [] if target.url.startswith("memory://") else ["s/f", "s/new/h"]
    assert target.partial() == left
    assert target.partial("s/") == left
    assert target.partial("s/new/") == left[1:]
    assert target.partial("t/") == []
    assert target.list() == ["s/f", "t/g"]  # a partial is never listed
    assert target.sizes() == {"s/f": 8, "t/g": 5}
    target.discard_partial("s/f")
    target.discard_partial("s/new/h")
    target.discard_partial("never/written")
    assert target.partial() == []
    assert target.read_bytes("s/f") == b"previous"  # the complete file of that name is untouched
    assert sorted(everything_beside(target)) == [beside_name(target, "s/f"), beside_name(target, "t/g")]


def test_a_partial_is_named_while_its_write_runs(target: Target) -> None:
    """A running write looks like a killed one from outside: callers decide by what else they know."""
    seen: list[list[str]] = []

    def chunks() -> Iterator[bytes]:
        yield b"x" * (PART_SIZE + MiB)
        seen.append(target.partial())
        yield b"y"

    target.write_file("s/f", chunks())
    assert seen == [[] if target.url.startswith("memory://") else ["s/f"]]
    assert target.partial() == []


def test_sizes_are_those_written_from_one_listing(target: Target) -> None:
    written = {"sg1/set/priv1.edb": 3 * MiB + 5, "sg1/set/E0000005.log": 0, "sg1-other": 1, "sg10/x": 7, "top": 2}
    for name, size in written.items():
        target.write_file(name, pieces(payload(size, 8), seed=9))
    assert target.sizes() == dict(sorted(written.items()))
    assert list(target.sizes()) == target.list()
    assert target.sizes("sg1/") == {"sg1/set/E0000005.log": 0, "sg1/set/priv1.edb": 3 * MiB + 5}
    assert target.sizes("sg1/set/p") == {"sg1/set/priv1.edb": 3 * MiB + 5}
    assert target.sizes("sg1") == {n: s for n, s in sorted(written.items()) if n.startswith("sg1")}
    assert target.sizes("nope/") == target.sizes("sg3") == {}
    target.delete("top")
    assert "top" not in target.sizes()


def test_the_size_hint_is_only_a_hint(target: Target) -> None:
    data = payload(PART_SIZE + 3 * MiB, 10)
    for hint in (0, len(data) // 3, 1 << 40):
        assert target.write_file(f"h{hint}", pieces(data, seed=hint), size_hint=hint) == len(data)
        assert target.read_bytes(f"h{hint}") == data
    target.write_file("empty", [], size_hint=1 << 30)
    assert target.read_bytes("empty") == b""


DELETED_SETS = 40  # folders deleted while another thread lists; each holds a file and a subfolder with one


def test_listing_while_another_thread_deletes_folders_never_fails(target: Target) -> None:
    """A prune deletes sets while a backup or a `backup list` lists the target: a file or folder that vanishes
    mid-listing is simply not named. (A local listing used to fail when a folder went between reading its
    parent and reading it.)"""
    names = [f"sg/set-{n:03d}/{file}" for n in range(DELETED_SETS) for file in ("priv1.edb", "logs/E0000001.log")]
    for name in names:
        target.write_file(name, [b"x"])
    listing, deleted = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def delete_every_set() -> None:
        try:
            listing.wait()
            for name in names:
                target.delete(name)  # removes the folders it empties
        except BaseException as exc:  # why: reported by the main thread
            failures.append(exc)
        finally:
            deleted.set()

    thread = threading.Thread(target=delete_every_set)
    thread.start()
    rounds = 0
    try:
        while not deleted.is_set() or rounds == 0:
            listing.set()
            listed, sized, prefixed = target.list(), target.sizes(), target.list("sg/set-0")
            assert target.partial() == target.partial("sg/") == []
            assert set(listed) <= set(names)
            assert set(sized) <= set(names)
            assert set(sized.values()) <= {1}
            assert all(name.startswith("sg/set-0") for name in prefixed)
            rounds += 1
    finally:
        listing.set()
        thread.join()
    assert failures == []
    assert target.list() == []
    assert target.sizes() == {}


def test_open_target_reaches_the_same_files(target: Target) -> None:
    target.write_file("s/f", [b"same"])
    again = open_target(target.url)
    assert type(again) is type(target)
    assert again.read_bytes("s/f") == b"same"
    assert open_target(target.url + "-2").list() == []  # a sibling whose name extends ours is another target


# --- open_target ---------------------------------------------------------------------------------------------


def test_open_target_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for url, kind, expected_url in [
        (str(tmp_path / "t"), LocalTarget, str(tmp_path / "t")),
        ("relative/t", LocalTarget, str(tmp_path / "relative/t")),
        (f"file://{tmp_path}/t", LocalTarget, str(tmp_path / "t")),
        ("memory://t-dispatch", FsspecTarget, "memory://t-dispatch"),
        ("s3://some-bucket/prefix", FsspecTarget, "s3://some-bucket/prefix"),
    ]:
        made = open_target(url)
        assert (type(made), made.url) == (kind, expected_url)
    assert list(tmp_path.iterdir()) == []  # opening creates nothing
    for url in ("ftp://host/x", "zzz://x", "gs2://b/p"):
        with pytest.raises(InvalidParameterError, match="supported"):
            open_target(url)


# --- local directory only ------------------------------------------------------------------------------------


def test_local_target_is_created_by_the_first_write(tmp_path: Path) -> None:
    target = LocalTarget(str(tmp_path / "a" / "b"))
    assert target.list() == []
    assert not target.exists("x")
    assert target.free_space() > 0
    with pytest.raises(BackupTargetNotFoundError):
        target.read_file("x")
    assert list(tmp_path.iterdir()) == []
    target.write_file("s/f", [b"1"])
    assert (tmp_path / "a" / "b" / "s" / "f").read_bytes() == b"1"


def test_a_local_target_that_is_a_file_is_named_as_one(tmp_path: Path) -> None:
    (tmp_path / "backups").write_bytes(b"not a folder")
    target = LocalTarget(str(tmp_path / "backups"))
    with pytest.raises(BackupTargetError, match="the backup target is a file, not a folder"):
        target.write_file("sg/set/priv1.edb", [b"x"])
    for listing in (target.list, target.sizes, target.partial):
        with pytest.raises(BackupTargetError, match="the backup target is a file, not a folder"):
            listing()  # not an empty target: a `backup list` must not say there are no backups
    assert (tmp_path / "backups").read_bytes() == b"not a folder"


def test_local_leftover_temporaries_are_not_listed(tmp_path: Path) -> None:
    target = LocalTarget(str(tmp_path))
    target.write_file("s/f", [b"1"])
    target.write_file(".hidden", [b"2"])  # a dot file is an ordinary file
    for leftover in ("s/.f.tmp-0123456789abcdef", ".g.tmp-fedcba9876543210"):
        (tmp_path / leftover).write_bytes(b"half")
    assert target.list() == [".hidden", "s/f"]
    with pytest.raises(InvalidParameterError, match="temporary"):
        target.write_file("s/.x.tmp-0123456789abcdef", [b"3"])


class PrunedWhileListing(LocalTarget):
    """Deletes files and folders at the instants a prune running alongside could: right after the listing has
    read the folder that holds them, before it reads (or stats) them."""

    def _entries(self, relative: str) -> list[os.DirEntry[str]]:
        entries = super()._entries(relative)
        root = Path(self.url)
        if relative == "sg":
            shutil.rmtree(root / "sg" / "set-1")  # a whole set: its folder, a subfolder, their files
            (root / "sg" / "set-3").rmdir()
            (root / "sg" / "set-3").write_bytes(b"a file took the folder's name")
        if relative == "sg/set-2":
            (root / "sg" / "set-2" / "priv1.edb").unlink()  # listed, but gone before its size is read
        return entries


def pruned_while_listing(root: Path) -> PrunedWhileListing:
    target = PrunedWhileListing(str(root))
    for name in ("sg/set-1/priv1.edb", "sg/set-1/logs/E0000001.log", "sg/set-2/priv1.edb", "sg/set-2/E00.chk"):
        target.write_file(name, [b"xy"])
    (root / "sg" / "set-3").mkdir()
    return target


def test_local_listing_skips_what_is_deleted_under_it(tmp_path: Path) -> None:
    assert pruned_while_listing(tmp_path / "sizes").sizes() == {"sg/set-2/E00.chk": 2}
    assert pruned_while_listing(tmp_path / "list").list() == ["sg/set-2/E00.chk", "sg/set-2/priv1.edb"]  # it was
    assert pruned_while_listing(tmp_path / "partial").partial() == []


def test_local_delete_prunes_emptied_folders_but_not_the_root(tmp_path: Path) -> None:
    target = LocalTarget(str(tmp_path / "root"))
    target.write_file("a/b/c/f", [b"1"])
    target.write_file("a/g", [b"2"])
    target.delete("a/b/c/f")
    assert sorted(p.name for p in (tmp_path / "root" / "a").iterdir()) == ["g"]
    target.delete("a/g")
    assert list((tmp_path / "root").iterdir()) == []


class RecordingTarget(LocalTarget):
    """Records each durability step (and whether the final file existed then), then performs it."""

    def __init__(self, path: str, final: str) -> None:
        super().__init__(path)
        self.final, self.steps = final, list[tuple[str, str, bool]]()

    def _sync_file(self, fd: int) -> None:
        self.steps.append(("fsync file", "", os.path.exists(self.final)))
        super()._sync_file(fd)

    def _sync_dir(self, path: str) -> None:
        self.steps.append(("fsync dir", os.path.relpath(path, os.path.dirname(self.url)), os.path.exists(self.final)))
        super()._sync_dir(path)


def test_local_write_fsyncs_file_then_renames_then_fsyncs_directories(tmp_path: Path) -> None:
    target = RecordingTarget(str(tmp_path / "root"), final=str(tmp_path / "root" / "s" / "f"))
    target.write_file("s/f", [b"data"])
    assert target.steps == [
        ("fsync dir", ".", False),  # the new root's entry in its parent
        ("fsync dir", "root", False),  # the new folder s
        ("fsync file", "", False),  # the data, before the rename
        ("fsync dir", "root/s", True),  # the rename
    ]
    target.steps.clear()
    target.delete("s/f")
    assert target.steps == [("fsync dir", "root", False)]  # s was pruned; its removal is made durable


def test_local_disk_full_is_reported_and_leaves_nothing(tmpfs: Path) -> None:
    target = LocalTarget(str(tmpfs / "backups"))
    target.write_file("keep", [b"previous"])
    with pytest.raises(BackupTargetFullError, match="no space left") as info:
        target.write_file("set/big", (bytes(64 * 1024) for _ in range(32)))  # 2 MiB into 1 MiB
    assert "'set/big'" in str(info.value)
    assert target.url in str(info.value)
    with pytest.raises(BackupTargetFullError):
        target.write_file("keep", (bytes(64 * 1024) for _ in range(32)))
    assert target.list() == ["keep"]
    assert target.read_bytes("keep") == b"previous"
    assert sorted(str(p.relative_to(tmpfs)) for p in tmpfs.rglob("*")) == ["backups", "backups/keep", "backups/set"]
    target.write_file("set/small", [bytes(100_000)])  # the space of the failed writes was given back


def test_local_read_only_target_is_not_writable(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if os.geteuid() == 0:  # why: root ignores permission bits; only a read-only mount stops it
        root = request.getfixturevalue("tmpfs") / "backups"
        LocalTarget(str(root)).write_file("s/f", [b"1"])
        subprocess.run(["mount", "-o", "remount,ro", str(root.parent)], check=True)
    else:
        root = tmp_path / "backups"
        LocalTarget(str(root)).write_file("s/f", [b"1"])
        for folder in (root / "s", root):
            folder.chmod(0o555)
            request.addfinalizer(lambda folder=folder: folder.chmod(0o755))
    target = LocalTarget(str(root))
    for n in ("x", "s/x", "new/x"):
        with pytest.raises(BackupTargetError, match="not writable") as info:
            target.write_file(n, [b"2"])
        assert not isinstance(info.value, BackupTargetFullError | BackupTargetNotFoundError)
    with pytest.raises(BackupTargetError, match="not writable"):
        target.delete("s/f")
    assert target.read_bytes("s/f") == b"1"
    assert target.list() == ["s/f"]


# --- s3 only -------------------------------------------------------------------------------------------------


def s3_target(server: Any) -> FsspecTarget:
    return FsspecTarget(f"s3://{server.bucket}/t-{uuid.uuid4().hex}")


def test_s3_object_appears_only_when_the_multipart_upload_completes(s3_server: Any) -> None:
    target, client = s3_target(s3_server), s3_server.client()
    key = f"{target.url.split('/', 3)[3]}/db.edb"
    data = payload(2 * PART_SIZE + 123, 6)  # three parts
    seen = []

    def chunks() -> Iterator[bytes]:
        for pos in range(0, len(data), MiB):
            if pos == PART_SIZE + MiB:  # the first part has been uploaded
                with pytest.raises(botocore.exceptions.ClientError, match=r"404|Not Found"):
                    client.head_object(Bucket=s3_server.bucket, Key=key)
                uploads = client.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=key).get("Uploads", [])
                seen.append([upload["Key"] for upload in uploads])
            yield data[pos : pos + MiB]

    target.write_file("db.edb", chunks())
    assert seen == [[key]]
    head = client.head_object(Bucket=s3_server.bucket, Key=key)
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")
    assert target.read_bytes("db.edb") == data


def test_s3_failed_write_aborts_the_upload(s3_server: Any) -> None:
    target, client = s3_target(s3_server), s3_server.client()
    with pytest.raises(Boom):
        target.write_file("db.edb", failing_after(3))  # 12 MiB: one part uploaded
    prefix = target.url.split("/", 3)[3]
    assert client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)["KeyCount"] == 0
    assert client.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix).get("Uploads", []) == []


def test_s3_without_s3fs_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(BackupTargetError, match="not installed") as info:
        open_target("s3://bucket/prefix")
    assert "pip install 'shadowstore[s3]'" in info.value.hint


def test_s3_unreachable_server_is_a_target_error(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv(ENDPOINT_VARIABLE, f"http://127.0.0.1:{sock.getsockname()[1]}")  # nobody listens
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        target = s3_target(s3_server)
        for call in (target.list, lambda: target.write_file("f", [b"x"]), lambda: target.exists("f")):
            with pytest.raises(BackupTargetError, match=re.escape(target.url)):
                call()


def client_error(code: str) -> OSError:
    """What s3fs raises for an S3 error response with ``code``."""
    error = botocore.exceptions.ClientError({"Error": {"Code": code, "Message": code}}, "PutObject")
    translated: OSError = translate_boto_error(error)
    return translated


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (client_error("EntityTooLarge"), BackupTargetFullError),
        (client_error("QuotaExceeded"), BackupTargetFullError),
        (OSError(errno.ENOSPC, "No space left on device"), BackupTargetFullError),
        (client_error("AccessDenied"), BackupTargetError),
        (client_error("InternalError"), BackupTargetError),
        (RuntimeError("anything else"), BackupTargetError),
    ],
)
def test_store_errors_are_target_errors(raised: Exception, expected: type, monkeypatch: pytest.MonkeyPatch) -> None:
    target = FsspecTarget(f"memory://t-{uuid.uuid4().hex}")

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(target._fs, "pipe_file", refuse)
    with pytest.raises(BackupTargetError) as info:
        target.write_file("set/f", [b"x"])
    assert type(info.value) is expected
    assert "'set/f'" in str(info.value)
    assert target.url in str(info.value)
