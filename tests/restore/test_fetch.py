"""Fetching one file of a backup set: hashed as it streams, renamed in only when it matches its manifest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import zstandard

from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.manifest import FileEntry
from shadowstore.errors import BackupSetError
from shadowstore.format.common import crc32c
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.io.fs import OsFileSystem
from shadowstore.io.replace import temporaries_of
from shadowstore.restore.fetch import fetch_file

DATA = os.urandom(3 << 20) + b"tail that is not a whole block"


def stored(target: LocalTarget, name: str, data: bytes, *, compress: bool = False) -> FileEntry:
    body = zstandard.ZstdCompressor().compress(data) if compress else data
    target.write_file(f"sg/set/{name}", [body])
    return FileEntry(
        name=name,
        role="db",
        source=name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        stored_size=len(body),
        stored_crc32c=f"{crc32c(body, 0):08x}",
        compression="zstd" if compress else None,
    )


@pytest.mark.parametrize("compress", [False, True])
def test_a_file_is_fetched_byte_for_byte_on_disk(tmp_path: Path, compress: bool) -> None:
    target = LocalTarget(str(tmp_path / "target"))
    entry = stored(target, "priv1.edb", DATA, compress=compress)
    destination = str(tmp_path / "priv1.edb")
    progress: list[int] = []
    fetch_file(target, "sg/set", entry, OsFileSystem(), destination, progress=progress.append)
    assert Path(destination).read_bytes() == DATA
    assert sum(progress) == len(DATA)
    assert temporaries_of(OsFileSystem(), destination) == []


def test_a_file_is_fetched_on_the_fault_injecting_file_system(tmp_path: Path) -> None:
    target = LocalTarget(str(tmp_path / "target"))
    entry = stored(target, "priv1.edb", DATA)
    fs = FaultFileSystem()
    fs.makedirs("/r")
    fetch_file(target, "sg/set", entry, fs, "/r/priv1.edb")
    assert fs.crash("drop").read_bytes("/r/priv1.edb") == DATA  # fsynced, renamed, folder fsynced


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda e: setattr(e, "sha256", "0" * 64), "does not match the SHA-256 in its manifest"),
        (lambda e: setattr(e, "size", e.size + 1), "the manifest says"),
    ],
)
def test_a_mismatch_leaves_no_file_and_keeps_what_was_there(tmp_path: Path, damage: object, message: str) -> None:
    target = LocalTarget(str(tmp_path / "target"))
    entry = stored(target, "E0000001.log", DATA)
    damage(entry)  # type: ignore[operator]
    destination = tmp_path / "E0000001.log"
    destination.write_bytes(b"what was there")
    with pytest.raises(BackupSetError, match=message) as err:
        fetch_file(target, "sg/set", entry, OsFileSystem(), str(destination))
    assert "E0000001.log" in err.value.message
    assert destination.read_bytes() == b"what was there"
    assert temporaries_of(OsFileSystem(), str(destination)) == []


def test_a_stored_file_that_does_not_decompress_is_named(tmp_path: Path) -> None:
    target = LocalTarget(str(tmp_path / "target"))
    entry = stored(target, "priv1.edb", DATA, compress=True)
    path = tmp_path / "target" / "sg" / "set" / "priv1.edb"
    body = bytearray(path.read_bytes())
    body[len(body) // 2] ^= 0xFF
    path.write_bytes(bytes(body))
    with pytest.raises(BackupSetError, match=r"priv1\.edb"):
        fetch_file(target, "sg/set", entry, OsFileSystem(), str(tmp_path / "priv1.edb"))
    assert not (tmp_path / "priv1.edb").exists()
