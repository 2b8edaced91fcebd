"""A storage group as a shadow copy froze it, read as a ``BackupSource`` (backup/source.py): the backup program
makes the same sets from it as from a streaming session.

The stores are read from their frozen copies, each up to the page count of the durable header it had at the
freeze, used pages verified and free pages written as zeros, exactly as a streaming copy; the header pages carry
the shadow copy's mark in 'Current Shadow copy backup'. The logs are the closed generations the freeze left, from
where the kind of backup starts (the replay start of the copies for full and copy, the end of the previous backup
for incremental and differential) to the generation the freeze closed. ``complete`` only notes that the set is
stored: BackupComplete (truncation, stamps) is the writer's, called by the requestor after every set was made.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

from shadowstore.backup.manifest import DatabaseEntry
from shadowstore.backup.source import entry_of
from shadowstore.config import SgConfig, StoreConfig
from shadowstore.engine.backup import CompletionReport
from shadowstore.engine.dbfile import DatabaseFile
from shadowstore.engine.logreader import scan_generation
from shadowstore.engine.logstream import read_header
from shadowstore.engine.space import page_flags
from shadowstore.errors import (
    LogReadVerifyFailureError,
    MissingFileToBackupError,
    ReadVerifyFailureError,
    ShadowStoreError,
)
from shadowstore.events import EventLog
from shadowstore.format.common import BACKUP_SNAPSHOT, BackupInfo, LgPos
from shadowstore.format.dbheader import DbHeader
from shadowstore.format.logfile import archived_log_name, checkpoint_name
from shadowstore.format.page import first_bad_page
from shadowstore.io.fs import FileSystem, read_file

BLOCK = 8 << 20


class FrozenView(Protocol):
    """What a freeze left (engine/snapshot.py FrozenGroup, or its description from the service)."""

    started_us: int
    last_generation: int
    low_generation: int
    headers: dict[str, DbHeader]


class _FrozenCopy:
    def __init__(self, source: SnapshotSource, name: str, original: str, header: DbHeader) -> None:
        self._source = source
        self._name = name
        self._original = original
        self._path = source.frozen_path(original)
        self._header = header
        self.file_name = os.path.basename(original)
        self.size = header.page_count * header.page_size

    def __enter__(self) -> _FrozenCopy:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        return None

    def chunks(self) -> Iterator[bytes]:
        header, page_size = self._header, self._header.page_size
        info = BackupInfo(
            self._source.mark, self._source.frozen.started_us, header.replay_start.gen, 0, BACKUP_SNAPSHOT
        )
        patched = header._replace(snapshot_cur=info).pack()
        yield patched + patched
        source = self._source
        dbfile = DatabaseFile(source.fs, self._path, page_size, source.events, source.sg_name, readonly=True)
        handle = dbfile.handle
        try:
            space = b"" if header.space_map.is_empty else dbfile.read_blob(header.space_map)  # verified pages
            used = page_flags(header.page_count, space)
            offset = 2 * page_size
            while offset < self.size:
                data = handle.pread(min(source.block, self.size - offset), offset)
                if len(data) % page_size or not data:
                    raise ReadVerifyFailureError(f"{self._path} ends inside page {(offset + len(data)) // page_size}")
                first = offset // page_size
                flags = used[first : first + len(data) // page_size]
                bad = first_bad_page(data, first, page_size, flags)
                if bad is not None:
                    raise ReadVerifyFailureError(
                        f"page {bad} of the shadow copy of {self._original} failed verification"
                    )
                if flags.find(0) != -1:
                    zero = bytes(page_size)
                    count = len(flags)
                    data = b"".join(
                        data[i * page_size : (i + 1) * page_size] if flags[i] else zero for i in range(count)
                    )
                offset += len(data)
                yield data
        finally:
            dbfile.close()

    def entry(self) -> DatabaseEntry:
        dbid = self._source.store_config(self._name).dbid
        return entry_of(self._name, self._original, dbid, self._header, self._source.last_commit_us)


class SnapshotSource:
    """One frozen storage group, described by its resolved configuration (so the program needs no storage group
    of its own: through the service, the service has it). ``files`` maps original paths to frozen copies."""

    def __init__(
        self,
        config: SgConfig,
        fs: FileSystem,
        events: EventLog,
        kind: str,
        frozen: FrozenView,
        files: dict[str, str],
        last_commit_us: int | None,
        block: int = BLOCK,
    ) -> None:
        self.config = config
        self.fs = fs
        self.events = events
        self.kind = kind
        self.frozen = frozen
        self.files = files
        self.last_commit_us = last_commit_us
        self.sg_name = config.name
        self.log_base = config.log_base
        first = next(iter(frozen.headers.values()))
        self._signature = first.log_signature
        self.signature = first.log_signature.to_dict()
        self.mark = LgPos(frozen.last_generation + 1, 0)
        self.stored = False
        self.block = block  # bytes per read of a frozen store (smaller when the copy is paced)

    def store_config(self, name: str) -> StoreConfig:
        return next(s for s in self.config.stores if s.name == name)

    def frozen_path(self, original: str) -> str:
        try:
            return self.files[original]
        except KeyError:
            raise MissingFileToBackupError(f"{original} is not in the shadow copy") from None

    def databases(self) -> list[str]:
        return sorted(self.frozen.headers) if self.kind in ("full", "copy") else []

    def open_database(self, store: str) -> _FrozenCopy:
        path = self.config.store_path(self.store_config(store))
        return _FrozenCopy(self, store, path, self.frozen.headers[store])

    def prepare_logs(self) -> tuple[range, int | None]:
        headers = list(self.frozen.headers.values())
        if self.kind in ("full", "copy"):
            low = min((h.replay_start.gen for h in headers), default=self.frozen.low_generation)
        elif self.kind == "incremental":
            low = min(max(h.full_prev.gen_high, h.inc_prev.gen_high) + 1 for h in headers)
        else:
            low = min(h.full_prev.gen_high + 1 for h in headers)
        return range(low, self.frozen.last_generation + 1), self.frozen.started_us

    def read_log(self, generation: int) -> bytes:
        original = os.path.join(self.config.log_dir, archived_log_name(self.log_base, generation))
        try:
            path = self.frozen_path(original)
        except MissingFileToBackupError:
            raise MissingFileToBackupError(
                f"log generation {generation} ({original}) was not on disk when the shadow copy was made",
                hint="take a full backup: it needs only the logs since its own checkpoint",
            ) from None
        data = read_file(self.fs, path)
        try:
            header = read_header(self.fs, path)
            scan_generation(path, data, header, tolerate_torn_tail=False)
        except ShadowStoreError as exc:
            raise LogReadVerifyFailureError(
                f"the shadow copy of {original} failed verification: {exc.message}"
            ) from None
        if header.generation != generation or header.signature != self._signature:
            raise LogReadVerifyFailureError(
                f"the shadow copy of {original} is not generation {generation} of this stream"
            )
        return data

    def read_checkpoint(self) -> tuple[str, bytes]:
        original = os.path.join(self.config.system_dir, checkpoint_name(self.log_base))
        return os.path.basename(original), read_file(self.fs, self.frozen_path(original))

    def prove_coverage(self) -> None:
        """Every generation of the range was in the shadow copy (read_log refuses otherwise); nothing more."""

    def complete(self) -> CompletionReport:
        self.stored = True
        return CompletionReport()

    def abort(self, detail: str, error: ShadowStoreError | None = None) -> None:
        self.stored = False

    def check_running(self) -> None:
        """Nothing to check: the copy reads a shadow copy, which no session holds."""

    def crash_point(self, name: str) -> None:
        self.fs.crash_point(name)
