"""Store files (engine/dbfile.py): page images written where they belong, alone or in runs, and blobs read back
verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowstore.engine.dbfile import GROW_MIN_BYTES, WRITE_RUN, DatabaseFile
from shadowstore.errors import DatabaseCorruptedError, DiskFullError, ReadVerifyFailureError
from shadowstore.events import EventLog
from shadowstore.format.common import crc32c
from shadowstore.format.dbheader import BlobRef
from shadowstore.format.page import verify_page
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.io.fs import OsFileSystem


def _flip_byte(path: str, offset: int) -> bytes:
    """Flip every bit of the byte at ``offset`` of the file; returns the byte as it was."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    return byte


def _reopened(tmp_path: Path, path: str, size: int) -> DatabaseFile:
    return DatabaseFile(OsFileSystem(), path, size, EventLog(str(tmp_path / "events"), OsFileSystem()), None)


def _empty_file(tmp_path: Path, page_size: int) -> tuple[DatabaseFile, str]:
    path = str(tmp_path / "pages.edb")
    Path(path).write_bytes(b"")
    fs = OsFileSystem()
    return DatabaseFile(fs, path, page_size, EventLog(str(tmp_path / "events"), fs), None), path


def test_page_images_of_one_page_and_of_runs_land_where_they_belong(tmp_path: Path) -> None:
    size = 4096
    file, path = _empty_file(tmp_path, size)
    long_run = WRITE_RUN // size + 3  # longer than one joined write
    data = (bytes(range(256)) * (long_run * 16))[: long_run * (size - 24) - 100]  # the last page not full
    far = 6 + long_run + 10
    pages = [
        *file.blob_pages(b"one", BlobRef(3, 5, 1), 0),  # a page alone
        *file.blob_pages(b"x" * 10_000, BlobRef(10_000, 2, 3), 0),  # a run of three, just before it
        *file.blob_pages(data, BlobRef(len(data), 6, long_run), 0),  # right after it, longer than a write
        *file.blob_pages(b"far", BlobRef(3, far, 1), 0),  # after a gap
    ]
    file.ensure_pages(far + 1)
    file.write_pages(pages)
    file.close()
    written = Path(path).read_bytes()
    expected = {5: b"one", 2: b"x" * 4072, 4: b"x" * (10_000 - 2 * 4072), far: b"far"}
    for pgno, payload in expected.items():
        page = written[pgno * size : (pgno + 1) * size]
        header = verify_page(page, pgno)
        assert page[24 : 24 + header.length] == payload
    got = b"".join(
        written[p * size + 24 : p * size + 24 + verify_page(written[p * size : (p + 1) * size], p).length]
        for p in range(6, 6 + long_run)
    )
    assert got == data


def test_a_blob_is_read_as_uncopied_verified_page_payloads_and_a_damaged_page_is_named(tmp_path: Path) -> None:
    size = 4096
    file, path = _empty_file(tmp_path, size)
    data = bytes(range(256)) * 40  # 10,240 bytes: three pages, the last one partly full
    ref = BlobRef(len(data), 4, 3)
    file.ensure_pages(8)
    file.write_pages(file.blob_pages(data, ref, 0))
    pieces = file.read_blob_pieces(ref)
    assert [len(p) for p in pieces] == [size - 24, size - 24, len(data) - 2 * (size - 24)]
    assert all(isinstance(p, memoryview) for p in pieces)  # views of one read: nothing copied per page
    assert b"".join(pieces) == data == file.read_blob(ref)
    assert file.read_blob_pieces(BlobRef(0, 0, 0)) == []
    with pytest.raises(DatabaseCorruptedError, match="its reference says 10241"):
        file.read_blob_pieces(BlobRef(len(data) + 1, 4, 3))
    file.close()
    byte = _flip_byte(path, 5 * size + 100)  # in the middle page's payload
    file = _reopened(tmp_path, path, size)
    with pytest.raises(ReadVerifyFailureError, match=r"page 5.*checksum mismatch"):
        file.read_blob_pieces(ref)
    file.close()
    with open(path, "r+b") as f:  # the byte mended; the last page's number wrong, behind a checksum made to match
        f.seek(5 * size + 100)
        f.write(byte)
        f.seek(6 * size)
        page = bytearray(f.read(size))
        page[4:8] = (7).to_bytes(4, "little")
        page[0:4] = crc32c(memoryview(page)[4:]).to_bytes(4, "little")
        f.seek(6 * size)
        f.write(page)
    file = _reopened(tmp_path, path, size)
    with pytest.raises(ReadVerifyFailureError, match=r"page 6.*claims to be page 7"):
        file.read_blob_pieces(ref)
    file.close()


def test_a_blob_read_into_memory_of_the_callers_is_verified_there_and_its_payloads_named(tmp_path: Path) -> None:
    size = 4096
    file, path = _empty_file(tmp_path, size)
    data = bytes(range(256)) * 40  # three pages, the last one partly full
    ref = BlobRef(len(data), 4, 3)
    file.ensure_pages(8)
    file.write_pages(file.blob_pages(data, ref, 0))
    assert file.blob_span(ref) == 3 * size
    memory = bytearray(b"\xee" * (4 * size))
    view = memoryview(memory)[100:]  # anywhere in the caller's memory
    runs = file.read_blob_into(ref, view)
    assert [length for _, length in runs] == [size - 24, size - 24, len(data) - 2 * (size - 24)]
    assert b"".join(view[at : at + length] for at, length in runs) == data
    assert memory[100 + 3 * size :] == b"\xee" * (size - 100)  # nothing past the blob's pages
    assert file.read_blob_into(BlobRef(0, 0, 0), view) == []
    file.close()
    _flip_byte(path, 6 * size + 50)  # in the last page's payload
    file = _reopened(tmp_path, path, size)
    with pytest.raises(ReadVerifyFailureError, match=r"page 6.*checksum mismatch"):
        file.read_blob_into(ref, view)
    with pytest.raises(ReadVerifyFailureError, match="page 7"):  # past the end of the file
        file.read_blob_into(BlobRef(size, 7, 2), view)
    file.close()


def test_a_growth_the_full_disk_refuses_gives_back_what_it_took(tmp_path: Path) -> None:
    fs = FaultFileSystem(capacity=GROW_MIN_BYTES // 2)
    fs.makedirs("/d")
    fs.open("/d/pages.edb", create=True).close()
    file = DatabaseFile(fs, "/d/pages.edb", 4096, EventLog(None), None)
    file.ensure_pages(4)  # a chunk of GROW_MIN_BYTES does not fit: the four pages alone are taken
    assert fs.stat("/d/pages.edb").size == 4 * 4096
    file.write_pages(file.blob_pages(b"kept", BlobRef(4, 3, 1), 0))
    free = fs.free_space("/d")
    assert free == GROW_MIN_BYTES // 2 - 4 * 4096
    with pytest.raises(DiskFullError):  # more than the disk holds, even without the chunk's margin
        file.ensure_pages(GROW_MIN_BYTES // 4096)
    assert fs.free_space("/d") == free  # the partial allocation was cut back: the space is there for others
    assert fs.stat("/d/pages.edb").size == 4 * 4096
    file.ensure_pages(5)  # a growth that fits still succeeds
    assert file.read_blob_pieces(BlobRef(4, 3, 1)) == [b"kept"]
