"""``backup prune``: retention that never breaks a chain a kept backup needs, never touches a backup that is
running, and never leaves a home without a restorable full backup. Plan (pure), then act.

Each home's storage group is pruned on its own (a target may be shared by many homes): ``plan_prune`` keeps
the newest N *whole* full backups (backup/catalog.py: the manifest and every file it lists, with its size) and
every complete set newer than the oldest of them. Older complete sets are deleted unless a kept set builds on
them (``based_on``, followed transitively) or a running backup builds on them (its lease names its base). A full
that is not whole does not count towards N, so a damaged newest full never costs the last restorable one; when
a group has no whole full, no complete set of it is deleted. "Newer" follows the log stream and its generations
(``catalog.age``), not the clock time in an id.

A set without a manifest is deleted only when it is dead: its lease (backup/lease.py) ran out or its holder is
gone. A running backup's set is kept, and so is a set whose manifest cannot be read (for a person to look at).

With ``--verified-within AGE`` a full counts towards N only when ``backup verify`` passed on it within AGE
(backup/verified.py); newer fulls are kept anyway, being newer than the oldest kept one.

``apply_prune`` deletes, newest set first, each set's manifest before its other files, then what a backup killed
while writing left in its folder: a set that is half deleted is simply incomplete, and every remaining complete
set still has the sets it builds on. Just before deleting a set it looks at the set again and leaves it alone
if it changed since the plan was made (a manifest appeared, its lease was renewed or released).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shadowstore.backup.catalog import RUNNING, UNREADABLE, SetInfo, age
from shadowstore.backup.layout import set_folder
from shadowstore.backup.lease import LEASE_NAME, parse_lease
from shadowstore.backup.manifest import MANIFEST_NAME
from shadowstore.backup.target import Target
from shadowstore.errors import BackupTargetNotFoundError, InvalidParameterError


@dataclass(frozen=True)
class PruneDecision:
    home: str
    sg: str
    backup_id: str
    kind: str
    state: str
    delete: bool
    reason: str
    lease_seen: tuple[str, int] | None = None  # (token, renewed) of the lease the plan judged, if any

    @property
    def folder(self) -> str:
        return set_folder(self.home, self.sg, self.backup_id)

    @property
    def complete(self) -> bool:
        return self.state in ("complete", "damaged")

    def to_dict(self) -> dict[str, object]:
        action = "delete" if self.delete else "keep"
        return {
            "home": self.home,
            "sg": self.sg,
            "id": self.backup_id,
            "kind": self.kind,
            "state": self.state,
            "complete": self.complete,
            "action": action,
            "reason": self.reason,
        }


@dataclass
class PrunePlan:
    keep_full: int
    decisions: list[PruneDecision] = field(default_factory=list)  # per home and storage group, oldest first

    @property
    def to_delete(self) -> list[PruneDecision]:
        return [d for d in self.decisions if d.delete]

    @property
    def to_keep(self) -> list[PruneDecision]:
        return [d for d in self.decisions if not d.delete]

    def to_dict(self) -> dict[str, object]:
        return {"keep_full": self.keep_full, "sets": [d.to_dict() for d in self.decisions]}


def plan_prune(sets: list[SetInfo], keep_full: int, *, proven: set[str] | None = None) -> PrunePlan:
    """Decide for every set whether it is kept or deleted, and why. Pure: reads only its arguments.

    With ``proven`` (set folders whose recent verification passed, backup/verified.py) only those fulls count
    towards the ``keep_full`` kept. Raises InvalidParameterError when ``keep_full`` < 1 (pruning every full
    backup is never what is meant).
    """
    if isinstance(keep_full, bool) or not isinstance(keep_full, int) or keep_full < 1:
        raise InvalidParameterError(f"--keep-full {keep_full!r}: keep at least 1 full backup")
    plan = PrunePlan(keep_full)
    for home, sg in sorted({(s.home, s.sg) for s in sets}):
        group = [s for s in sets if (s.home, s.sg) == (home, sg)]
        complete = sorted((s for s in group if s.complete), key=age)
        reasons = _complete_reasons(complete, group, keep_full, proven)
        ordered = complete + sorted((s for s in group if not s.complete), key=lambda s: s.backup_id)
        for s in ordered:
            delete, reason = reasons[s.backup_id] if s.complete else _incomplete_reason(s)
            seen = (s.lease.token, s.lease.renewed_us) if s.lease else None
            plan.decisions.append(PruneDecision(home, sg, s.backup_id, s.kind, s.state, delete, reason, seen))
    return plan


def _complete_reasons(
    complete: list[SetInfo], group: list[SetInfo], keep_full: int, proven: set[str] | None
) -> dict[str, tuple[bool, str]]:
    """(delete?, why) for each complete set of one home's storage group, ``complete`` oldest first."""
    whole_fulls = [
        s.backup_id for s in complete if s.kind == "full" and s.whole and (proven is None or s.folder in proven)
    ]
    kept_fulls = whole_fulls[-keep_full:]
    if not kept_fulls:
        what = "whole full backup" if proven is None else "whole full backup verified recently enough"
        why = f"there is no {what} to keep: no complete set is pruned"
        return {s.backup_id: (False, why) for s in complete}
    position = {s.backup_id: i for i, s in enumerate(complete)}
    cutoff = kept_fulls[0]
    whole = "whole full backup" + ("" if proven is None else " verified recently enough")
    newest = f"the newest {whole}" if len(kept_fulls) == 1 else f"one of the {len(kept_fulls)} newest {whole}s"
    decided: dict[str, tuple[bool, str]] = {}
    for s in complete:
        if s.backup_id in kept_fulls:
            decided[s.backup_id] = (False, newest)
        elif position[s.backup_id] > position[cutoff]:
            decided[s.backup_id] = (False, _newer_reason(s, group, kept_fulls, cutoff))
        else:
            state = "" if s.whole else f" ({s.why_not_usable()})"
            decided[s.backup_id] = (True, f"older than {cutoff}, the oldest kept full backup{state}")
    _keep_what_kept_sets_need(group, decided)
    return decided


