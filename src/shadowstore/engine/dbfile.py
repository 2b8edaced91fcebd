"""Reading and writing a store file: the two header copies, verified pages and page runs (blobs).

Durability: ``write_header`` writes the primary copy, fsyncs, writes the shadow copy, fsyncs; a reader takes
the valid copy with the higher sequence number. Pages are written with ``write_pages`` and made durable with
``sync`` before any header that refers to them is written.
"""

from __future__ import annotations

import errno
import os
from typing import NamedTuple

from shadowstore.errors import (
    DatabaseCorruptedError,
    DiskFullError,
    DiskIOError,
    ReadVerifyFailureError,
)
from shadowstore.events import EventLog
from shadowstore.format.dbheader import (
    DEFAULT_PAGE_SIZE,
    HEADER_PAGES,
    MAX_PAGE_SIZE,
    PAGE_SIZES,
    BlobRef,
    DbHeader,
    DbHeaderError,
    detect_page_size,
    unpack_db_header,
)
from shadowstore.format.page import (
    PageError,
    PageHeader,
    pack_blob_page,
    payload_capacity,
    verify_page,
)
from shadowstore.io.fs import FileHandle, FileSystem

GROW_MIN_BYTES = 1 << 20  # the file grows by at least this much (or 1/8 of its size) at a time


class HeaderChoice(NamedTuple):
    header: DbHeader
    damaged: list[tuple[int, str]]  # (copy index, problem) of copies that were not valid


def read_header_copies(fs: FileSystem, path: str) -> HeaderChoice:
    """The newest valid header copy of ``path``.

    Each copy is tried at every page size, so a damaged page-size field in one copy cannot hide the other.
    Raises DatabaseCorruptedError naming the file and both problems when neither copy is valid, and
    FileNotFoundError when the file is missing.
    """
    handle = fs.open(path, readonly=True)
    try:
        raw = handle.pread(2 * MAX_PAGE_SIZE, 0)
    finally:
        handle.close()
    found: dict[int, DbHeader] = {}
    problems: dict[int, dict[int, str]] = {0: {}, 1: {}}
    for size in PAGE_SIZES:
        for index in range(HEADER_PAGES):
            if index in found:
                continue
            offset = index * size
            try:
                found[index] = unpack_db_header(raw[offset : offset + size], offset)
            except DbHeaderError as exc:
                problems[index][size] = str(exc)
    if not found:
        size = detect_page_size(raw) or DEFAULT_PAGE_SIZE
        detail = "; ".join(f"copy {i} (offset {i * size}): {problems[i].get(size)}" for i in range(HEADER_PAGES))
        raise DatabaseCorruptedError(f"{path}: both header copies are damaged: {detail}")
    best = max(found.values(), key=lambda h: h.sequence)
    damaged = [(i, problems[i].get(best.page_size, "unreadable")) for i in range(HEADER_PAGES) if i not in found]
    return HeaderChoice(best, damaged)


