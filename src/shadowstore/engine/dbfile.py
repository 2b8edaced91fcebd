"""Reading and writing a store file: the two header copies, verified pages and page runs (blobs).

Durability: ``write_header`` writes the primary copy, fsyncs, writes the shadow copy, fsyncs; a reader takes
the valid copy with the higher sequence number. Pages are written with ``write_pages`` and made durable with
``sync`` before any header that refers to them is written.

A failed fsync is final. Linux reports a failed writeback once and drops the unsynced pages, so a retry would
succeed and make nothing durable, and what the file holds on disk is no longer known: the file calls
``on_lost_writes`` (the storage group stops all work and goes offline; recovery at the next mount is the only
way back) before it raises DiskIOError. A write that fails with EIO is treated the same way. Running out of
space is not: a write or a growth refused with ENOSPC wrote nothing that the durable header relies on (pages go
to free locations, and the header copy being written has a valid twin), the pages already written stay dirty
in the page cache for the next fsync, and the error is a DiskFullError the caller may retry after space is
freed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from contextlib import suppress
from typing import NamedTuple

from shadowstore.errors import (
    DatabaseCorruptedError,
    DiskFullError,
    DiskIOError,
    InvalidParameterError,
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
    not_a_database,
    unpack_db_header,
)
from shadowstore.format.page import (
    PAGE_HEADER,
    PageError,
    PageHeader,
    pack_blob_run,
    payload_lengths,
    verify_page,
)
from shadowstore.io.fs import FileHandle, FileSystem

GROW_MIN_BYTES = 1 << 20  # the file grows by at least this much (or 1/8 of its size) at a time
WRITE_RUN = 2 << 20  # bytes of adjacent page images joined into one write (a longer run is written as it is)


class HeaderChoice(NamedTuple):
    header: DbHeader
    damaged: list[tuple[int, str]]  # (copy index, problem) of copies that were not valid


def read_header_copies(fs: FileSystem, path: str) -> HeaderChoice:
    """The newest valid header copy of ``path``.

    Each copy is tried at every page size, so a damaged page-size field in one copy cannot hide the other.
    Raises InvalidParameterError when the file is not a store at all (empty, zero-filled, a real ESE database,
    no database magic in either copy and no ShadowStore data page), DatabaseCorruptedError naming the file and
    both problems when it is a store and neither copy is valid, and FileNotFoundError when the file is missing.
    """
    handle = fs.open(path, readonly=True)
    try:
        raw = handle.pread(2 * MAX_PAGE_SIZE, 0)
        file_size = handle.size()
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
        _refuse_non_database(path, raw, file_size)
        size = detect_page_size(raw) or DEFAULT_PAGE_SIZE
        detail = "; ".join(f"copy {i} (offset {i * size}): {problems[i].get(size)}" for i in range(HEADER_PAGES))
        raise DatabaseCorruptedError(f"{path}: both header copies are damaged: {detail}")
    best = max(found.values(), key=lambda h: h.sequence)
    damaged = [(i, problems[i].get(best.page_size, "unreadable")) for i in range(HEADER_PAGES) if i not in found]
    return HeaderChoice(best, damaged)


def _refuse_non_database(path: str, raw: bytes, file_size: int) -> None:
    """Raise InvalidParameterError when the first bytes of ``path`` show it is not a store (why: a file that never
    was one must not be reported as a damaged store, with advice to restore it)."""
    why = None if _has_data_page(raw) else not_a_database(raw, file_size)
    if why is not None:
        raise InvalidParameterError(
            f"{path} {why}",
            hint="check the path: a store file (.edb) of a storage group is wanted, and 'shadowstore status' lists "
            "them; if a store's own file was overwritten, restore that store from a backup",
            file=path,
        )


def _has_data_page(raw: bytes) -> bool:
    """Whether page 2, the first data page, verifies at some page size: then the header pages were damaged in a
    store, rather than the file never being one."""
    for size in PAGE_SIZES:
        page = raw[HEADER_PAGES * size : (HEADER_PAGES + 1) * size]
        if len(page) == size and any(page):
            try:
                verify_page(page, HEADER_PAGES)
            except PageError:
                continue
            return True
    return False


LostWrites = Callable[[str, "DiskIOError"], None]  # (file, error): a write or fsync failed, state is unknown


class DatabaseFile:
    """An open store file with a known page size."""

    def __init__(
        self,
        fs: FileSystem,
        path: str,
        page_size: int,
        events: EventLog,
        sg: str | None,
        on_lost_writes: LostWrites | None = None,
        *,
        readonly: bool = False,
    ) -> None:
        self.fs = fs
        self.path = path
        self.page_size = page_size
        self.events = events
        self.sg = sg
        self.on_lost_writes = on_lost_writes
        self.handle: FileHandle = fs.open(path, readonly=readonly)  # readonly: a shadow copy's store
        self._allocated_bytes = self.handle.size()

    def close(self) -> None:
        self.handle.close()

    # --- headers ---------------------------------------------------------------------------------------

    def write_header(self, header: DbHeader) -> None:
        """Write both header copies durably, primary first. Raises DiskFullError when the primary copy could not
        be written for lack of space (nothing changed), DiskIOError (after ``on_lost_writes``) for any other
        failure."""
        data = header.pack()
        doing = f"writing the header of {self.path}"
        self._write(data, 0, doing)
        self.fs.crash_point("header.after_primary_write")
        self._sync(doing)
        self.fs.crash_point("header.after_primary_sync")
        # why even ENOSPC is final from here: the new primary copy is durable, and the caller, told the write
        # failed, would free the pages it names
        self._write(data, self.page_size, doing, full_is_lost=True)
        self.fs.crash_point("header.after_shadow_write")
        self._sync(doing)

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

    def write_pages(self, pages: list[tuple[int, bytes | bytearray]]) -> None:
        """Write page images (not yet durable): each entry is (first page, the images of one or more pages in a
        row). Adjacent entries are written with one system call, up to ``WRITE_RUN`` bytes joined."""
        size = self.page_size
        pages.sort(key=lambda p: p[0])
        i = 0
        while i < len(pages):
            first, image = pages[i]
            assert len(image) % size == 0 and image, f"page images of {len(image)} bytes"
            end, joined = first + len(image) // size, len(image)
            j = i + 1
            while j < len(pages) and pages[j][0] == end and joined + len(pages[j][1]) <= WRITE_RUN:
                end += len(pages[j][1]) // size
                joined += len(pages[j][1])
                j += 1
            chunk = image if j == i + 1 else b"".join(p[1] for p in pages[i:j])
            self._write(chunk, first * size, f"writing pages of {self.path}")
            i = j

    def ensure_pages(self, page_count: int) -> None:
        """Make the file at least ``page_count`` pages long, growing it in chunks with space reserved."""
        need = page_count * self.page_size
        if need <= self._allocated_bytes:
            return
        target = max(need, self._allocated_bytes + max(GROW_MIN_BYTES, self._allocated_bytes // 8))
        target = (target + self.page_size - 1) // self.page_size * self.page_size
        before = self._allocated_bytes
        try:
            try:
                self.handle.allocate(before, target - before)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or target == need:
                    raise
                self._give_back(before)
                self.handle.allocate(before, need - before)
                target = need
        except OSError as exc:
            self._give_back(before)
            raise _io_error(exc, f"growing {self.path} to {need} bytes") from exc
        self._allocated_bytes = target

    def _give_back(self, size: int) -> None:
        """Cut the file back to ``size`` after a growth that failed: on a full disk the allocation keeps the
        blocks it got (ext4 does), which would leave nothing for the log's reserve, the event log or the other
        stores. Past ``size`` no page was ever written, so nothing is lost."""
        with suppress(OSError):
            if self.handle.size() > size:
                self.handle.truncate(size)

    def sync(self) -> None:
        """Make the pages written so far durable. Raises DiskIOError (after ``on_lost_writes``)."""
        self._sync(f"syncing {self.path}")

    def _write(self, data: bytes | bytearray, offset: int, doing: str, *, full_is_lost: bool = False) -> None:
        try:
            self.handle.pwrite(data, offset)
        except OSError as exc:
            if exc.errno == errno.ENOSPC and not full_is_lost:  # nothing the durable header relies on was touched
                raise DiskFullError(f"no space left while {doing}") from exc
            raise self._lost(exc, doing) from exc

    def _sync(self, doing: str) -> None:
        try:
            self.handle.fdatasync()
        except OSError as exc:
            raise self._lost(exc, doing) from exc

    def _lost(self, exc: OSError, doing: str) -> DiskIOError:
        """The error for a failed write or flush, reported first to ``on_lost_writes``: the file's state on
        disk is unknown from now on, whatever the errno (ENOSPC from fsync loses the writes as EIO does)."""
        error = DiskIOError(
            f"{'no space left' if exc.errno == errno.ENOSPC else 'I/O error'} while {doing}: "
            f"{os.strerror(exc.errno or 0)}; writes to it may be lost"
        )
        if self.on_lost_writes is not None:
            self.on_lost_writes(self.path, error)
        return error

    # --- blobs -----------------------------------------------------------------------------------------

    def blob_pages(self, data: bytes | memoryview, ref: BlobRef, lgpos_u64: int) -> list[tuple[int, bytes | bytearray]]:
        """The run ``ref`` holding ``data`` (pages past the data carry empty payloads) as one entry for
        ``write_pages``: (its first page, the images of all its pages)."""
        if ref.page_count == 0:
            return []
        return [(ref.first_page, pack_blob_run(self.page_size, ref.first_page, lgpos_u64, data, ref.page_count))]

    def read_blob(self, ref: BlobRef) -> bytes:
        """The bytes of a blob, every page verified. Raises ReadVerifyFailureError or DatabaseCorruptedError."""
        return b"".join(self.read_blob_pieces(ref))

    def read_blob_pieces(self, ref: BlobRef) -> list[memoryview]:
        """The bytes of a blob as the payloads of its pages, each a view of one read of the run (no copy: what
        sends a blob on, such as the service's mail socket, hands the views to the kernel as they are). Every
        page is verified first. Raises ReadVerifyFailureError or DatabaseCorruptedError."""
        if ref.page_count == 0:
            return []
        try:
            raw = memoryview(self.handle.pread(self.blob_span(ref), ref.first_page * self.page_size))
        except OSError as exc:
            raise _io_error(exc, f"reading pages {ref.first_page}.. of {self.path}") from exc
        return [raw[at : at + length] for at, length in self._payloads(ref, raw)]

    def read_blob_into(self, ref: BlobRef, buffer: memoryview) -> list[tuple[int, int]]:
        """Read a blob's pages into ``buffer`` (at least ``blob_span(ref)`` bytes), verify them there, and return
        where its bytes are: (offset in ``buffer``, length) of each page's payload, in order. Why: the service
        reads a mailbox for a client into memory they share, and a copy from a buffer of its own into that
        memory was, measured, a third of its reading. Raises ReadVerifyFailureError or DatabaseCorruptedError."""
        if ref.page_count == 0:
            return []
        span = self.blob_span(ref)
        raw = buffer[:span]
        try:
            got = self.handle.pread_into(raw, ref.first_page * self.page_size)
        except OSError as exc:
            raise _io_error(exc, f"reading pages {ref.first_page}.. of {self.path}") from exc
        return self._payloads(ref, raw[:got])

    def blob_span(self, ref: BlobRef) -> int:
        """Bytes of the pages that hold the blob ``ref``."""
        return ref.page_count * self.page_size

    def _payloads(self, ref: BlobRef, raw: memoryview) -> list[tuple[int, int]]:
        """(offset, length) of each page payload of the blob ``ref`` whose pages ``raw`` holds, every page verified
        (all at once, then one by one to name the first that fails and why)."""
        size = self.page_size
        if len(raw) != ref.page_count * size:
            pgno = ref.first_page + len(raw) // size
            raise self.verify_failure(pgno, pgno * size, "the file ends inside a blob", None, None)
        lengths = payload_lengths(raw, ref.first_page, size)
        if lengths is None:  # a page fails: find which, and why
            lengths = []
            for i in range(ref.page_count):
                pgno = ref.first_page + i
                try:
                    lengths.append(verify_page(raw[i * size : (i + 1) * size], pgno).length)
                except PageError as exc:
                    raise self.verify_failure(pgno, pgno * size, str(exc), exc.stored, exc.computed) from None
        total = sum(lengths)
        if total != ref.length:
            raise DatabaseCorruptedError(
                f"{self.path}: blob at page {ref.first_page} holds {total} bytes, its reference says {ref.length}"
            )
        return list(zip(range(PAGE_HEADER.size, len(raw), size), lengths, strict=True))


def _io_error(exc: OSError, doing: str) -> DiskFullError | DiskIOError:
    if exc.errno == errno.ENOSPC:
        return DiskFullError(f"no space left while {doing}")
    return DiskIOError(f"I/O error while {doing}: {os.strerror(exc.errno or 0)}")
