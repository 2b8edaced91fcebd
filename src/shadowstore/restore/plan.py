"""Restore planning: which backup sets and which log generations bring a storage group to a target.

    plan = plan_restore(list_sets(target, home=home_id), RestoreTarget.at_time(t), sg="First Storage Group")
    for line in plan.describe(): print(line)

Sets are ordered by their log stream and generations (``catalog.age``), never by the clock time in an id.
Pure: it reads only the catalog it is given (manifests, and the files the target listed). It plans with the
sets of one home only (backup/layout.py), and only with *whole* sets: a set with a file missing or of another
size than its manifest records is left out and named, so the plan falls back to what is intact. A plan starts
from a full (or copy) backup whose database copies are not newer than the target, then applies either the
chain of incrementals built on that full or its newest differential, and takes every log generation from the
databases' replay start up to the target, each from the first set of the path that holds it. With
``roll_forward_live`` it continues after the backups with the live storage group's newer logs (the restore
checks that they are there).

What a backup set says about time (see backup/manifest.py):

* a database copy holds no transaction committed after its ``max_commit_us`` and is consistent from its
  ``replay_start_gen``: it can start a restore to time T when ``max_commit_us <= T``, to generation N when
  ``replay_start_gen <= N``;
* every transaction committed before a set's ``logs_end_us`` is in its logs or earlier ones, and none is
  committed at it (the creation time of the next generation: the log writer gives out each time once, in log
  order): a path reaches time T when one of its sets has ``logs_end_us >= T``, generation N when it holds logs
  through N.

When nothing can reach the target the planner refuses with the exact missing piece: -560 when no full backup
can start it, -557 when the chain is broken (naming the set that is missing or incomplete and the set that
needs it) or a generation is missing (naming it and the set that should hold it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable

from shadowstore.backup.catalog import SetInfo, age
from shadowstore.backup.manifest import DatabaseEntry, FileEntry, Manifest
from shadowstore.errors import InvalidParameterError, MissingRestoreLogFilesError, NoRestorableBackupError
from shadowstore.format.common import iso_time
from shadowstore.restore.planmodel import (
    AT_GENERATION,
    AT_TIME,
    LATEST,
    DatabaseSource,
    LogSource,
    RestorePlan,
    RestoreTarget,
)

__all__ = [
    "AT_GENERATION",
    "AT_TIME",
    "LATEST",
    "DatabaseSource",
    "LogSource",
    "RestorePlan",
    "RestoreTarget",
    "plan_restore",
]


def plan_restore(
    sets: list[SetInfo],
    target: RestoreTarget,
    *,
    sg: str | None = None,
    roll_forward_live: bool = False,
    skip: Collection[str] = (),
    damaged: Collection[tuple[str, str]] = (),
    base: str | None = None,
) -> RestorePlan:
    """The plan that restores ``sg`` (the only storage group in ``sets`` when None) to ``target``.

    Restoring around damage: the sets whose ids are in ``skip`` are left out; a file named in ``damaged``
    ((backup id, file name): found not to match its manifest) is never used, so a full backup with a damaged
    store copy is no starting point, and a damaged log is taken from another set of the stream that holds it.
    For the latest state, generations after the chosen path are taken from any whole set of the same log
    stream, so an older full plus the logs of newer sets reaches as far as the newest backup would. ``base``
    names the full (or copy) backup to start from.

    Raises InvalidParameterError (several storage groups and none chosen, an unknown --skip-set or --set),
    NoRestorableBackupError (-560) and MissingRestoreLogFilesError (-557) with the exact missing piece.
    """
    homes = sorted({s.home for s in sets})
    if len(homes) > 1:
        raise InvalidParameterError(f"a restore plan uses the backups of one home; these are of {', '.join(homes)}")
    sg = _choose_sg(sets, sg)
    mine = [s for s in sets if s.sg == sg]
    unknown = sorted(set(skip) - {s.backup_id for s in mine})
    if unknown:
        raise InvalidParameterError(f"--skip-set {', '.join(unknown)}: no such backup set of {sg!r}")
    bad = frozenset(damaged)
    complete = {s.backup_id: s for s in mine if s.whole and s.backup_id not in skip}
    donors = [s for s in mine if s.manifest is not None and s.backup_id not in skip]  # sets whose logs may serve
    bases = sorted(
        (
            s
            for s in complete.values()
            if s.kind in ("full", "copy") and _m(s).databases and not _damaged_stores(s, bad)
        ),
        key=age,
        reverse=True,
    )
    if base is not None:
        if base not in complete or complete[base] not in bases:
            raise InvalidParameterError(
                f"--set {base}: not a whole, undamaged full or copy backup of {sg!r} that this restore can start from"
            )
        bases = [complete[base]]
    if not bases:
        others = sorted({s.sg for s in sets} - {sg})
        hint = f"take a full backup of {sg!r} first" + (
            f"; this target holds backups of {', '.join(repr(g) for g in others)}" if others else ""
        )
        raise NoRestorableBackupError(_no_base_message(sg, mine), hint=hint)
    usable = [b for b in bases if _starts_before(b, target)]
    if not usable:
        oldest = bases[-1]
        raise NoRestorableBackupError(
            f"no full backup of {sg!r} is old enough to restore {target.describe()}: the oldest, "
            f"{oldest.backup_id}, {_newness(oldest, target)}"
        )
    # the newest full backup that reaches the target; for the latest state the one that goes furthest (a
    # copy backup newer than a full may end before the incrementals built on the full). The live logs serve
    # only when no backup reaches the target: an older full with its chain beats a newer one plus live logs.
    live = roll_forward_live and target.kind == LATEST
    plans, refusal = _attempt(usable, complete, donors, mine, target, live, bad)
    if target.kind == LATEST and (not plans or max(p.last_gen for p in plans) < _reach(donors, plans)):
        # a set the natural chain needed is damaged or skipped: the logs of the stream's other sets go on
        further, refused = _attempt(usable, complete, donors, mine, target, live, bad, extend=True)
        if further and (not plans or max(p.last_gen for p in further) > max(p.last_gen for p in plans)):
            plans, refusal = further, refused
    if not plans and target.kind != LATEST:
        # no chain reaches the target: the logs of the stream's other sets may carry one on (as for the latest
        # state), before the live logs are asked for
        plans, _ = _attempt(usable, complete, donors, mine, target, False, bad, extend=True)
    if not plans and roll_forward_live and target.kind != LATEST:
        # why every base: the live logs must start where the backups end, so the path that reaches furthest
        # (chosen below) needs the fewest of them
        plans = [p for b in usable for p in _attempt([b], complete, donors, mine, target, True, bad)[0]]
    if not plans:
        assert refusal is not None
        raise refusal
    # The newest log stream first (as prune and --until-gen judge sets: catalog.age), then the furthest plan in
    # it, the first (newest base) of those: generation numbers of two streams say nothing about which is newer,
    # since a stream begun by a restore or by doctor may number from 1 again.
    newest = max(plans, key=lambda p: age(p.sets[0]))
    plan = max((p for p in plans if p.log_signature == newest.log_signature), key=lambda p: p.last_gen)
    ignored = [
        f"backup set {s.backup_id} ({s.kind}) is {s.why_not_usable()}"
        for s in mine
        if not s.whole and (age(s) > age(plan.sets[0]) if s.manifest else s.backup_id > plan.sets[0].backup_id)
    ]
    reach, held = _reach(donors, [plan]), _held(donors, plan)
    if target.kind == LATEST and reach > plan.last_gen:  # why: "the latest state" must not hide an older one
        ignored.append(
            f"generations {plan.last_gen + 1}-{reach} of this log stream, which the backups hold: the sets that "
            f"would carry the restore there cannot be used (see above), so it stops at generation {plan.last_gen}"
        )
    beyond = sorted(g for g in held if g > reach)
    if target.kind == LATEST and beyond:
        ignored.append(
            f"generations {_ranges(beyond)} of this log stream, which backups hold past a gap: generation "
            f"{reach + 1} is in no backup set, so no restore from these sets reaches them (a set that starts after "
            "the gap, a full backup, may be one this restore cannot use: see above)"
        )
    newer = [s for s in bases if age(s) > age(plan.sets[0]) and _m(s).log_signature != plan.log_signature]
    if newer:  # why say so: a restore of the latest state that is not of the newest stream restores older data
        ignored.append(
            f"the newer backups of another log stream (from {newer[0].backup_id}): they cannot start this restore"
            + (f": {refusal.message}" if refusal is not None else "")
        )
    ignored += [f"backup set {i} was skipped (--skip-set)" for i in sorted(set(skip))]
    used = {(log.backup_id, log.entry.name) for log in plan.logs} | {
        (d.backup_id, d.entry.name) for d in plan.databases
    }
    ignored += [f"{name} of backup set {i} does not match its manifest: not used" for i, name in sorted(bad - used)]
    created = [str(s.manifest.log_signature.get("created") or "") for s in mine if s.manifest is not None]
    return dataclasses.replace(plan, ignored=tuple(ignored), newest_stream=max(created, default="") or None)


def _reach(donors: list[SetInfo], plans: list[RestorePlan]) -> int:
    """How far the sets of a plan's log stream carry on after its end without a gap: the newest generation
    such that every one from the plan's end to it is in some set (the furthest of ``plans``). A generation
    after a gap is not counted: no restore from these plans can replay it."""
    reach = 0
    for plan in plans:
        held = _held(donors, plan)
        end = plan.last_gen
        while end + 1 in held:
            end += 1
        reach = max(reach, end)
    return reach


def _held(donors: list[SetInfo], plan: RestorePlan) -> set[int]:
    """The generations of ``plan``'s log stream that some set holds."""
    return _generations(s for s in donors if _m(s).log_signature == plan.log_signature)