class DatabaseFile:
    """An open store file with a known page size."""

    def __init__(self, fs: FileSystem, path: str, page_size: int, events: EventLog, sg: str | None) -> None:
        self.fs = fs
        self.path = path
        self.page_size = page_size
        self.events = events
        self.sg = sg
        self.handle: FileHandle = fs.open(path)
        self._allocated_bytes = self.handle.size()

    def close(self) -> None:
        self.handle.close()

    # --- headers ---------------------------------------------------------------------------------------

    def write_header(self, header: DbHeader) -> None:
        """Write both header copies durably, primary first. Raises DiskIOError/DiskFullError on failure."""
        data = header.pack()
        try:
            self.handle.pwrite(data, 0)
            self.fs.crash_point("header.after_primary_write")
            self.handle.fdatasync()
            self.fs.crash_point("header.after_primary_sync")
            self.handle.pwrite(data, self.page_size)
            self.fs.crash_point("header.after_shadow_write")
            self.handle.fdatasync()
        except OSError as exc:
            raise _io_error(exc, f"writing the header of {self.path}") from exc

    # --- pages -----------------------------------------------------------------------------------------

    def read_page(self, pgno: int) -> tuple[PageHeader, bytes]:
        """Page ``pgno``, verified. Raises ReadVerifyFailureError (event 474) naming file, page and offset."""
        offset = pgno * self.page_size
        try:
            page = self.handle.pread(self.page_size, offset)
        except OSError as exc:
            raise _io_error(exc, f"reading page {pgno} of {self.path}") from exc
        if len(page) != self.page_size:
            raise self.verify_failure(pgno, offset, f"the file ends at byte {offset + len(page)}", None, None)
        try:
            return verify_page(page, pgno), page
        except PageError as exc:
            raise self.verify_failure(pgno, offset, str(exc), exc.stored, exc.computed) from None

    def verify_failure(
        self, pgno: int, offset: int, problem: str, stored: int | None, computed: int | None
    ) -> ReadVerifyFailureError:
        """Emit event 474 for a page that failed verification and return the -1018 error naming it."""
        self.events.emit(
            474,
            sg=self.sg,
            file=self.path,
            offset=offset,
            pgno=pgno,
            size=self.page_size,
            stored=f"0x{stored:08x}" if stored is not None else "n/a",
            computed=f"0x{computed:08x}" if computed is not None else "n/a",
            error="-1018 (JET_errReadVerifyFailure)",
        )
        return ReadVerifyFailureError(
            f"{self.path}: page {pgno} at offset {offset} ({self.page_size} bytes) failed verification: {problem}"
        )

    def write_pages(self, pages: list[tuple[int, bytes]]) -> None:
        """Write page images (not yet durable). Adjacent pages are written with one system call."""
        pages.sort(key=lambda p: p[0])
        try:
            i = 0
            while i < len(pages):
                j = i + 1
                while j < len(pages) and pages[j][0] == pages[j - 1][0] + 1 and j - i < 256:
                    j += 1
                chunk = pages[i][1] if j == i + 1 else b"".join(p[1] for p in pages[i:j])
                self.handle.pwrite(chunk, pages[i][0] * self.page_size)
                i = j
        except OSError as exc:
            raise _io_error(exc, f"writing pages of {self.path}") from exc

    def ensure_pages(self, page_count: int) -> None:
        """Make the file at least ``page_count`` pages long, growing it in chunks with space reserved."""
        need = page_count * self.page_size
        if need <= self._allocated_bytes:
            return
        target = max(need, self._allocated_bytes + max(GROW_MIN_BYTES, self._allocated_bytes // 8))
        target = (target + self.page_size - 1) // self.page_size * self.page_size
        try:
            try:
                self.handle.allocate(self._allocated_bytes, target - self._allocated_bytes)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or target == need:
                    raise
                self.handle.allocate(self._allocated_bytes, need - self._allocated_bytes)
                target = need
        except OSError as exc:
            raise _io_error(exc, f"growing {self.path} to {need} bytes") from exc
        self._allocated_bytes = target

    def sync(self) -> None:
        try:
            self.handle.fdatasync()
        except OSError as exc:
            raise _io_error(exc, f"syncing {self.path}") from exc

    # --- blobs -----------------------------------------------------------------------------------------

    def blob_pages(self, data: bytes | memoryview, ref: BlobRef, lgpos_u64: int) -> list[tuple[int, bytes]]:
        """Page images holding ``data`` in the run ``ref`` (pages past the data carry empty payloads)."""
        cap = payload_capacity(self.page_size)
        view = memoryview(data)
        return [
            (
                ref.first_page + i,
                pack_blob_page(self.page_size, ref.first_page + i, lgpos_u64, view[i * cap : (i + 1) * cap]),
            )
            for i in range(ref.page_count)
        ]

    def read_blob(self, ref: BlobRef) -> bytes:
        """The bytes of a blob, every page verified. Raises ReadVerifyFailureError or DatabaseCorruptedError."""
        if ref.page_count == 0:
            return b""
        offset = ref.first_page * self.page_size
        try:
            raw = self.handle.pread(ref.page_count * self.page_size, offset)
        except OSError as exc:
            raise _io_error(exc, f"reading pages {ref.first_page}.. of {self.path}") from exc
        parts = []
        for i in range(ref.page_count):
            pgno = ref.first_page + i
            page = raw[i * self.page_size : (i + 1) * self.page_size]
            if len(page) != self.page_size:
                raise self.verify_failure(pgno, pgno * self.page_size, "the file ends inside a blob", None, None)
            try:
                header = verify_page(page, pgno)
            except PageError as exc:
                raise self.verify_failure(pgno, pgno * self.page_size, str(exc), exc.stored, exc.computed) from None
            parts.append(page[24 : 24 + header.length])
        data = b"".join(parts)
        if len(data) != ref.length:
            raise DatabaseCorruptedError(
                f"{self.path}: blob at page {ref.first_page} holds {len(data)} bytes, its reference says {ref.length}"
            )
        return data


def _io_error(exc: OSError, doing: str) -> DiskFullError | DiskIOError:
    if exc.errno == errno.ENOSPC:
        return DiskFullError(f"no space left while {doing}")
    return DiskIOError(f"I/O error while {doing}: {os.strerror(exc.errno or 0)}")
