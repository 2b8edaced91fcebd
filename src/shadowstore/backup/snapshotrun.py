"""The backup program's shadow-copy method: ``backup run --method snapshot``.

It is the requestor of one job (vss/requestor.py): the store writer freezes the selected storage groups, the
provider (btrfs, reflink or copy: vss/providers.py) makes the shadow copy, the groups thaw, and the same
program as a streaming backup (backup/run.py) writes each group's set from the frozen files
(backup/snapshotsource.py), checks it and writes its manifest; only then does BackupComplete truncate logs and
stamp headers. The sets are the sets a streaming backup makes. Without the service the writers and the
requestor run in this process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from shadowstore.backup.pace import PACED_READ, Pace
from shadowstore.backup.report import BackupReport
from shadowstore.backup.run import BackupOutcome, Progress, default_owner, run_backup
from shadowstore.backup.snapshotsource import BLOCK, SnapshotSource
from shadowstore.backup.source import BackupSource
from shadowstore.backup.target import Target
from shadowstore.config import SgConfig, parse_seconds
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.errors import ShadowStoreError
from shadowstore.format.logfile import checkpoint_name, current_log_name
from shadowstore.home import ServerHome
from shadowstore.vss.providers import choose, sweep_leftovers
from shadowstore.vss.requestor import DEFAULT_COMMIT_SECONDS, JobReport, Requestor
from shadowstore.vss.storewriter import DEFAULT_FREEZE_SECONDS, StoreWriter
from shadowstore.vss.writer import SnapshotStoreWriter, Writer


@dataclass
class SnapshotRun:
    provider: str
    why: str
    job: JobReport | None = None
    outcomes: list[BackupOutcome] = field(default_factory=list)
    failures: list[tuple[str, ShadowStoreError]] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)


def back_up_snapshot(
    home: ServerHome,
    sg_names: list[str],
    kind: str,
    target: Target,
    *,
    provider: str = "auto",
    level: int | None = None,
    report: BackupReport,
    progress: Progress = lambda name, done, size, total: None,
    freeze_seconds: float = DEFAULT_FREEZE_SECONDS,
    commit_seconds: float = DEFAULT_COMMIT_SECONDS,
    store_writer: SnapshotStoreWriter | None = None,
    writers: tuple[Writer, ...] = (),
    pace: Pace | None = None,
) -> SnapshotRun:
    """Back up ``sg_names`` through one shadow copy. ``store_writer`` is the service's (service/remotewriter.py)
    when it runs; otherwise the store writer runs here, on groups mounted here for the job if they were not.
    Raises the job's failure (-2403 when a group has a streaming backup running, -2402 when a freeze outlived its
    deadline, the provider's error); a group whose set could not be written is in ``failures`` and is neither
    truncated nor stamped."""
    configs = [home.config.find(name).resolved(home.path) for name in sg_names]
    local = store_writer is None
    groups = [home.storage_group(name) for name in sg_names] if local else []
    with _mounted(groups):
        paths = [p for config in configs for p in _live_files(config)]
        chosen, why = choose(paths, provider)
        run = SnapshotRun(chosen.name, why, swept=sweep_leftovers(paths))
        writer: SnapshotStoreWriter = store_writer or StoreWriter(home, freeze_seconds=freeze_seconds)
        owner = default_owner()

        def copy(files: dict[str, str]) -> dict[str, bool]:
            succeeded = {}
            for config in configs:
                frozen, last = writer.frozen[config.name], writer.last_commit_us[config.name]
                # why smaller reads when paced: one read of 8 MiB fills the disk's queue (backup/pace.py)
                block = BLOCK if pace is None else PACED_READ
                source = SnapshotSource(config, home.fs, home.events, kind, frozen, files, last, block)
                try:
                    outcome = run_backup(
                        _opener(source), home, config.name, kind, target, owner, level, report, progress, pace
                    )
                except ShadowStoreError as exc:
                    run.failures.append((config.name, exc))
                    succeeded[config.name] = False
                    continue
                run.outcomes.append(outcome)
                succeeded[config.name] = source.stored
            return succeeded

        # why the hooks first: they pause before the store freezes and resume after it thaws (the requestor thaws
        # in reverse), so a slow hook command neither holds commits nor counts against the store's freeze deadline
        requestor = Requestor([*writers, writer], chosen, commit_seconds=commit_seconds)
        run.job = requestor.run(kind, {writer: sg_names}, copy)
        for outcome in run.outcomes:
            outcome.completion = writer.completed.get(outcome.sg)
    return run


def _opener(source: SnapshotSource) -> Callable[[], contextlib.AbstractContextManager[BackupSource]]:
    """What run_backup calls to begin: the source is already there (the shadow copy was made for it)."""

    @contextlib.contextmanager
    def opened() -> Iterator[BackupSource]:
        yield source

    return opened


@contextlib.contextmanager
def _mounted(groups: list[StorageGroup]) -> Iterator[None]:
    mounted_here = []
    try:
        for sg in groups:
            if not sg.mounted:
                sg.mount()
                mounted_here.append(sg)
        yield
    finally:
        for sg in mounted_here:
            sg.dismount()


def _live_files(config: SgConfig) -> list[str]:
    """The files whose folders the provider must be able to snapshot: the stores, the current log, the
    checkpoint."""
    stores = [config.store_path(s) for s in config.stores]
    log = os.path.join(config.log_dir, current_log_name(config.log_base))
    return [*stores, log, os.path.join(config.system_dir, checkpoint_name(config.log_base))]


def freeze_seconds(settings: Mapping[str, Any]) -> float:
    """How long a freeze may hold commits: ``vss.freeze_seconds`` of a home's settings, else 60 s."""
    value = settings.get("vss", {}).get("freeze_seconds")
    return DEFAULT_FREEZE_SECONDS if value is None else parse_seconds(value, "vss.freeze_seconds")