def _newer_reason(s: SetInfo, group: list[SetInfo], kept_fulls: list[str], cutoff: str) -> str:
    if not s.whole:
        return f"newer than {cutoff}, the oldest kept full backup; {s.why_not_usable()}"
    chain = _chain(s, group)
    if chain and chain[-1] in kept_fulls:
        return f"builds on kept full backup {chain[-1]} ({' -> '.join([s.backup_id, *chain])})"
    return f"newer than {cutoff}, the oldest kept full backup"


def _chain(s: SetInfo, group: list[SetInfo]) -> list[str]:
    """The ids ``s`` builds on, nearest first, as far as they are in ``group`` (stops at a missing one). A
    running backup's base (named in its lease) counts as what it builds on."""
    by_id = {g.backup_id: g for g in group}
    chain: list[str] = []
    base = s.manifest.based_on if s.manifest else (s.lease.based_on if s.live and s.lease else None)
    while base and base not in chain:
        chain.append(base)
        current = by_id.get(base)
        if current is None or current.manifest is None:
            break
        base = current.manifest.based_on
    return chain


def _keep_what_kept_sets_need(group: list[SetInfo], decided: dict[str, tuple[bool, str]]) -> None:
    """Turn a delete into a keep for every set that a kept set or a running backup builds on."""
    for s in sorted(group, key=lambda g: g.backup_id, reverse=True):
        if s.complete and (s.backup_id not in decided or decided[s.backup_id][0]):
            continue
        if not s.complete and not s.live:
            continue
        builder = f"kept set {s.backup_id}" if s.complete else f"the running backup {s.backup_id}"
        for needed in _chain(s, group):
            if decided.get(needed, (False, ""))[0]:
                decided[needed] = (False, f"{builder} builds on it")


def _incomplete_reason(s: SetInfo) -> tuple[bool, str]:
    if s.state == UNREADABLE:
        return False, f"its manifest cannot be used ({s.problem}); left for you to inspect"
    if s.state == RUNNING:
        return False, f"running: {s.lease_note}"
    return True, f"incomplete: {s.lease_note}" + (f"; partly written: {', '.join(s.partial)}" if s.partial else "")


@dataclass
class PruneResult:
    deleted: list[str] = field(default_factory=list)  # set folders
    skipped: list[str] = field(default_factory=list)  # set folders that changed since the plan: left alone
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
        if _changed(target, decision, names):
            result.skipped.append(decision.folder)
            continue
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


def _changed(target: Target, decision: PruneDecision, names: list[str]) -> bool:
    """Whether a set planned for deletion as incomplete has since gained a manifest or a renewed lease, or lost
    the lease ``names`` (listed just before) still held.

    Why the last: a backup writes its manifest and then releases its lease. Listed between the two, a set shows
    its lease and no manifest; when the lease is gone a moment later, the backup has just finished, and the
    files listed are a complete set's (the manifest is not among them, so deleting them would damage it)."""
    if decision.complete:
        return False
    if f"{decision.folder}/{MANIFEST_NAME}" in names:
        return True
    if f"{decision.folder}/{LEASE_NAME}" not in names:
        return False
    try:
        lease = parse_lease(target.read_bytes(f"{decision.folder}/{LEASE_NAME}"))
    except BackupTargetNotFoundError:
        return True  # released since the listing: judged again by the next prune
    return lease is not None and (lease.token, lease.renewed_us) != decision.lease_seen and lease.judge()[0]
