"""Where the backup program reads a storage group from: the engine in this process, or the Information Store
service through its API (service/remotebackup.py). The program (backup/run.py) is the same either way.

A ``BackupSource`` is one begun backup session seen from the program: the stores to copy, each store's bytes
and the facts its manifest entry records, the log range, each log, the checkpoint, and the calls that end the
session (``complete`` truncates and stamps; ``abort`` ends it with nothing changed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Protocol

from shadowstore.backup.manifest import DatabaseEntry
from shadowstore.engine.backup import BackupSession, CompletionReport
from shadowstore.engine.dbcopy import DatabaseCopy
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.engine.store import Store
from shadowstore.errors import BackupAbortedError, ShadowStoreError
from shadowstore.format.dbheader import DbHeader
from shadowstore.io.blockread import Block
from shadowstore.io.fs import read_file


class StoreCopy(Protocol):
    """One store's bytes as the session pinned them."""

    file_name: str
    size: int

    def __enter__(self) -> StoreCopy: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> None: ...
    def chunks(self) -> Iterable[bytes | Block]: ...
    def entry(self) -> DatabaseEntry:
        """The manifest entry of the copy (valid once every chunk was read)."""
        ...


class BackupSource(Protocol):
    sg_name: str
    log_base: str
    signature: dict[str, object]

    def databases(self) -> list[str]: ...
    def open_database(self, store: str) -> StoreCopy: ...
    def prepare_logs(self) -> tuple[range, int | None]:
        """The generations to copy and the creation time of the one after them (see engine LogRange)."""
        ...

    def read_log(self, generation: int) -> bytes: ...
    def read_checkpoint(self) -> tuple[str, bytes]:
        """The checkpoint file's name and content."""
        ...

    def prove_coverage(self) -> None: ...
    def complete(self) -> CompletionReport: ...
    def abort(self, detail: str, error: ShadowStoreError | None = None) -> None: ...
    def crash_point(self, name: str) -> None: ...
    def check_running(self) -> None:
        """Raise ShadowStoreError when the session has ended meanwhile (``backup abort``, a dismount)."""
        ...


def database_entry(store: Store, copy: DatabaseCopy) -> DatabaseEntry:
    """The manifest's record of ``store`` as ``copy`` pinned it."""
    return entry_of(store.name, store.path, store.dbid, copy.header, copy.max_commit_us)


def entry_of(name: str, path: str, dbid: int, header: DbHeader, max_commit_us: int | None) -> DatabaseEntry:
    """The manifest's record of a store copy whose header is ``header``: the copy holds every transaction
    committed up to ``max_commit_us``."""
    return DatabaseEntry(
        store=name,
        file=os.path.basename(path),
        dbid=dbid,
        db_signature=header.db_signature.to_dict(),
        page_size=header.page_size,
        dbtime=header.dbtime,
        replay_start=str(header.replay_start),
        replay_start_gen=header.replay_start.gen,
        page_count=header.page_count,
        state=header.state_name,
        max_commit_us=max_commit_us,
    )


class _EngineCopy:
    def __init__(self, store: Store, copy: DatabaseCopy) -> None:
        self._store = store
        self._copy = copy
        self.file_name = os.path.basename(store.path)
        self.size = copy.size

    def __enter__(self) -> _EngineCopy:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._copy.close()

    def chunks(self) -> Iterable[bytes | Block]:
        return self._copy.chunks()

    def entry(self) -> DatabaseEntry:
        return database_entry(self._store, self._copy)


class EngineSource:
    """A session of a storage group mounted in this process."""

    def __init__(self, sg: StorageGroup, session: BackupSession) -> None:
        self.sg = sg
        self.session = session
        self.sg_name = sg.name
        self.log_base = sg.base
        self.signature = sg.signature.to_dict()

    def databases(self) -> list[str]:
        return [store.name for store in self.session.databases()]

    def open_database(self, store: str) -> StoreCopy:
        found = self.sg.store(store)
        return _EngineCopy(found, self.session.open_database(found))

    def prepare_logs(self) -> tuple[range, int | None]:
        logs = self.session.prepare_logs()
        return logs.copy, logs.end_us

    def read_log(self, generation: int) -> bytes:
        return self.session.read_log(generation)

    def read_checkpoint(self) -> tuple[str, bytes]:
        return os.path.basename(self.sg.checkpoint_path), read_file(self.sg.fs, self.sg.checkpoint_path)

    def prove_coverage(self) -> None:
        self.session.prove_coverage()

    def complete(self) -> CompletionReport:
        return self.session.complete()

    def abort(self, detail: str, error: ShadowStoreError | None = None) -> None:
        self.session.abort(detail, error=error)

    def check_running(self) -> None:
        if self.session.ended:
            raise BackupAbortedError(f"the backup session of {self.sg_name!r} has ended: it was aborted")

    def crash_point(self, name: str) -> None:
        self.sg.fs.crash_point(name)