def _generations(sets: Iterable[SetInfo]) -> set[int]:
    """The log generations ``sets`` hold."""
    return {entry.generation for s in sets for entry in _m(s).logs() if entry.generation is not None}


def _intact(refusal: MissingRestoreLogFilesError) -> int:
    """The generation a refusal's hint says to stop at (0 when it names none)."""
    value = refusal.details.get("intact_gen")
    return value if isinstance(value, int) else 0


def _damaged_stores(s: SetInfo, bad: frozenset[tuple[str, str]]) -> bool:
    return any((s.backup_id, f.name) in bad for f in _m(s).files if f.role == "db")


def _attempt(
    usable: list[SetInfo],
    complete: dict[str, SetInfo],
    donors: list[SetInfo],
    mine: list[SetInfo],
    target: RestoreTarget,
    live: bool,
    bad: frozenset[tuple[str, str]],
    extend: bool = False,
) -> tuple[list[RestorePlan], MissingRestoreLogFilesError | None]:
    """Plans from the usable full backups, newest first (all of them for the latest state, else up to the
    first that works), and the refusal of the newest that did not, or of an older one whose intact part goes
    further (its hint names the furthest --until-gen that works)."""
    plans: list[RestorePlan] = []
    refusal: MissingRestoreLogFilesError | None = None
    for base in usable:
        try:
            plans.append(_plan_from(base, complete, donors, mine, target, live, bad, extend))
        except MissingRestoreLogFilesError as exc:
            # why not simply the newest base's: its hint may name a stop short of what an older base reaches
            if refusal is None or _intact(exc) > _intact(refusal):
                refusal = exc
        if plans and target.kind != LATEST:
            break
    return plans, refusal


