"""Choosing the plan a restore command carries out: whose backups, around which damage, and for a restore in
place what it would discard.

``choose_plan`` lists the target (the sets of this home, or of the home named with --from-home), plans
(restore/plan.py) leaving out the sets the administrator skipped and the files found damaged, and for a
restore in place rolls forward through the live logs by default, falling back to stopping at the backups when
the live logs cannot continue them, and says what that would discard (restore/discard.py).

``verify_plan`` reads every file a plan would use and checks its SHA-256, replanning around each damaged file
until the plan's files are sound: what ``restore plan --verify`` shows, and what ``restore run`` does on its own
when a fetched file turns out to be damaged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import zstandard

from shadowstore.backup import catalog
from shadowstore.backup.catalog import SetInfo
from shadowstore.backup.layout import parse_set_path, set_folder
from shadowstore.backup.manifest import FileEntry
from shadowstore.backup.setfiles import original_chunks, read_ahead
from shadowstore.backup.target import Target
from shadowstore.errors import (
    BackupSetError,
    InvalidParameterError,
    MissingRestoreLogFilesError,
    NoRestorableBackupError,
    NotFoundError,
    RestoreError,
)
from shadowstore.home import ServerHome
from shadowstore.restore.discard import Discard, in_place_discards, live_logs, quarantine_root
from shadowstore.restore.plan import RestorePlan, RestoreTarget, plan_restore

READ_CHUNK = 8 << 20


@dataclass
class Request:
    """What a restore command was asked."""

    target: Target
    stop: RestoreTarget
    sg: str | None = None
    from_home: str | None = None
    live: bool = False  # --roll-forward-live
    stop_at_backup: bool = False
    in_place: bool = False
    skip: tuple[str, ...] = ()  # --skip-set
    base: str | None = None  # --set
    damaged: set[tuple[str, str]] = field(default_factory=set)  # (backup id, file name) found damaged

    @property
    def explicit_stop(self) -> bool:
        """Whether the administrator asked to stop before the end of the live logs."""
        return self.stop_at_backup or self.stop.kind != "latest"


@dataclass(frozen=True)
class Choice:
    plan: RestorePlan
    discard: Discard | None = None  # what a restore in place would leave out
    why: str | None = None  # why the live logs cannot carry the plan to their end


def choose_plan(home: ServerHome, request: Request) -> Choice:
    """The plan for ``request``; raises like plan_restore, and InvalidParameterError for contradictions."""
    if request.stop_at_backup and request.live:
        raise InvalidParameterError("--stop-at-backup and --roll-forward-live contradict each other: choose one")
    sets = _sets(home, request)
    own = request.from_home is None or request.from_home == home.home_id
    rolls = request.live or (request.in_place and own and not request.stop_at_backup)
    plan = _plan(sets, request, rolls)
    try:
        config = home.config.find(plan.sg).resolved(home.path)
    except NotFoundError:
        return Choice(plan)  # the restore itself refuses, naming the recovery storage group
    why = live_logs(home.fs, config).continues(plan) if plan.live_from is not None else None
    if why is not None and request.live:
        # why refuse here: the plan would pass and the run fail, after fetching every file
        raise MissingRestoreLogFilesError(
            f"--roll-forward-live: the backups of {plan.sg!r} end at generation {plan.last_gen}, and the live logs "
            f"cannot go on from there: {why}",
            hint="restore to a point the backups reach (restore plan without --roll-forward-live says how far)",
        )
    if not request.in_place:
        return Choice(plan)
    if why is not None:
        plan = _plan(sets, request, False)
    return Choice(plan, in_place_discards(home.fs, config, plan, quarantine_root(config)), why)


def refuse_discard(choice: Choice) -> RestoreError:
    """The refusal of a restore in place that would discard committed data without a stop option."""
    assert choice.discard is not None
    plan = choice.plan
    reason = f" ({choice.why})" if choice.why else ""
    return RestoreError(
        f"restoring {plan.sg!r} in place {plan.target.describe()} would discard committed data{reason}: "
        f"{choice.discard.describe()}",
        hint="to restore anyway, add --stop-at-backup (or --until / --until-gen): nothing is deleted, the live "
        "files go to the quarantine folder; or restore into the recovery storage group first to look",
    )


def verify_plan(home: ServerHome, request: Request, choice: Choice) -> Choice:
    """Read and hash every file ``choice``'s plan uses; for each damaged one, note it in ``request.damaged``
    and plan again. Returns the first choice whose files are all sound. Raises what planning raises when
    nothing sound is left."""
    while True:
        bad = first_damaged(request.target, choice.plan)
        if bad is None:
            return choice
        request.damaged.add(bad)
        choice = choose_plan(home, request)


def first_damaged(target: Target, plan: RestorePlan) -> tuple[str, str] | None:
    """(backup id, file name) of the first file of ``plan`` whose size or SHA-256 differs from its manifest."""
    files = [(d.backup_id, d.entry) for d in plan.databases] + [(log.backup_id, log.entry) for log in plan.logs]
    for backup_id, entry in files:
        if not matches(target, set_folder(plan.home, plan.sg, backup_id), entry):
            return backup_id, entry.name
    return None


def matches(target: Target, folder: str, entry: FileEntry) -> bool:
    """Whether the stored file decompresses to ``entry.size`` bytes with ``entry.sha256``."""
    sha, size = hashlib.sha256(), 0
    stored = target.read_file(f"{folder}/{entry.name}", READ_CHUNK)
    try:
        for chunk in read_ahead(original_chunks(stored, entry.compression)):
            sha.update(chunk)
            size += len(chunk)
    except zstandard.ZstdError:
        return False  # why: bytes that do not decompress are a damaged file, not a failed command
    return size == entry.size and sha.hexdigest() == entry.sha256


def damaged_file(error: BackupSetError) -> tuple[str, str] | None:
    """(backup id, file name) of the set file a fetch found damaged, from the error's ``file`` detail."""
    name = error.details.get("file")
    where = parse_set_path(name) if isinstance(name, str) else None
    return (where.backup_id, where.name) if where is not None else None


def _sets(home: ServerHome, request: Request) -> list[SetInfo]:
    owner = request.from_home or home.home_id
    if request.from_home is not None and request.from_home != home.home_id and request.live:
        raise InvalidParameterError(
            f"--roll-forward-live continues with this home's live logs, which are not of home {request.from_home}'s "
            "stream"
        )
    sets = catalog.list_sets(request.target, request.sg, home=owner, unfinished_writes=False)
    if not sets:
        others = [h for h in catalog.homes_in(request.target) if h != owner]
        if others:
            sg = f"{request.sg!r} of " if request.sg else ""
            raise NoRestorableBackupError(
                f"{request.target.url} holds no backup of {sg}home {owner}; it holds backups of "
                f"home{'s' if len(others) > 1 else ''} {', '.join(others)}",
                hint=f"to restore another home's backup into the recovery storage group: --from-home {others[0]} "
                "--into-recovery-group",
            )
    return sets


def _plan(sets: list[SetInfo], request: Request, live: bool) -> RestorePlan:
    return plan_restore(
        sets,
        request.stop,
        sg=request.sg,
        roll_forward_live=live,
        skip=request.skip,
        damaged=request.damaged,
        base=request.base,
    )
