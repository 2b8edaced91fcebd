"""The store writer: the Information Store's part in a shadow copy, one component per storage group.

Freeze is per storage group (the behaviour that keeps one stuck storage group from vetoing every other): each
selected group rolls its log and holds log, page and checkpoint writes (engine/snapshot.py) until thaw or until
its deadline, when the engine thaws it by itself (event 2004) and the job fails with -2402. A group with a
streaming backup session running, or recovering, refuses the freeze with -2403: events 2002 and 9611, the
writer's state [9] Failed at freeze with a retryable error; the streaming backup goes on untouched.
BackupComplete truncates the logs of full and incremental backups and stamps the headers (engine).
"""

from __future__ import annotations

import os
import socket

from shadowstore.engine import snapshot
from shadowstore.engine.backup import CompletionReport
from shadowstore.engine.logstream import LogSet
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.errors import InvalidBackupError, NotMountedError, OSSnapshotNotAllowedError, ShadowStoreError
from shadowstore.format.logfile import checkpoint_name
from shadowstore.home import ServerHome
from shadowstore.vss.states import WriterFailure
from shadowstore.vss.writer import (
    RESTORE_IF_CAN_REPLACE,
    SOURCE_TRANSACTED_DB,
    USAGE_USER_DATA,
    Component,
    FileGroup,
    SnapshotStoreWriter,
    WriterMetadata,
    WriterVeto,
)

DEFAULT_FREEZE_SECONDS = 60.0  # freeze to thaw, as VSS's writers (research/vss.md §1.5)
STARTING = {"full": 2005, "incremental": 2008, "copy": 2009, "differential": 2010}  # "... starting. This will be a"


