"""``backup verify``: prove, by reading only, that a backup set is whole, undamaged and restorable.

Checked: every file's stored and original sizes and sha256; every database page (valid for its number, or all
zeros: a free page); every log generation (header, stream, blocks); the log chain (contiguous generations, one
log signature, previous-generation creation times); that the set holds every generation its databases need; and
for incremental and differential sets, that the sets they build on are present, complete and without gaps. All
problems are collected; only an unusable manifest stops the check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import zstandard

from shadowstore.backup.catalog import SetInfo, find_set, list_sets
from shadowstore.backup.lease import LEASE_NAME
from shadowstore.backup.manifest import MANIFEST_NAME, DatabaseEntry, FileEntry, Manifest
from shadowstore.backup.setfiles import BackgroundHash, original_chunks, read_ahead
from shadowstore.backup.target import Target
from shadowstore.backup.verified import VERIFIED_NAME
from shadowstore.engine.logreader import scan_generation
from shadowstore.errors import BackupTargetNotFoundError, LogFileCorruptError
from shadowstore.format import dbheader
from shadowstore.format.common import crc32c
from shadowstore.format.dbheader import DbHeader, DbHeaderError
from shadowstore.format.logfile import LogHeader, LogHeaderError, archived_log_name, unpack_log_header
from shadowstore.format.page import PageError, first_bad_page, verify_page

READ_CHUNK = 8 << 20  # bytes per read from the target
MAX_PAGE_PROBLEMS = 20  # per file; the rest are counted in one more problem
BASE_KINDS = {"incremental": ("full", "incremental"), "differential": ("full",)}

# progress(file name, stored bytes of it read so far, its stored size)
VerifyProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Problem:
    kind: str  # missing, size, hash, page, header, log, signature, chain, coverage, base, manifest, incomplete...
    file: str | None  # name inside the set folder (or a backup id for base problems)
    detail: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        return f"{self.file}: {self.detail}" if self.file else self.detail


@dataclass
class VerifyReport:
    """What ``verify_set`` found. ``ok`` is False when any problem is an error (warnings do not count)."""

    target: str
    sg: str
    backup_id: str
    kind: str
    home: str = ""
    problems: list[Problem] = field(default_factory=list)
    files: int = 0  # files read completely
    bytes: int = 0  # original bytes verified
    stored_bytes: int = 0
    pages: int = 0  # database pages checked (header pages included)
    free_pages: int = 0  # all-zero pages accepted as free
    logs: int = 0  # log generations parsed and scanned

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, kind: str, file: str | None, detail: str) -> None:
        self.problems.append(Problem(kind, file, detail))

    def warn(self, kind: str, file: str | None, detail: str) -> None:
        self.problems.append(Problem(kind, file, detail, "warning"))

    def to_dict(self) -> dict[str, object]:
        counts = {k: getattr(self, k) for k in ("files", "bytes", "stored_bytes", "pages", "free_pages", "logs")}
        return {
            "target": self.target,
            "home": self.home,
            "sg": self.sg,
            "id": self.backup_id,
            "kind": self.kind,
            "ok": self.ok,
            **counts,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [asdict(p) for p in self.problems],
        }


def verify_set(
    target: Target, backup_id: str, *, home: str | None = None, progress: VerifyProgress | None = None
) -> VerifyReport:
    """Verify backup set ``backup_id`` of ``target``; returns the report (read only: nothing is written).

    A set without a usable manifest is reported (incomplete, or the manifest's problem) and none of its files
    is read. Raises BackupTargetNotFoundError when there is no such set, BackupTargetError when the target
    itself fails.
    """
    info = find_set(target, backup_id, home=home)
    sets = list_sets(target, info.sg, home=info.home)
    report = VerifyReport(target.url, info.sg, backup_id, info.kind, info.home)
    if info.manifest is None:
        kind = "manifest" if MANIFEST_NAME in info.files else "incomplete"
        report.error(kind, MANIFEST_NAME, f"{info.problem}; the set cannot be used")
        return report
    manifest = info.manifest
    for entry in manifest.files:
        if entry.name not in info.files:
            report.error("missing", entry.name, f"the manifest lists {entry.source!r} but the set has no such file")
    for name in sorted(set(info.files) - {f.name for f in manifest.files} - {MANIFEST_NAME, LEASE_NAME, VERIFIED_NAME}):
        report.warn("extra", name, "a file in the set folder that the manifest does not list (ignored)")
    headers: dict[str, LogHeader] = {}
    for entry in manifest.files:
        if entry.name in info.files:
            _verify_file(report, _Source(target, info.folder, manifest, progress), entry, headers)
    _check_log_chain(report, manifest, headers)
    _check_coverage(report, manifest)
    if manifest.kind in BASE_KINDS:
        _check_base_chain(report, manifest, sets)
    return report


# --- one file ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    target: Target
    folder: str
    manifest: Manifest
    progress: VerifyProgress | None


def _verify_file(report: VerifyReport, source: _Source, entry: FileEntry, headers: dict[str, LogHeader]) -> None:
    """Hash one file both ways, reading it once, and hand its original bytes to the check of its role."""
    stored = _Hashed(entry.name, source.progress, crc=True, total=entry.stored_size)
    original = _Hashed(entry.name, None)
    database = next((d for d in source.manifest.databases if d.file == entry.source), None)
    pages = _PageChecker(entry.name, database) if entry.role == "db" else None
    log = bytearray()
    broken = None  # why the stored bytes do not decompress
    try:
        stored_chunks = stored.wrap(read_ahead(source.target.read_file(f"{source.folder}/{entry.name}", READ_CHUNK)))
        try:
            for chunk in original.wrap(original_chunks(stored_chunks, entry.compression)):
                if pages is not None:
                    pages.feed(chunk)
                elif entry.role == "log":
                    log += chunk
        except zstandard.ZstdError as exc:
            broken = str(exc)
            for _ in stored_chunks:  # why: hash every stored byte, so that the stored hash is still checked
                pass
    except BackupTargetNotFoundError:
        report.error("missing", entry.name, "the file disappeared while it was being read")
        return
    finally:
        original.close()
    for label, want_size, want_digest, got in (
        ("stored", entry.stored_size, entry.stored_crc32c, stored),
        ("original", entry.size, entry.sha256, original),
    ):
        if got.size != want_size:
            report.error("size", entry.name, f"{label} size is {got.size} bytes, the manifest says {want_size}")
        elif got.digest() != want_digest:
            report.error("hash", entry.name, f"{label} bytes do not match the manifest's {got.algorithm}")
    if broken is not None:
        report.error("hash", entry.name, f"the stored bytes do not decompress ({broken})")
        return
    report.files += 1
    report.bytes += original.size
    report.stored_bytes += stored.size
    if pages is not None:
        pages.finish(report, source.manifest)
    elif entry.role == "log":
        _check_log(report, f"{source.folder}/{entry.name}", entry, source.manifest, bytes(log), headers)


class _Hashed:
    """Passes chunks through, counting them and hashing them with SHA-256 on a thread of its own (or CRC-32C,
    for stored bytes, here: it is cheap). Call :meth:`close` when done."""

    def __init__(self, name: str, progress: VerifyProgress | None, *, crc: bool = False, total: int = 0) -> None:
        self.name, self.progress, self.total = name, progress, total
        self.size = 0
        self.algorithm = "crc32c" if crc else "sha256"
        self.sha = None if crc else BackgroundHash()
        self.crc = 0

    def wrap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.size += len(chunk)
            if self.sha is not None:
                self.sha.update(chunk)
            else:
                self.crc = crc32c(chunk, self.crc)
            if self.progress is not None:
                self.progress(self.name, self.size, self.total)
            yield chunk

    def digest(self) -> str:
        return self.sha.hexdigest() if self.sha is not None else f"{self.crc:08x}"

    def close(self) -> None:
        if self.sha is not None:
            self.sha.close()


class _PageChecker:
    """Checks a database copy page by page as its bytes stream in: pages 0 and 1 are header copies, every
    later page is valid for its number or all zeros (a free page)."""

    def __init__(self, name: str, database: DatabaseEntry | None) -> None:
        self.name, self.database = name, database
        self.page_size = database.page_size if database and database.page_size in dbheader.PAGE_SIZES else None
        self.tail = b""
        self.pgno = 0
        self.headers: list[tuple[int, DbHeader | DbHeaderError]] = []
        self.problems: list[Problem] = []
        self.damaged = 0
        self.free = 0

    def feed(self, chunk: bytes) -> None:
        data = self.tail + chunk  # why bytes, not a bytearray: views of it never block resizing
        if self.page_size is None:
            if len(data) < 20:
                self.tail = data
                return
            self.page_size = dbheader.detect_page_size(data[:20]) or 0  # 0: unknown, the pages are not checked
        if not self.page_size:
            return
        size, whole = self.page_size, len(data) // self.page_size
        view, zero = memoryview(data), bytes(size)
        done = 0
        while done < whole and self.pgno < dbheader.HEADER_PAGES:
            self._page(view[done * size : (done + 1) * size], zero)
            done += 1
        rest, count = view[done * size : whole * size], whole - done
        used = bytearray(rest[i * size : (i + 1) * size] != zero for i in range(count))
        if first_bad_page(rest, self.pgno, size, used) is None:  # the usual case: every page verified at once
            self.free += count - used.count(1)
            self.pgno += count
        else:
            for i in range(count):
                self._page(rest[i * size : (i + 1) * size], zero)
        self.tail = data[whole * size :]

    def _page(self, page: memoryview, zero: bytes) -> None:
        pgno, offset = self.pgno, self.pgno * len(page)
        self.pgno += 1
        if pgno < dbheader.HEADER_PAGES:
            try:
                self.headers.append((pgno, dbheader.unpack_db_header(bytes(page), offset)))
            except DbHeaderError as exc:
                self.headers.append((pgno, exc))
            return
        if page == zero:
            self.free += 1
            return
        try:
            verify_page(page, pgno)
        except PageError as exc:
            self.damaged += 1
            if self.damaged <= MAX_PAGE_PROBLEMS:
                detail = f"page {pgno} at offset {offset} of the original file is damaged: {exc}"
                self.problems.append(Problem("page", self.name, detail))

    def finish(self, report: VerifyReport, manifest: Manifest) -> None:
        """Add what was found to ``report``: page problems, header problems, a partial last page, a page count
        that differs from the manifest's."""
        report.pages += self.pgno
        report.free_pages += self.free
        report.problems.extend(self.problems)
        if self.damaged > MAX_PAGE_PROBLEMS:
            report.error("page", self.name, f"{self.damaged - MAX_PAGE_PROBLEMS} more damaged pages not listed")
        if not self.page_size:
            report.error("header", self.name, "no valid page size: neither the manifest nor the header has one")
            return
        if self.tail:
            report.error("size", self.name, f"the file ends {len(self.tail)} bytes into page {self.pgno}")
        self._check_headers(report, manifest)

    def _check_headers(self, report: VerifyReport, manifest: Manifest) -> None:
        good = [h for _, h in self.headers if isinstance(h, DbHeader)]
        for pgno, h in self.headers:
            if isinstance(h, DbHeaderError):
                note = report.warn if good else report.error  # why: one valid copy is enough to restore
                note("header", self.name, f"header copy in page {pgno} at offset {h.offset} is damaged: {h}")
        db = self.database
        if db is None:
            report.error("header", self.name, "the manifest's database list does not describe this file")
        if not good or db is None:
            return
        header = max(good, key=lambda h: h.sequence)
        facts = [
            ("page size", header.page_size, db.page_size),
            ("page count", header.page_count, db.page_count),
            ("page count of the copy", self.pgno, db.page_count),
            ("database signature", header.db_signature.to_dict(), db.db_signature),
            ("log signature", header.log_signature.to_dict(), manifest.log_signature),
        ]
        for label, found, expected in facts:
            if found != expected:
                report.error("header", self.name, f"{label} is {found}, the manifest says {expected}")


# --- logs -------------------------------------------------------------------------------------------------


def _check_log(
    report: VerifyReport, path: str, entry: FileEntry, manifest: Manifest, data: bytes, headers: dict[str, LogHeader]
) -> None:
    """One closed generation: a valid header of the right generation and log stream, the right length, and
    every block undamaged."""
    try:
        header = unpack_log_header(data)
    except LogHeaderError as exc:
        report.error("log", entry.name, f"log header at offset {exc.offset} is damaged: {exc}")
        return
    headers[entry.name] = header
    if header.generation != entry.generation:
        report.error("log", entry.name, f"its header says generation {header.generation}, not {entry.generation}")
    if header.signature.to_dict() != manifest.log_signature or header.base != manifest.log_base:
        theirs, ours = f"{header.base} {header.signature}", f"{manifest.log_base} {manifest.log_signature}"
        report.error("signature", entry.name, f"it belongs to another log stream ({theirs}), not the set's ({ours})")
    if len(data) != header.file_size:
        report.error("log", entry.name, f"it is {len(data)} bytes, its header says {header.file_size}")
    try:
        scan_generation(path, data, header, tolerate_torn_tail=False)
    except LogFileCorruptError as exc:
        report.error("log", entry.name, exc.message)
    report.logs += 1


def _check_log_chain(report: VerifyReport, manifest: Manifest, headers: dict[str, LogHeader]) -> None:
    """Generations first_gen..last_gen each present exactly once, each created right after the one before."""
    logs = manifest.logs()
    counts = Counter(f.generation for f in logs)
    for gen, count in sorted((g or 0, c) for g, c in counts.items()):
        if count > 1:
            report.error("chain", None, f"log generation {gen} is in the set {count} times")
        if not manifest.first_gen <= gen <= manifest.last_gen:
            report.error("chain", None, f"log generation {gen} is outside the set's range {_range(manifest)}")
    if manifest.first_gen:
        for gen in range(manifest.first_gen, manifest.last_gen + 1):
            if gen not in counts:
                name = archived_log_name(manifest.log_base, gen)
                report.error("chain", name, f"log generation {gen} of {_range(manifest)} is not in the set")
    by_gen = {f.generation: headers[f.name] for f in logs if f.name in headers}
    for gen in range(manifest.first_gen + 1, manifest.last_gen + 1):
        before, header = by_gen.get(gen - 1), by_gen.get(gen)
        if before is not None and header is not None and header.prev_created_us != before.created_us:
            name = next(f.name for f in logs if f.generation == gen)
            report.error("chain", name, f"generation {gen} does not follow generation {gen - 1} (creation times)")


def _check_coverage(report: VerifyReport, manifest: Manifest) -> None:
    """A full or copy set holds every generation from its databases' oldest replay start to last_gen."""
    if manifest.kind not in ("full", "copy"):
        return
    starts = [d.replay_start_gen for d in manifest.databases if isinstance(d.replay_start_gen, int)]
    if not manifest.databases:
        report.warn("coverage", None, f"a {manifest.kind} backup without databases")
    for d in manifest.databases:
        if not any(f.role == "db" and f.source == d.file for f in manifest.files):
            report.error("coverage", d.file, f"database {d.store!r} is described but its file is not in the set")
    needed = min((g for g in starts if g > 0), default=0)
    if needed and (manifest.first_gen == 0 or needed < manifest.first_gen):
        report.error(
            "coverage",
            None,
            f"the databases need log generations {needed}-{manifest.last_gen}; the set holds {_range(manifest)}",
        )


def _check_base_chain(report: VerifyReport, manifest: Manifest, sets: list[SetInfo]) -> None:
    """Each set an incremental or differential builds on is in the target, complete, of a kind it may build on,
    of the same log stream, and ends right before the next one begins; up to a full backup."""
    by_id = {s.backup_id: s for s in sets}
    current, seen = manifest, {manifest.backup_id}
    while current.kind in BASE_KINDS:
        base_id = current.based_on
        base = by_id.get(base_id) if isinstance(base_id, str) else None  # why: manifest.py does not check its type
        where = f"the {current.kind} backup {current.backup_id} builds on"
        if base_id is None or base is None or base_id in seen:
            report.error("base", base_id, f"{where} {base_id or 'a backup'}, which is not in this target")
            return
        seen.add(base_id)
        if base.manifest is None:
            report.error("base", base_id, f"{where} {base_id}, which is {base.why_not_usable()}")
            return
        if base.damage:  # why: a base is read at restore time too; verify its files are there, cheaply (sizes)
            report.error("base", base_id, f"{where} {base_id}, which is {base.why_not_usable()}")
        previous = base.manifest
        if previous.kind not in BASE_KINDS[current.kind]:
            report.error("base", base_id, f"{where} {base_id}, a {previous.kind} backup it cannot build on")
            return
        if previous.log_signature != current.log_signature:
            report.error("base", base_id, f"{where} {base_id}, a backup of another log stream")
            return
        if previous.last_gen + 1 != current.first_gen:
            gap = f"{base_id} holds generations {_range(previous)}, {current.backup_id} starts at {current.first_gen}"
            report.error("base", base_id, f"gap in the chain: {gap}")
        current = previous


def _range(manifest: Manifest) -> str:
    return f"{manifest.first_gen}-{manifest.last_gen}" if manifest.first_gen else "no log generations"