def _m(s: SetInfo) -> Manifest:
    assert s.manifest is not None, s.backup_id
    return s.manifest


def _choose_sg(sets: list[SetInfo], sg: str | None) -> str:
    if sg is not None:
        return sg
    groups = sorted({s.sg for s in sets})
    if len(groups) > 1:
        raise InvalidParameterError(
            "the target holds backups of several storage groups: " + ", ".join(repr(g) for g in groups),
            hint="choose one with --sg",
        )
    if not groups:
        raise NoRestorableBackupError(
            "the target holds no backup sets",
            hint="take a full backup first ('shadowstore backup run --all --kind full'), or name the target that "
            "holds them with --from",
        )
    return groups[0]


def _no_base_message(sg: str, mine: list[SetInfo]) -> str:
    if not mine:
        return f"the target holds no backup of {sg!r}"
    bad = [s for s in mine if not s.whole and s.kind in ("full", "copy")]
    text = f"the target holds no whole full or copy backup of {sg!r}"
    if bad:
        text += " (not usable: " + "; ".join(f"{s.backup_id}: {s.why_not_usable()}" for s in bad) + ")"
    return text


def _starts_before(base: SetInfo, target: RestoreTarget) -> bool:
    """Whether every database copy of ``base`` holds nothing after ``target``."""
    dbs = _m(base).databases
    if target.until_gen is not None:
        return all(d.replay_start_gen <= target.until_gen for d in dbs)
    if target.until_us is not None:
        return all(d.max_commit_us is not None and d.max_commit_us <= target.until_us for d in dbs)
    return True


