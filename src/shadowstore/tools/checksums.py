"""eseutil /k over ShadowStore's own files: the checksum of every page of a store, of every block and fragment
of a log file, of both copies of a checkpoint file.

A store is read once, front to back, in large blocks (``FileHandle.read_blocks``: O_DIRECT, read ahead on
threads of its own), and each block's pages are checked together by :func:`page_faults`, which does the
per-page work in C (one CRC-32C call per page, the header words compared as lists) and falls back to a page by
page look only in a block that has a bad page. A page that fails is *in use* when the space map of the
durable header marks it so: then it is an error (-1018, naming file, page and byte offset). A page that is not
in use holds an old version or nothing (``uninitialized``: all zeros, never written); a bad checksum there is
harmless (a checkpoint that a crash cut wrote it; it is rewritten before it is used) and is only counted.

The files must not be in use (tools/inuse.py): a process has the file open for writing, or the storage group
the server home's configuration puts it in is mounted. Nothing is ever written.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from shadowstore.engine.dbfile import DatabaseFile, read_header_copies
from shadowstore.engine.logreader import TornTail, scan_generation
from shadowstore.engine.logstream import read_header
from shadowstore.engine.space import page_flags
from shadowstore.errors import (
    CheckpointCorruptError,
    DatabaseCorruptedError,
    FileNotFoundError_,
    InvalidParameterError,
    LogFileCorruptError,
    ReadVerifyFailureError,
    ShadowStoreError,
)
from shadowstore.events import EventLog
from shadowstore.format.checkpoint import CHECKPOINT_COPY_SIZE, CheckpointCopyError, unpack_checkpoint_copy
from shadowstore.format.common import LgPos, crc32c
from shadowstore.format.dbheader import HEADER_PAGES, PAGE_SIZES, BlobRef, DbHeader
from shadowstore.format.logfile import current_log_name
from shadowstore.format.page import TYPE_NAMES, PageError, payload_capacity, verify_page
from shadowstore.io.fs import FileHandle, FileSystem, OsFileSystem, read_file
from shadowstore.tools.esekind import (
    HEAD_SIZE,
    KIND_CHECKPOINT,
    KIND_DATABASE,
    KIND_LOG,
    KIND_UNKNOWN,
    identify,
    is_dir,
)
from shadowstore.tools.eseutil import Report
from shadowstore.tools.inuse import ROLE_CHECKPOINT, ROLE_LOG, ROLE_STORE, refuse_if_in_use

BLOCK_SIZE = 8 << 20  # bytes per read: a multiple of every page size
MAX_LISTED = 100  # bad pages listed one by one (errors and notes); the rest are counted
RESTORE_HINT = (
    "the page is damaged on disk: copy the file aside, then restore the store from a backup ('shadowstore "
    "restore plan', 'shadowstore restore run'); 'eseutil /g' shows which table the page belongs to"
)


ROLE_OF_KIND = {KIND_DATABASE: ROLE_STORE, KIND_LOG: ROLE_LOG, KIND_CHECKPOINT: ROLE_CHECKPOINT}
ROLE_OF_SUFFIX = {".log": ROLE_LOG, ".chk": ROLE_CHECKPOINT}


def check_file(
    path: str, home: str | None = None, fs: FileSystem | None = None
) -> StoreChecksums | LogChecksums | CheckpointChecksums:
    """eseutil /k on one of our files: a store, a log file or a checkpoint file, told apart by their first
    bytes (by the name when those are damaged). Refuses a file in use (``refuse_if_in_use``, with the server
    home ``home`` to find its storage group). Raises FileNotFoundError_, InvalidParameterError for a folder or
    a file that is not ours (a real Windows ESE file included), StorageGroupBusyError."""
    fs = fs or OsFileSystem()
    role = file_role(fs, path)
    refuse_if_in_use(fs, path, home, role)
    if role == ROLE_LOG:
        return check_log(path, fs)
    if role == ROLE_CHECKPOINT:
        return check_checkpoint(path, fs)
    return check_store(path, fs)


def file_role(fs: FileSystem, path: str) -> str:
    """``ROLE_STORE``, ``ROLE_LOG`` or ``ROLE_CHECKPOINT`` for one of our files; raises as check_file says."""
    if not fs.exists(path):
        raise FileNotFoundError_(f"{path} does not exist", file=path)
    if is_dir(fs, path):
        raise InvalidParameterError(f"{path} is a folder; name a store (.edb), log (.log) or checkpoint (.chk) file")
    handle = fs.open(path, readonly=True)
    try:
        kind = identify(handle.pread(HEAD_SIZE, 0))
    finally:
        handle.close()
    if kind in ROLE_OF_KIND:
        return ROLE_OF_KIND[kind]
    if kind != KIND_UNKNOWN:
        raise InvalidParameterError(
            f"{path} is a {kind}, not a ShadowStore file: these checks read ShadowStore's own files only",
            hint="'eseutil /mh' reads the header of a real ESE database",
            file=path,
        )
    return ROLE_OF_SUFFIX.get(path[path.rfind(".") :].lower() if "." in os.path.basename(path) else "", ROLE_STORE)


# --- one block of pages --------------------------------------------------------------------------------------


def page_faults(block: bytes | memoryview, first: int, page_size: int) -> list[tuple[int, str]]:
    """(page number, problem) of every whole page of ``block`` (page ``first`` first) that fails
    :func:`verify_page` or is all zeros (problem ``"uninitialized"``), in page order; [] when all pass.

    The checks are made on all the pages at once (as format.page.first_bad_page does), so that the per-page
    work runs in C; only a block with a failing page is looked at page by page."""
    view = memoryview(block).cast("B")
    count = len(view) // page_size
    view = view[: count * page_size]
    suspects: range | list[int] = range(count)
    if sys.byteorder == "little":  # the fast path reads the header words in native order
        words = view.cast("I")
        step = page_size // 4
        stored = words[0::step].tolist()
        computed = [crc32c(view[at + 4 : at + page_size]) for at in range(0, count * page_size, page_size)]
        numbers = words[1::step].tolist()
        lengths = words[5::step].tolist()
        types = view[16::page_size].tobytes()
        capacity = payload_capacity(page_size)
        in_place = numbers == list(range(first, first + count))
        if stored == computed and in_place and max(lengths, default=0) <= capacity and TYPE_NAMES.keys() >= set(types):
            return []
        suspects = [
            i
            for i in range(count)
            if stored[i] != computed[i]
            or numbers[i] != first + i
            or lengths[i] > capacity
            or types[i] not in TYPE_NAMES
        ]
    faults = []
    for i in suspects:
        problem = _problem(view[i * page_size : (i + 1) * page_size], first + i)
        if problem is not None:
            faults.append((first + i, problem))
    return faults


def _problem(page: memoryview, pgno: int) -> str | None:
    if page.tobytes().count(0) == len(page):
        return "uninitialized"
    try:
        verify_page(page, pgno)
    except PageError as exc:
        return str(exc)
    return None


# --- stores --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadPage:
    pgno: int
    offset: int
    problem: str
    in_use: bool | None  # None: unknown (the space map could not be read)


@dataclass
class StoreChecksums(Report):
    """What /k found in a store file. ``seen`` counts every page (the two header pages included)."""

    path: str
    page_size: int
    header: DbHeader | None  # None when both header copies are damaged
    seen: int = 0
    bad_checksums: int = 0  # pages in use (or of unknown use) failing their checksum, header copies included
    wrong_page_numbers: int = 0  # pages in use whose checksum is right but whose number is not their place
    uninitialized: int = 0  # all-zero pages (pages in use among them are also errors)
    free_damaged: int = 0  # pages not in use that fail their checks: harmless, rewritten before use
    bad_pages: list[BadPage] = field(default_factory=list)  # the first MAX_LISTED, in use or not
    highest_lgpos: LgPos | None = None
    highest_lgpos_pgno: int = 0
    reads: int = 0
    bytes_read: int = 0
    seconds: float = 0.0


def check_store(path: str, fs: FileSystem | None = None) -> StoreChecksums:
    """Check every page of the store file ``path`` (eseutil /k). Damaged pages in use are ``errors``
    (ReadVerifyFailureError, -1018, naming the page and its byte offset); one damaged header copy is a warning.

    Raises InvalidParameterError when the file is not a store, DatabaseCorruptedError when both header
    copies are damaged and no data page shows the page size."""
    fs = fs or OsFileSystem()
    started = time.monotonic()
    header, page_size, used = _header_and_space(fs, path)
    dump = StoreChecksums(path, page_size, header)
    handle = fs.open(path, readonly=True)
    try:
        _check_header_copies(fs, path, dump)
        _scan_pages(handle, dump, used)
    finally:
        handle.close()
    dump.seconds = time.monotonic() - started
    if dump.free_damaged:
        dump.notes.append(
            f"{dump.free_damaged} page(s) not in use fail their checks: harmless (old or torn versions that a "
            "crash during a checkpoint can leave; they are rewritten before they are used)"
        )
    return dump


def _header_and_space(fs: FileSystem, path: str) -> tuple[DbHeader | None, int, bytearray | None]:
    """The header (None if both copies are damaged), the page size, and a byte per page, 1 for pages in use
    (None when unknown)."""
    try:
        header = read_header_copies(fs, path).header
    except DatabaseCorruptedError:
        page_size = _page_size_from_data(fs, path)
        if page_size is None:
            raise
        return None, page_size, None
    try:
        return header, header.page_size, read_used_flags(fs, path, header)
    except ShadowStoreError:
        return header, header.page_size, None


def _page_size_from_data(fs: FileSystem, path: str) -> int | None:
    """The page size at which the first data page verifies (both header copies being damaged)."""
    handle = fs.open(path, readonly=True)
    try:
        for size in PAGE_SIZES:
            page = handle.pread(size, HEADER_PAGES * size)
            if len(page) == size and _problem(memoryview(page), HEADER_PAGES) is None:
                return size
    finally:
        handle.close()
    return None


def _check_header_copies(fs: FileSystem, path: str, dump: StoreChecksums) -> None:
    dump.seen += HEADER_PAGES
    if dump.header is None:
        dump.bad_checksums += HEADER_PAGES
        dump.errors.append(
            DatabaseCorruptedError(f"{path}: both header copies (pages 0 and 1) are damaged", file=path, pgno=0)
        )
        dump.warnings.append("the space map could not be read: every page not all zeros was checked as in use")
        return
    for copy, problem in read_header_copies(fs, path).damaged:
        dump.bad_checksums += 1
        offset = copy * dump.page_size
        dump.bad_pages.append(BadPage(copy, offset, problem, True))
        dump.warnings.append(f"header copy {copy} (page {copy}, offset {offset}) is damaged: {problem}")


def _scan_pages(handle: FileHandle, dump: StoreChecksums, used: bytearray | None) -> None:
    page_size = dump.page_size
    size = handle.size()
    end = size - size % page_size
    if size % page_size:
        dump.warnings.append(f"the file ends {size % page_size} bytes into page {end // page_size} (at offset {end})")
    if dump.header is not None and dump.header.page_count * page_size > end:
        dump.errors.append(
            DatabaseCorruptedError(
                f"{dump.path}: the file has {end // page_size} pages, its header says {dump.header.page_count}",
                hint="the file was cut short: restore the store from a backup",
                file=dump.path,
            )
        )
    lgpos_at = 8 // 8  # the page LGPOS: u64 number 1 of each page
    with handle.read_blocks(HEADER_PAGES * page_size, end, BLOCK_SIZE) as blocks:
        for block in blocks:
            try:
                first = block.offset // page_size
                data = block.data
                count = len(data) // page_size
                faults = page_faults(data, first, page_size)
                flags = (
                    None if used is None else used[first : first + count].ljust(count, b"\0")
                )  # past the extent: free
                _record(dump, faults, flags, first)
                bad = {pgno for pgno, _problem in faults}
                lgposes = memoryview(data).cast("B")[: count * page_size].cast("Q")[lgpos_at :: page_size // 8]
                _note_lgpos(dump, lgposes.tolist(), flags, first, bad)
                dump.seen += count
                dump.reads += 1
                dump.bytes_read += len(data)
            finally:
                block.release()


def _record(dump: StoreChecksums, faults: list[tuple[int, str]], flags: bytearray | None, first: int) -> None:
    for pgno, problem in faults:
        index = pgno - first
        in_use = None if flags is None else index < len(flags) and bool(flags[index])
        zero = problem == "uninitialized"
        if zero:
            dump.uninitialized += 1
        if in_use is False or (in_use is None and zero):
            dump.free_damaged += not zero
            if not zero and len(dump.bad_pages) < MAX_LISTED:
                dump.bad_pages.append(BadPage(pgno, pgno * dump.page_size, problem, in_use))
            continue
        if problem.startswith("page claims"):
            dump.wrong_page_numbers += 1
        elif not zero:
            dump.bad_checksums += 1
        offset = pgno * dump.page_size
        if len(dump.bad_pages) < MAX_LISTED:
            dump.bad_pages.append(BadPage(pgno, offset, problem, in_use))
            dump.errors.append(
                ReadVerifyFailureError(
                    f"{dump.path}: page {pgno} at offset {offset} ({dump.page_size} bytes) failed verification: "
                    f"{'it is in use but all zeros' if zero else problem}",
                    hint=RESTORE_HINT,
                    file=dump.path,
                    pgno=pgno,
                    offset=offset,
                )
            )


def _note_lgpos(dump: StoreChecksums, lgposes: list[int], flags: bytearray | None, first: int, bad: set[int]) -> None:
    """Keep the highest LGPOS of a valid page in use (eseutil's "highest dbtime")."""
    if bad or (flags is not None and flags.count(1) != len(lgposes)):
        lgposes = [lg if (flags is None or flags[i]) and first + i not in bad else 0 for i, lg in enumerate(lgposes)]
    top = max(lgposes, default=0)
    if top and (dump.highest_lgpos is None or top > dump.highest_lgpos.pack_u64()):
        dump.highest_lgpos = LgPos.from_u64(top)
        dump.highest_lgpos_pgno = first + lgposes.index(top)


def read_used_flags(fs: FileSystem, path: str, header: DbHeader) -> bytearray:
    """A byte per page of the header's extent, 1 where its space map marks the page in use. Raises
    ReadVerifyFailureError or DatabaseCorruptedError when the space map cannot be read."""
    return page_flags(header.page_count, read_space_map(fs, path, header))


def read_space_map(fs: FileSystem, path: str, header: DbHeader) -> bytes:
    """The space-map bitmap the header names (b"" for a new store, whose only pages are the headers)."""
    return b"" if header.space_map.is_empty else read_blob(fs, path, header, header.space_map)


def read_blob(fs: FileSystem, path: str, header: DbHeader, ref: BlobRef) -> bytes:
    """The bytes of a blob of the store, every page verified (engine/dbfile.py, no event emitted)."""
    file = DatabaseFile(fs, path, header.page_size, EventLog(None), None, readonly=True)
    try:
        return file.read_blob(ref)
    finally:
        file.close()


# --- log files and checkpoint files ------------------------------------------------------------------------


@dataclass
class LogChecksums(Report):
    """What /k found in a log file: its header, then every flush block and fragment up to the end of the log."""

    path: str
    generation: int | None  # None when the header is damaged
    current: bool  # the current log (<base>.log): a torn last flush is its normal end after a crash
    blocks: int = 0
    fragments: int = 0
    torn: TornTail | None = None
    bytes_read: int = 0
    seconds: float = 0.0


def check_log(path: str, fs: FileSystem | None = None) -> LogChecksums:
    """Check the header, block and fragment checksums of one log file. A damaged header or a damaged block
    before the end of the log is an error (LogFileCorruptError, -501, naming the offset); a torn last flush
    is a note in the current log and an error in a closed one."""
    fs = fs or OsFileSystem()
    started = time.monotonic()
    data = read_file(fs, path)
    try:
        header = read_header(fs, path)
    except LogFileCorruptError as exc:
        dump = LogChecksums(path, None, False, bytes_read=len(data), errors=[exc])
        dump.seconds = time.monotonic() - started
        return dump
    current = os.path.basename(path) == current_log_name(header.base)
    dump = LogChecksums(path, header.generation, current, bytes_read=len(data))
    try:
        scan = scan_generation(path, data, header, tolerate_torn_tail=current)
    except LogFileCorruptError as exc:
        dump.errors.append(exc)
    else:
        dump.blocks, dump.fragments, dump.torn = scan.blocks, len(scan.fragments), scan.torn
        if scan.torn is not None:
            dump.notes.append(
                f"the last flush, at offset {scan.torn.offset}, is torn ({scan.torn.dropped} bytes: "
                f"{scan.torn.reason}): the normal end of the current log after a crash; nothing in it was "
                "acknowledged"
            )
    dump.seconds = time.monotonic() - started
    return dump


@dataclass(frozen=True)
class CopyState:
    copy: int
    offset: int
    problem: str | None  # None: valid
    sequence: int | None


@dataclass
class CheckpointChecksums(Report):
    """Both copies of a checkpoint file: one damaged copy is a warning, both an error (-533)."""

    path: str
    copies: list[CopyState]


def check_checkpoint(path: str, fs: FileSystem | None = None) -> CheckpointChecksums:
    fs = fs or OsFileSystem()
    data = read_file(fs, path)
    copies = []
    for copy in range(2):
        offset = copy * CHECKPOINT_COPY_SIZE
        try:
            chk = unpack_checkpoint_copy(data[offset : offset + CHECKPOINT_COPY_SIZE], offset)
        except CheckpointCopyError as exc:
            copies.append(CopyState(copy, offset, str(exc), None))
        else:
            copies.append(CopyState(copy, offset, None, chk.sequence))
    dump = CheckpointChecksums(path, copies)
    damaged = [c for c in copies if c.problem is not None]
    if len(damaged) == len(copies):
        detail = "; ".join(f"copy {c.copy} (offset {c.offset}): {c.problem}" for c in damaged)
        dump.errors.append(
            CheckpointCorruptError(
                f"{path}: both checkpoint copies are damaged: {detail}",
                hint="the checkpoint is rebuilt from the store headers at the next mount (event 1031)",
                file=path,
            )
        )
    else:
        dump.warnings += [f"checkpoint copy {c.copy} (offset {c.offset}) is damaged: {c.problem}" for c in damaged]
    return dump
