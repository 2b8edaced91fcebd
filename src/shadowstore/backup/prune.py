"""``backup prune``: retention that never breaks a chain a kept backup needs. Plan (pure), then act.

Per storage group, ``plan_prune`` keeps the newest N complete full backups and every set taken after the oldest
of them (the incrementals, differentials and copies of the kept fulls, and anything newer). Complete sets older
than that are deleted unless a kept set needs them: ``based_on`` is followed transitively from every kept set,
so a kept incremental or differential always keeps the whole chain down to its full. A set without a manifest
older than the newest complete set of its group is a failed backup and is deleted; a newer one may be a backup
still running and is kept. A set whose manifest exists but cannot be read is kept for a person to look at.
Ids sort in time order (``shadowstore.backup.manifest``), so "older" means "smaller id".

``apply_prune`` deletes, newest set first, each set's manifest before its other files, then what a backup killed
while writing left in its folder (a temporary file, an unfinished upload): a set that is half deleted is simply
incomplete, and every remaining complete set still has the sets it builds on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shadowstore.backup.catalog import SetInfo
from shadowstore.backup.manifest import MANIFEST_NAME
from shadowstore.backup.target import Target
from shadowstore.errors import InvalidParameterError


@dataclass(frozen=True)
class PruneDecision:
    sg: str
    backup_id: str
    kind: str
    complete: bool
    delete: bool
    reason: str

    @property
    def folder(self) -> str:
        return f"{self.sg}/{self.backup_id}"

    def to_dict(self) -> dict[str, object]:
        action = "delete" if self.delete else "keep"
        return {
            "sg": self.sg,
            "id": self.backup_id,
            "kind": self.kind,
            "complete": self.complete,
            "action": action,
            "reason": self.reason,
        }


@dataclass
class PrunePlan:
    keep_full: int
    decisions: list[PruneDecision] = field(default_factory=list)  # per storage group, oldest first

    @property
    def to_delete(self) -> list[PruneDecision]:
        return [d for d in self.decisions if d.delete]

    @property
    def to_keep(self) -> list[PruneDecision]:
        return [d for d in self.decisions if not d.delete]

    def to_dict(self) -> dict[str, object]:
        return {"keep_full": self.keep_full, "sets": [d.to_dict() for d in self.decisions]}


def plan_prune(sets: list[SetInfo], keep_full: int) -> PrunePlan:
    """Decide for every set whether it is kept or deleted, and why. Pure: reads only its arguments.

    Raises InvalidParameterError when ``keep_full`` < 1 (pruning every full backup is never what is meant).
    """
    if isinstance(keep_full, bool) or not isinstance(keep_full, int) or keep_full < 1:
        raise InvalidParameterError(f"--keep-full {keep_full!r}: keep at least 1 full backup")
    plan = PrunePlan(keep_full)
    for sg in sorted({s.sg for s in sets}):
        group = sorted((s for s in sets if s.sg == sg), key=lambda s: s.backup_id)
        reasons = _complete_reasons(group, keep_full)
        newest_complete = max((s.backup_id for s in group if s.complete), default=None)
        for s in group:
            if s.complete:
                delete, reason = reasons[s.backup_id]
            else:
                delete, reason = _incomplete_reason(s, newest_complete)
            plan.decisions.append(PruneDecision(s.sg, s.backup_id, s.kind, s.complete, delete, reason))
    return plan


def _complete_reasons(group: list[SetInfo], keep_full: int) -> dict[str, tuple[bool, str]]:
    """(delete?, why) for each complete set of one storage group, oldest first."""
    complete = [s for s in group if s.complete]
    fulls = [s.backup_id for s in complete if s.kind == "full"]
    kept_fulls = fulls[-keep_full:]
    if not fulls:
        return {s.backup_id: (False, "there is no complete full backup to keep: nothing is pruned") for s in complete}
    cutoff = kept_fulls[0]
    newest = "the newest full backup" if len(kept_fulls) == 1 else f"one of the {len(kept_fulls)} newest full backups"
    decided: dict[str, tuple[bool, str]] = {}
    for s in complete:
        if s.backup_id in kept_fulls:
            decided[s.backup_id] = (False, newest)
        elif s.backup_id > cutoff:
            decided[s.backup_id] = (False, _newer_reason(s, group, kept_fulls, cutoff))
        else:
            decided[s.backup_id] = (True, f"older than {cutoff}, the oldest kept full backup")
    _keep_what_kept_sets_need(group, decided)
    return decided


def _newer_reason(s: SetInfo, group: list[SetInfo], kept_fulls: list[str], cutoff: str) -> str:
    chain = _chain(s, group)
    if chain and chain[-1] in kept_fulls:
        return f"builds on kept full backup {chain[-1]} ({' -> '.join([s.backup_id, *chain])})"
    return f"newer than {cutoff}, the oldest kept full backup"


def _chain(s: SetInfo, group: list[SetInfo]) -> list[str]:
    """The ids ``s`` builds on, nearest first, as far as they are in ``group`` (stops at a missing one)."""
    by_id = {g.backup_id: g for g in group}
    chain: list[str] = []
    current = s
    while current.manifest is not None and current.manifest.based_on and current.manifest.based_on not in chain:
        chain.append(current.manifest.based_on)
        if current.manifest.based_on not in by_id:
            break
        current = by_id[current.manifest.based_on]
    return chain


def _keep_what_kept_sets_need(group: list[SetInfo], decided: dict[str, tuple[bool, str]]) -> None:
    """Turn a delete into a keep for every set that a kept set builds on, directly or through others."""
    for s in reversed(group):  # why newest first: a set kept here is looked at again when its turn comes
        if s.backup_id not in decided or decided[s.backup_id][0]:
            continue
        for needed in _chain(s, group):
            if decided.get(needed, (False, ""))[0]:
                decided[needed] = (False, f"kept set {s.backup_id} builds on it")


def _incomplete_reason(s: SetInfo, newest_complete: str | None) -> tuple[bool, str]:
    if MANIFEST_NAME in s.files:
        return False, f"its manifest cannot be read ({s.problem}); left for you to inspect"
    if newest_complete is not None and s.backup_id < newest_complete:
        return True, f"incomplete (no manifest) and older than the complete set {newest_complete}"
    return False, "incomplete (no manifest) but newer than every complete set: it may be a backup still running"


@dataclass
class PruneResult:
    deleted: list[str] = field(default_factory=list)  # set folders
    files: int = 0


def apply_prune(
    target: Target, plan: PrunePlan, *, on_deleted: Callable[[PruneDecision, int], None] | None = None
) -> PruneResult:
    """Delete the sets ``plan`` marks for deletion, newest first; in each, ``manifest.json`` first.

    The folder is listed again now, so files that appeared since the plan was made are deleted too.
    ``on_deleted(decision, files)`` is called after each set. Raises BackupTargetError when a delete fails; the
    sets deleted until then stay deleted, the set being deleted is left incomplete, the rest are untouched.
    """
    result = PruneResult()
    for decision in reversed(plan.to_delete):
        names = target.list(f"{decision.folder}/")
        manifest = f"{decision.folder}/{MANIFEST_NAME}"
        for name in sorted(names, key=lambda n: n != manifest):
            target.delete(name)
        partial = target.partial(f"{decision.folder}/")
        for name in partial:  # what a backup killed while writing left behind
            target.discard_partial(name)
        result.deleted.append(decision.folder)
        result.files += len(names) + len(partial)
        if on_deleted is not None:
            on_deleted(decision, len(names))
    return result