def _newness(base: SetInfo, target: RestoreTarget) -> str:
    dbs = _m(base).databases
    if target.until_gen is not None:
        return "is consistent only from generation " + str(max(d.replay_start_gen for d in dbs))
    unknown = [d.file for d in dbs if d.max_commit_us is None]
    if unknown:
        return "does not record how new its database copies are (" + ", ".join(unknown) + ")"
    newest = max(d.max_commit_us or 0 for d in dbs)
    return f"may hold transactions committed up to {iso_time(newest)}"


def _plan_from(
    base: SetInfo,
    complete: dict[str, SetInfo],
    donors: list[SetInfo],
    mine: list[SetInfo],
    target: RestoreTarget,
    live: bool,
    bad: frozenset[tuple[str, str]],
    extend: bool,
) -> RestorePlan:
    chain = _incremental_chain(base, complete)
    differential = _newest_differential(base, complete)
    paths = [chain] if differential is None else [[base, differential], chain]
    live_from: int | None = None
    stream = [s for s in donors if _m(s).log_signature == _m(base).log_signature]
    if target.kind == LATEST:
        # the path that goes furthest; a differential (one set) first on a tie
        path = max(paths, key=lambda p: (_m(p[-1]).last_gen, -len(p)))
        plan = _with_logs(base, path, target, None, stream, bad, extend)
        _refuse_broken_tail(base, plan.last_gen, complete, mine)
        return dataclasses.replace(plan, live_from=plan.last_gen + 1) if live else plan
    # the shortest prefix of each path that reaches the target; a differential first on a tie
    reaching = [p for p in (_prefix_reaching(path, target) for path in paths) if p is not None]
    if not reaching and extend:
        onward = _onward(max(paths, key=lambda p: _m(p[-1]).last_gen), stream, target)
        reaching = [onward] if onward is not None else []
    if reaching:
        path = min(reaching, key=lambda p: (_m(p[-1]).last_gen, len(p)))
    elif live:
        path = max(paths, key=lambda p: _m(p[-1]).last_gen)
        live_from = _m(path[-1]).last_gen + 1
    else:
        raise MissingRestoreLogFilesError(_short_of(base, paths, complete, mine, target))
    return _with_logs(base, path, target, live_from, stream, bad)


def _onward(path: list[SetInfo], stream: list[SetInfo], target: RestoreTarget) -> list[SetInfo] | None:
    """``path`` and the nearest other set of the log stream that reaches ``target`` past its end, whose logs
    (with those of the stream's other sets in between) carry the restore on, as they do for the latest state: a
    skipped or damaged incremental, or a copy backup as the base, need not stop a restore to a point. None when
    no set of the stream reaches it."""
    end = _m(path[-1]).last_gen
    held = _generations(stream)
    later = [
        s
        for s in stream
        if s not in path
        and _m(s).last_gen > end
        and _prefix_reaching([s], target)
        and all(g in held for g in range(end + 1, _m(s).first_gen))
    ]
    return [*path, min(later, key=lambda s: _m(s).last_gen)] if later else None


def _incremental_chain(base: SetInfo, complete: dict[str, SetInfo]) -> list[SetInfo]:
    """``base`` and the incrementals each built on the one before, as long as the logs continue."""
    chain = [base]
    if base.kind != "full":
        return chain
    while True:
        last = _m(chain[-1])
        following = [
            s
            for s in complete.values()
            if s.kind == "incremental"
            and _m(s).based_on == last.backup_id
            and _m(s).log_signature == last.log_signature
            and _m(s).first_gen <= last.last_gen + 1 <= _m(s).last_gen
        ]
        if not following:
            return chain
        chain.append(max(following, key=age))