class StoreWriter(SnapshotStoreWriter):
    name = "ShadowStore Information Store Writer"
    writer_id = "6b1f7d3e-2c4a-4f0e-9a51-3e8d2c7b5a10"

    def __init__(self, home: ServerHome, *, freeze_seconds: float = DEFAULT_FREEZE_SECONDS) -> None:
        super().__init__()
        self.home = home
        self.freeze_seconds = freeze_seconds
        self.frozen: dict[str, snapshot.FrozenGroup] = {}
        self.last_commit_us: dict[str, int | None] = {}
        self.files: dict[str, str] = {}
        self.completed: dict[str, CompletionReport] = {}

    # --- metadata ---------------------------------------------------------------------------------------------

    def on_identify(self) -> WriterMetadata:
        components = []
        for config in self.home.config.storage_groups:
            sg = config.resolved(self.home.path)
            files = [FileGroup(sg.data_dir, os.path.basename(sg.store_path(s)), "database") for s in sg.stores]
            files.append(FileGroup(sg.log_dir, f"{sg.log_base}*.log", "logs"))
            files.append(FileGroup(sg.system_dir, checkpoint_name(sg.log_base), "checkpoint"))
            components.append(
                Component(f"ShadowStore Information Store/{socket.gethostname()}", sg.name, "database", files)
            )
        return WriterMetadata(
            self.name, self.writer_id, self.instance_id, USAGE_USER_DATA, SOURCE_TRANSACTED_DB,
            RESTORE_IF_CAN_REPLACE, components,
        )  # fmt: skip

    def on_prepare_backup(self, kind: str, components: list[str]) -> None:
        self.home.flush_waits.busy.add(self)  # until BackupShutdown: commits now may wait behind the copy
        for name in components:
            sg = self._group(name)
            if kind in ("incremental", "differential") and sg.config.circular_logging:
                raise InvalidBackupError(
                    f"storage group {name!r} uses circular logging: only full and copy backups can be taken",
                    hint="take a full backup, or turn circular logging off",
                )

    def _group(self, name: str) -> StorageGroup:
        sg = self.home.storage_group(name)
        if not sg.mounted:
            raise NotMountedError(f"storage group {name!r} is not mounted; mount it to back it up")
        return sg

    # --- the snapshot -------------------------------------------------------------------------------------------

    def on_prepare_snapshot(self) -> None:
        for name in self.selected:
            sg = self._group(name)
            assert self.kind is not None
            sg.events.emit(STARTING[self.kind], sg=sg.name, instance=self.instance_id)
            if sg.backup_session is None:  # why: with a streaming session the freeze refuses (-2403), not this
                snapshot.prepare_snapshot(sg)

    def on_freeze(self) -> None:
        for name in self.selected:
            sg = self._group(name)
            try:
                frozen = snapshot.freeze(sg, timeout=self.freeze_seconds)
            except OSSnapshotNotAllowedError as exc:
                self._thaw_all(quietly=True)
                sg.events.emit(2002, sg=sg.name, error=f"{exc.code}", instance=self.instance_id)
                sg.events.emit(9611, sg=sg.name, error=f"0x{exc.code & 0xFFFFFFFF:08x}")
                raise
            except ShadowStoreError:
                self._thaw_all(quietly=True)
                raise
            self.frozen[name] = frozen
            self.last_commit_us[name] = sg.log.last_time  # why now: commits wait until thaw

    def snapshot_files(self) -> list[str]:
        """What the provider must freeze: the files each frozen group named, and every log generation up to the
        one the freeze closed (an incremental needs those from its chain's end, which may precede the replay
        start)."""
        paths: list[str] = []
        for name, frozen in self.frozen.items():
            config = self._group(name).config
            paths += frozen.files
            logs = LogSet.scan(self.home.fs, config.log_dir, config.log_base)
            paths += [path for gen, path in sorted(logs.archived.items()) if gen <= frozen.last_generation]
        return list(dict.fromkeys(paths))

    def on_thaw(self) -> None:
        self._thaw_all(quietly=False)

    def _thaw_all(self, *, quietly: bool) -> None:
        first: ShadowStoreError | None = None
        for frozen in self.frozen.values():
            try:
                frozen.thaw()
            except ShadowStoreError as exc:
                first = first or exc
        if first is not None and not quietly:
            raise first

    def on_post_snapshot(self, files: dict[str, str]) -> None:
        missing = [path for path in self.snapshot_files() if path not in files]
        if missing:
            raise WriterVeto(
                f"the shadow copy lacks {len(missing)} file(s) the store writer needs, such as {missing[0]}",
                failure=WriterFailure.INCONSISTENT_SNAPSHOT,
            )
        self.files = dict(files)

    def on_backup_complete(self, succeeded: dict[str, bool]) -> None:
        assert self.kind is not None
        for name, frozen in self.frozen.items():
            if succeeded.get(name):
                self.completed[name] = snapshot.complete_snapshot(self._group(name), self.kind, frozen)

    def on_backup_shutdown(self) -> None:
        self.home.flush_waits.busy.discard(self)
        self._thaw_all(quietly=True)
        self.frozen.clear()
        self.files.clear()

    def on_abort(self) -> None:
        self._thaw_all(quietly=True)

    # --- restore ------------------------------------------------------------------------------------------------

    def on_pre_restore(self, components: list[str]) -> None:
        """Dismount each storage group to be restored (every store in Clean Shutdown), so the restore may replace
        its files; refused (-505) while it has a backup session or a shadow copy running."""
        for name in components:
            sg = self.home.storage_group(name)
            if sg.backup_session is not None:
                from shadowstore.errors import BackupInProgressError

                raise BackupInProgressError(
                    f"storage group {name!r} cannot be restored while it is being backed up: "
                    f"{sg.backup_session.describe()}"
                )
            sg.dismount()

    def on_post_restore(self, components: list[str], succeeded: dict[str, bool]) -> None:
        """Mount each storage group whose restore succeeded (soft recovery runs if it must); the others stay
        dismounted, for the administrator to finish or abort the restore."""
        for name in components:
            if succeeded.get(name):
                self.home.storage_group(name).mount()
