"""eseutil /g over a ShadowStore store file: the integrity of its B+trees, blobs, catalog and free space.

One pass reads every page of the durable header's extent in large blocks (the same reader and per-block
checks as /k, tools/checksums.py); pages in use that fail verification are errors, leaf and branch pages in
use are decoded and checked on their own (keys strictly ascending, a payload that parses), and are kept as
small summaries (first and last key, children and separators, blob references). Then, with no further reads
but for a page the space map wrongly calls free, every reference is followed from the header:

* the catalog and space-map blobs it names, and each table of the catalog (unique ids and names, ids below
  the next table id), from its root page down: every key of a page within the range its parent's separators
  give it (the ordering across pages), every leaf at the same depth, every child a tree page, every blob
  reference a run of blob pages inside the file whose payloads add up to the value's length;
* every page reached exactly once (the format has no sibling links: the parent ranges are the cross-page
  check), never a header page or a page past the end of the store, and marked in use by the space map; and
  every page the space map marks in use reached ("lost" otherwise), none past the page count.

Problems are ``errors`` (DatabaseCorruptedError -1206, ReadVerifyFailureError -1018) naming the file, page and
byte offset, and counted per table. The file is only read; a store in use is refused (checksums.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from shadowstore.engine.dbfile import read_header_copies
from shadowstore.engine.space import page_flags
from shadowstore.errors import DatabaseCorruptedError, ReadVerifyFailureError, ShadowStoreError
from shadowstore.format.catalog import CatalogEntry, CatalogError, unpack_catalog
from shadowstore.format.dbheader import HEADER_PAGES, STATE_DIRTY_SHUTDOWN, BlobRef, DbHeader
from shadowstore.format.page import (
    PAGE_HEADER,
    TYPE_BLOB,
    TYPE_BRANCH,
    TYPE_LEAF,
    TYPE_NAMES,
    PageError,
    PageHeader,
    unpack_branch,
    unpack_leaf,
    verify_page,
)
from shadowstore.io.fs import FileHandle, FileSystem, OsFileSystem
from shadowstore.tools.checksums import (
    BLOCK_SIZE,
    MAX_LISTED,
    RESTORE_HINT,
    file_role,
    page_faults,
    read_blob,
    read_space_map,
)
from shadowstore.tools.eseutil import Report
from shadowstore.tools.inuse import ROLE_STORE, refuse_if_in_use

STRUCTURE_HINT = (
    "the store's structure is damaged: copy the file aside and restore the store from a backup ('shadowstore "
    "restore plan', 'shadowstore restore run')"
)


@dataclass(frozen=True)
class LeafSummary:
    entries: int
    first: bytes | None
    last: bytes | None
    blobs: list[tuple[int, BlobRef]]  # (entry index, reference)


@dataclass(frozen=True)
class BranchSummary:
    keys: list[bytes]
    children: list[int]


Summary = LeafSummary | BranchSummary


@dataclass
class TableResult:
    name: str
    table_id: int
    root: int
    depth: int = 0  # levels: 1 for a root that is a leaf
    leaf_pages: int = 0
    branch_pages: int = 0
    entries: int = 0
    blobs: int = 0
    blob_pages: int = 0
    problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class IntegrityDump(Report):
    """What /g found. ``problems`` counts every problem; ``errors`` holds the first MAX_LISTED."""

    path: str
    header: DbHeader
    pages_in_file: int = 0
    used_pages: int = 0  # marked in use by the space map (the two header pages included)
    reached_pages: int = 0  # reached from the header (the two header pages included)
    lost_pages: list[int] = field(default_factory=list)  # in use, reached by nothing
    free_and_used: list[int] = field(default_factory=list)  # reached, but marked free
    system_problems: int = 0  # problems outside the tables: catalog, space map, accounting
    tables: list[TableResult] = field(default_factory=list)
    problems: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def page_size(self) -> int:
        return self.header.page_size

    @property
    def free_pages(self) -> int:
        return self.header.page_count - self.used_pages


def check_integrity(path: str, home: str | None = None, fs: FileSystem | None = None) -> IntegrityDump:
    """Check the structure of the store file ``path`` (eseutil /g); problems are collected in the report.

    Raises FileNotFoundError_, InvalidParameterError (not a store), StorageGroupBusyError (in use: see
    checksums.refuse_if_in_use, with the server home ``home``), DatabaseCorruptedError (both header copies
    damaged)."""
    fs = fs or OsFileSystem()
    started = time.monotonic()
    if file_role(fs, path) != ROLE_STORE:
        raise DatabaseCorruptedError(f"{path} is not a store file; eseutil /g checks stores (.edb)", file=path)
    refuse_if_in_use(fs, path, home, ROLE_STORE)
    header = read_header_copies(fs, path).header
    check = _Check(fs, path, header)
    try:
        check.run()
    finally:
        check.handle.close()
    dump = check.dump
    if header.state == STATE_DIRTY_SHUTDOWN:
        dump.notes.append(
            "the store is in Dirty Shutdown: this check covers its state at the header's replay start; data from "
            "the log files is not yet in it (run 'eseutil /r <log base>' to replay them)"
        )
    dump.seconds = time.monotonic() - started
    return dump


class _Check:
    """One integrity check: the scan, then the walk from the header."""

    def __init__(self, fs: FileSystem, path: str, header: DbHeader) -> None:
        self.fs, self.path, self.header = fs, path, header
        self.page_size = header.page_size
        self.count = header.page_count
        self.dump = IntegrityDump(path, header)
        self.handle: FileHandle = fs.open(path, readonly=True)
        self.used = bytearray(self.count)
        self.types = bytearray(self.count)  # page type of each valid page read; 0 unread or damaged
        self.lengths = [0] * self.count  # payload length of each valid page read
        self.summaries: dict[int, Summary] = {}
        self.bad: set[int] = set()
        self.owner: list[str | None] = [None] * self.count
        self.table: TableResult | None = None  # whose pages are being walked
        self.scanning = False
        self.unowned: dict[int, int] = {}  # problems the scan found in a page, by page, until it is reached

    def run(self) -> None:
        size = self.handle.size()
        self.dump.pages_in_file = size // self.page_size
        if self.count > self.dump.pages_in_file:
            self.problem(None, f"the file has {self.dump.pages_in_file} pages, its header says {self.count}")
        try:
            bitmap = read_space_map(self.fs, self.path, self.header)
        except ShadowStoreError as exc:
            self.problem(None, f"the space map cannot be read ({exc.message}); the structure was not checked")
            return
        self.used = page_flags(self.count, bitmap)
        beyond = [p for p in range(self.count, len(bitmap) * 8) if bitmap[p >> 3] >> (p & 7) & 1]
        if beyond:
            self.problem(
                None, f"the space map marks page(s) {_ranges(beyond)} in use, past the page count {self.count}"
            )
        self.dump.used_pages = self.used.count(1)
        catalog = self._catalog()
        self.scanning = True
        self._scan(min(self.count, self.dump.pages_in_file))
        self.scanning = False
        for pgno in range(min(HEADER_PAGES, self.count)):
            self.owner[pgno] = "the database header"
        self.claim_blob(self.header.space_map, "the space map")
        self.claim_blob(self.header.catalog, "the catalog")
        for entry in catalog:
            self._walk_table(entry)
        self.table = None
        self.dump.system_problems += sum(self.unowned.values())
        self._account()

    # --- problems ------------------------------------------------------------------------------------------

    def problem(self, pgno: int | None, text: str, *, damaged: bool = False) -> None:
        """Count a problem (for the table being walked, else the system) and keep its error."""
        self.dump.problems += 1
        if self.table is not None:
            self.table.problems += 1
        elif self.scanning and pgno is not None:
            self.unowned[pgno] = self.unowned.get(pgno, 0) + 1  # the table that reaches the page gets it
        else:
            self.dump.system_problems += 1
        if len(self.dump.errors) >= MAX_LISTED:
            return
        where = f"page {pgno} at offset {pgno * self.page_size}: " if pgno is not None else ""
        table = f" (table {self.table.name!r})" if self.table is not None else ""
        details = {"pgno": pgno, "offset": pgno * self.page_size} if pgno is not None else {}
        kind = ReadVerifyFailureError if damaged else DatabaseCorruptedError
        error = kind(
            f"{self.path}: {where}{text}{table}", hint=RESTORE_HINT if damaged else STRUCTURE_HINT, file=self.path
        )
        error.details.update(details)
        self.dump.errors.append(error)

    # --- the scan ------------------------------------------------------------------------------------------

    def _catalog(self) -> list[CatalogEntry]:
        try:
            next_id, entries = unpack_catalog(read_blob(self.fs, self.path, self.header, self.header.catalog))
        except (ShadowStoreError, CatalogError) as exc:
            text = exc.message if isinstance(exc, ShadowStoreError) else str(exc)
            self.problem(self.header.catalog.first_page, f"the catalog cannot be read: {text}")
            return []
        ids = [e.table_id for e in entries]
        names = [e.name for e in entries]
        for entry in entries:
            if ids.count(entry.table_id) > 1 or names.count(entry.name) > 1:
                self.problem(None, f"the catalog lists table id {entry.table_id} / name {entry.name!r} twice")
            if entry.table_id >= next_id:
                self.problem(None, f"table {entry.name!r} has id {entry.table_id}, not below next id {next_id}")
        return entries

    def _scan(self, end_page: int) -> None:
        """Read pages [2, end_page): verify each, note types and lengths, summarize tree pages in use."""
        page_size = self.page_size
        if end_page <= HEADER_PAGES:
            return
        with self.handle.read_blocks(HEADER_PAGES * page_size, end_page * page_size, BLOCK_SIZE) as blocks:
            for block in blocks:
                try:
                    self._scan_block(block.offset // page_size, memoryview(block.data))
                    self.dump.bytes_read += len(block.data)
                finally:
                    block.release()

    def _scan_block(self, first: int, data: memoryview) -> None:
        page_size = self.page_size
        count = len(data) // page_size
        view = data.cast("B")[: count * page_size]
        faults = dict(page_faults(view, first, page_size))
        self.types[first : first + count] = view[16::page_size].tobytes()
        self.lengths[first : first + count] = view.cast("I")[5 :: page_size // 4].tolist()
        used = self.used
        for pgno in faults:
            self.types[pgno] = 0
            self.bad.add(pgno)
            if used[pgno]:
                self.problem(pgno, f"failed verification: {faults[pgno]}", damaged=True)
        for i in range(count):
            pgno = first + i
            if used[pgno] and self.types[pgno] in (TYPE_LEAF, TYPE_BRANCH) and pgno not in faults:
                page = view[i * page_size : (i + 1) * page_size].tobytes()
                _crc, _pgno, lgpos, page_type, _flags, items, length = PAGE_HEADER.unpack_from(page, 0)
                self._summarize(pgno, page, PageHeader(pgno, lgpos, page_type, items, length))

    def _summarize(self, pgno: int, page: bytes, head: PageHeader) -> Summary | None:
        try:
            if head.type == TYPE_LEAF:
                keys, values = unpack_leaf(page, head)
                blobs = [(i, v) for i, v in enumerate(values) if isinstance(v, BlobRef)]
                summary: Summary = LeafSummary(len(keys), keys[0] if keys else None, keys[-1] if keys else None, blobs)
            else:
                keys, children = unpack_branch(page, head)
                summary = BranchSummary(keys, children)
        except PageError as exc:
            self.problem(pgno, f"{TYPE_NAMES[head.type]} page does not parse: {exc}")
            return None
        for i in range(len(keys) - 1):
            if not keys[i] < keys[i + 1]:
                what = "keys" if head.type == TYPE_LEAF else "separator keys"
                self.problem(pgno, f"{what} out of order: entry {i} {keys[i]!r} >= entry {i + 1} {keys[i + 1]!r}")
                break
        self.summaries[pgno] = summary
        return summary

    def _load(self, pgno: int) -> Summary | None:
        """The summary of a tree page the scan did not keep (marked free): read it now."""
        page = self.handle.pread(self.page_size, pgno * self.page_size)
        try:
            head = verify_page(page, pgno)
        except PageError as exc:
            self.problem(pgno, f"is referred to, but is not a valid page: {exc}", damaged=True)
            return None
        self.types[pgno], self.lengths[pgno] = head.type, head.length
        if head.type not in (TYPE_LEAF, TYPE_BRANCH):
            return None
        return self._summarize(pgno, page, head)

    # --- the walk ------------------------------------------------------------------------------------------

    def claim(self, pgno: int, who: str) -> bool:
        """Mark ``pgno`` reached by ``who``; False (after the problem) when it cannot be used."""
        if not HEADER_PAGES <= pgno < self.count:
            what = "a header page" if pgno < HEADER_PAGES else f"past the last page of the store ({self.count - 1})"
            self.problem(None, f"{who} refers to page {pgno}, {what}: a dangling reference")
            return False
        if self.owner[pgno] is not None:
            self.problem(pgno, f"is reached twice: from {who} and from {self.owner[pgno]}")
            return False
        self.owner[pgno] = who
        if self.table is not None:
            self.table.problems += self.unowned.pop(pgno, 0)
        if not self.used[pgno]:
            self.dump.free_and_used.append(pgno)
            self.problem(
                pgno, f"is used by {who} but the space map marks it free: the next checkpoint may overwrite it"
            )
            if pgno not in self.bad and pgno not in self.summaries:
                self._load(pgno)
        return pgno not in self.bad

    def claim_blob(self, ref: BlobRef, who: str) -> None:
        """Claim the run of blob pages ``ref`` names; its payloads must add up to its length."""
        if ref.is_empty:
            return
        last = ref.first_page + ref.page_count - 1
        if ref.first_page < HEADER_PAGES or last >= self.count:
            self.problem(
                None,
                f"{who} refers to pages {ref.first_page}-{last}, outside the store's pages 2-{self.count - 1}: "
                "a dangling reference",
            )
            return
        whole = True
        for pgno in range(ref.first_page, last + 1):  # why every page: a page left unclaimed would show as lost
            if not self.claim(pgno, who):
                whole = False
            elif self.types[pgno] != TYPE_BLOB:
                self.problem(pgno, f"is a {_type_name(self.types[pgno])} page, but {who} needs a blob page")
                whole = False
        total = sum(self.lengths[ref.first_page : last + 1])
        if whole and total != ref.length:
            held = f"its {ref.page_count} pages hold {total} bytes, its reference says {ref.length}"
            self.problem(ref.first_page, f"{who}: {held}")

    def _walk_table(self, entry: CatalogEntry) -> None:
        table = self.table = TableResult(entry.name, entry.table_id, entry.root_page)
        self.dump.tables.append(table)
        leaf_depth: int | None = None
        stack: list[tuple[int, bytes | None, bytes | None, int, str]] = [
            (entry.root_page, None, None, 1, "the catalog")
        ]
        while stack:
            pgno, low, high, depth, parent = stack.pop()
            if not self.claim(pgno, f"table {entry.name!r} ({parent})"):
                continue
            node = self.summaries.get(pgno)
            if node is None:
                if self.types[pgno] not in (TYPE_LEAF, TYPE_BRANCH):
                    self.problem(pgno, f"is a {_type_name(self.types[pgno])} page, but {parent} needs a tree page")
                continue  # a tree page that did not parse: already reported
            table.depth = max(table.depth, depth)
            if isinstance(node, BranchSummary):
                table.branch_pages += 1
                self._check_range(pgno, node.keys[:1] + node.keys[-1:], low, high)
                bounds = [low, *node.keys, high]
                for i in reversed(range(len(node.children))):
                    stack.append((node.children[i], bounds[i], bounds[i + 1], depth + 1, f"child {i} of page {pgno}"))
                continue
            if leaf_depth is None:
                leaf_depth = depth
            elif depth != leaf_depth:
                self.problem(pgno, f"is a leaf at depth {depth}, other leaves of the tree are at depth {leaf_depth}")
            table.leaf_pages += 1
            table.entries += node.entries
            self._check_range(pgno, [k for k in (node.first, node.last) if k is not None], low, high)
            for index, ref in node.blobs:
                table.blobs += 1
                table.blob_pages += ref.page_count
                self.claim_blob(ref, f"table {entry.name!r} (entry {index} of page {pgno})")

    def _check_range(self, pgno: int, keys: list[bytes], low: bytes | None, high: bytes | None) -> None:
        """The first and last key of a page must lie in [low, high), the range its parent gives it."""
        if keys and low is not None and keys[0] < low:
            self.problem(pgno, f"key {keys[0]!r} is below {low!r}, the lowest key its parent allows here")
        if keys and high is not None and keys[-1] >= high:
            self.problem(pgno, f"key {keys[-1]!r} is not below {high!r}, the separator after it in its parent")

    # --- free space ----------------------------------------------------------------------------------------

    def _hidden_by_damage(self) -> str:
        """Why pages may look lost: the children of a damaged tree page cannot be followed."""
        damaged = sorted(p for p in self.bad if self.used[p] and self.owner[p] is not None)
        if not damaged:
            return ""
        return f" (some may lie below damaged page(s) {_ranges(damaged)}, whose references cannot be read)"

    def _account(self) -> None:
        reached = [owner is not None for owner in self.owner]
        self.dump.reached_pages = sum(reached)
        lost = [p for p in range(HEADER_PAGES, self.count) if self.used[p] and not reached[p]]
        self.dump.lost_pages = lost
        if lost:
            shown = _ranges(lost)
            self.problem(
                lost[0],
                f"{len(lost)} page(s) are marked in use by the space map but nothing refers to them (lost space): "
                f"{shown}{self._hidden_by_damage()}",
            )


def _type_name(page_type: int) -> str:
    return TYPE_NAMES.get(page_type, "damaged or unknown")


def _ranges(pages: list[int], limit: int = 20) -> str:
    """'3-5, 9, 12-20' for the first ``limit`` runs of a sorted page list."""
    runs: list[list[int]] = []
    for page in pages:
        if runs and page == runs[-1][1] + 1:
            runs[-1][1] = page
        else:
            runs.append([page, page])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:limit])
    return text + (f" and {len(runs) - limit} more runs" if len(runs) > limit else "")