def _newest_differential(base: SetInfo, complete: dict[str, SetInfo]) -> SetInfo | None:
    diffs = [
        s
        for s in complete.values()
        if s.kind == "differential"
        and _m(s).based_on == base.backup_id
        and _m(s).log_signature == _m(base).log_signature
        and _m(s).first_gen <= _m(base).last_gen + 1
    ]
    return max(diffs, key=age) if diffs else None


def _prefix_reaching(path: list[SetInfo], target: RestoreTarget) -> list[SetInfo] | None:
    for i, s in enumerate(path):
        m = _m(s)
        if target.until_gen is not None and m.last_gen >= target.until_gen:
            return path[: i + 1]
        if target.until_us is not None and m.logs_end_us is not None and m.logs_end_us >= target.until_us:
            return path[: i + 1]
    return path if target.kind == "latest" else None


def _broken_links(base: SetInfo, complete: dict[str, SetInfo], mine: list[SetInfo]) -> list[tuple[SetInfo, str]]:
    """Complete incrementals and differentials newer than ``base`` that cannot be joined to a complete full
    backup: each with the missing piece in words (a set that is missing or incomplete, a gap in the logs, or
    another log stream)."""
    by_id = {s.backup_id: s for s in mine}
    broken = []
    for s in sorted(complete.values(), key=age):
        if s.kind not in ("incremental", "differential") or age(s) < age(base):
            continue
        why = _missing_link(s, complete, by_id)
        if why is not None:
            broken.append((s, why))
    return broken


def _missing_link(s: SetInfo, complete: dict[str, SetInfo], by_id: dict[str, SetInfo]) -> str | None:
    """What keeps ``s`` from a complete full backup (None: nothing)."""
    current = s
    while True:
        m = _m(current)
        parent_id = m.based_on
        if parent_id is None:
            return None if current.kind == "full" else f"{current.kind} backup {current.backup_id} builds on nothing"
        parent = complete.get(parent_id)
        if parent is None:
            found = by_id.get(parent_id)
            if found is None:
                why = "is not in the target"
            elif found.whole:  # why: a whole set is left out of ``complete`` only when the restore skips it
                why = "was left out with --skip-set"
            else:
                why = f"is {found.why_not_usable()}"
            return f"{current.kind} backup {current.backup_id} builds on {parent_id}, which {why}"
        p = _m(parent)
        if p.log_signature != m.log_signature:
            return f"{current.kind} backup {current.backup_id} belongs to another log stream than {parent_id}"
        if m.first_gen > p.last_gen + 1:
            return (
                f"{current.kind} backup {current.backup_id} starts at log generation {m.first_gen}, but "
                f"{parent_id} ends at {p.last_gen}: {_are(list(range(p.last_gen + 1, m.first_gen)))} in no backup"
            )
        if parent.kind in ("full", "copy"):
            return None
        current = parent


def _refuse_broken_tail(base: SetInfo, end: int, complete: dict[str, SetInfo], mine: list[SetInfo]) -> None:
    """The latest state is not generation ``end`` when a newer backup exists that cannot be joined to it."""
    newer = [(s, why) for s, why in _broken_links(base, complete, mine) if _m(s).last_gen > end]
    if newer:
        s, why = newer[0]
        raise MissingRestoreLogFilesError(
            f"the chain of backups of {base.sg!r} is broken: {why}; without it the restore ends at generation "
            f"{end}, before the logs of {s.backup_id} ({_m(s).first_gen}-{_m(s).last_gen})",
            hint=f"restore with --until-gen {end} to use what is intact, or find the missing backup set",
            intact_gen=end,
        )


def _short_of(
    base: SetInfo, paths: list[list[SetInfo]], complete: dict[str, SetInfo], mine: list[SetInfo], target: RestoreTarget
) -> str:
    """Why no path from ``base`` reaches ``target``."""
    furthest = max(paths, key=lambda p: _m(p[-1]).last_gen)
    end = _m(furthest[-1])
    text = f"the backups of {base.sg!r} from {base.backup_id} on do not reach {target.describe()}: they end at "
    text += f"generation {end.last_gen}"
    if target.until_us is not None:
        text += (
            f", which holds every transaction committed up to {iso_time(end.logs_end_us)}"
            if end.logs_end_us
            else " (when it ends is not recorded)"
        )
    broken = [why for s, why in _broken_links(base, complete, mine) if _m(s).last_gen > end.last_gen]
    if broken:
        text += "; " + broken[0]
    else:
        text += "; add --roll-forward-live to continue with the live logs"
    return text


def _with_logs(
    base: SetInfo,
    path: list[SetInfo],
    target: RestoreTarget,
    live_from: int | None,
    stream: list[SetInfo],
    bad: frozenset[tuple[str, str]],
    extend: bool = False,
) -> RestorePlan:
    """The plan: the databases of ``base`` and generations from their replay start to the target, each from
    the first set of ``path`` that holds an undamaged copy, else from another set of the ``stream``; for the
    latest state, on past the path's end as long as the stream's sets hold the next generation."""
    mb = _m(base)
    databases = [DatabaseSource(base.backup_id, d, _db_file(mb, d)) for d in mb.databases]
    low = min(d.replay_start_gen for d in mb.databases)
    high = _m(path[-1]).last_gen
    if target.until_gen is not None:
        high = min(high, target.until_gen)
    holders: dict[int, tuple[str, FileEntry]] = {}
    others = sorted((s for s in stream if s not in path), key=age)
    for s in [*path, *others]:
        for entry in _m(s).logs():
            gen = entry.generation
            intact = s.whole or s.sizes.get(entry.name) == entry.stored_size  # a damaged set's intact logs serve
            if gen is not None and gen not in holders and intact and (s.backup_id, entry.name) not in bad:
                holders[gen] = (s.backup_id, entry)
    while extend and target.kind == LATEST and high + 1 in holders:
        high += 1
    missing = [g for g in range(low, high + 1) if g not in holders]
    if missing:
        where = next(s for s in path if _m(s).first_gen <= missing[0] <= _m(s).last_gen or s is path[-1])
        # why a hint only from the full's end on: before it the restored stores are not yet consistent
        stop_before = missing[0] - 1 if missing[0] - 1 >= mb.last_gen else None
        raise MissingRestoreLogFilesError(
            f"the restore of {base.sg!r} needs log generations {low}-{high}, but {_are(missing)} in no backup "
            "set of the chain "
            f"({where.kind} backup {where.backup_id} holds {_m(where).first_gen}-{_m(where).last_gen})",
            hint=None
            if stop_before is None
            else f"restore with --until-gen {stop_before} to use what is intact before the gap, or find the backup set "
            f"that holds generation {missing[0]}; 'shadowstore backup list' shows them",
            intact_gen=stop_before or 0,
        )
    logs = [LogSource(g, *holders[g]) for g in range(low, high + 1)]
    if live_from is not None and target.until_gen is not None and live_from > target.until_gen:
        live_from = None
    return RestorePlan(
        home=base.home,
        sg=base.sg,
        log_base=mb.log_base,
        log_signature=mb.log_signature,
        target=target,
        sets=[s for s in [*path, *others] if s.backup_id in {x.backup_id for x in logs} | {base.backup_id}],
        databases=databases,
        logs=logs,
        first_gen=low,
        last_gen=high,
        live_from=live_from,
    )


def _db_file(m: Manifest, d: DatabaseEntry) -> FileEntry:
    for entry in m.files:
        if entry.role == "db" and entry.source == d.file:
            return entry
    raise MissingRestoreLogFilesError(f"backup set {m.backup_id} lists store {d.store} but has no file for {d.file}")


def _are(gens: list[int]) -> str:
    """``generation 6 is`` / ``generations 3-4, 9 are``."""
    return f"generation {gens[0]} is" if len(gens) == 1 else f"generations {_ranges(gens)} are"


def _ranges(gens: list[int]) -> str:
    parts, start = [], gens[0]
    for prev, cur in zip(gens, [*gens[1:], None], strict=True):
        if cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur if cur is not None else start
    return ", ".join(parts)
