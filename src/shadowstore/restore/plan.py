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
* every transaction committed before a set's ``logs_end_us`` is in its logs or earlier ones: a path reaches
  time T when one of its sets has ``logs_end_us > T``, generation N when it holds logs through N.

When nothing can reach the target the planner refuses with the exact missing piece: -560 when no full backup
can start it, -557 when the chain is broken (naming the set that is missing or incomplete and the set that
needs it) or a generation is missing (naming it and the set that should hold it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from shadowstore.backup.catalog import SetInfo, age
from shadowstore.backup.manifest import DatabaseEntry, FileEntry, Manifest
from shadowstore.errors import InvalidParameterError, MissingRestoreLogFilesError, NoRestorableBackupError
from shadowstore.format.common import iso_time

LATEST, AT_TIME, AT_GENERATION = "latest", "time", "generation"


@dataclass(frozen=True)
class RestoreTarget:
    """How far a restore goes: the latest state the logs hold, the transactions committed at or before a
    time (µs since 1970, UTC), or the end of a log generation."""

    kind: str
    until_us: int | None = None
    until_gen: int | None = None

    @classmethod
    def latest(cls) -> RestoreTarget:
        return cls(LATEST)

    @classmethod
    def at_time(cls, until_us: int) -> RestoreTarget:
        return cls(AT_TIME, until_us=until_us)

    @classmethod
    def at_generation(cls, until_gen: int) -> RestoreTarget:
        if until_gen < 1:
            raise InvalidParameterError(f"generation {until_gen}: generations start at 1")
        return cls(AT_GENERATION, until_gen=until_gen)

    def describe(self) -> str:
        if self.until_us is not None:
            return f"the transactions committed at or before {iso_time(self.until_us)}"
        if self.until_gen is not None:
            return f"the end of log generation {self.until_gen}"
        return "the latest state"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "until": iso_time(self.until_us) if self.until_us is not None else None,
            "until_us": self.until_us,
            "until_gen": self.until_gen,
        }


@dataclass(frozen=True)
class DatabaseSource:
    backup_id: str
    database: DatabaseEntry
    entry: FileEntry


@dataclass(frozen=True)
class LogSource:
    generation: int
    backup_id: str
    entry: FileEntry


@dataclass(frozen=True)
class RestorePlan:
    home: str  # the home whose backup sets it uses
    sg: str
    log_base: str
    log_signature: dict[str, Any]
    target: RestoreTarget
    sets: list[SetInfo]  # the path: the full (or copy) first, then what is applied on it
    databases: list[DatabaseSource]
    logs: list[LogSource]  # contiguous generations first_gen..last_gen
    first_gen: int
    last_gen: int
    live_from: int | None = None  # continue with the live log folder from this generation
    ignored: tuple[str, ...] = ()  # newer sets left out, each with why (incomplete ones)

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": self.home,
            "sg": self.sg,
            "log_base": self.log_base,
            "log_signature": self.log_signature,
            "target": self.target.to_dict(),
            "sets": [
                {"id": s.backup_id, "kind": s.kind, "first_gen": _m(s).first_gen, "last_gen": _m(s).last_gen}
                for s in self.sets
            ],
            "databases": [
                {
                    "store": d.database.store,
                    "file": d.database.file,
                    "backup_id": d.backup_id,
                    "name": d.entry.name,
                    "size": d.entry.size,
                    "replay_start_gen": d.database.replay_start_gen,
                }
                for d in self.databases
            ],
            "logs": [
                {
                    "generation": log.generation,
                    "backup_id": log.backup_id,
                    "name": log.entry.name,
                    "size": log.entry.size,
                }
                for log in self.logs
            ],
            "first_gen": self.first_gen,
            "last_gen": self.last_gen,
            "live_from": self.live_from,
            "ignored": list(self.ignored),
            "bytes": sum(d.entry.size for d in self.databases) + sum(log.entry.size for log in self.logs),
        }

    def describe(self) -> list[str]:
        """The plan in words, one line per set, for ``restore plan``."""
        lines = [f"Restore of {self.sg!r} of home {self.home} to {self.target.describe()}:"]
        for s in self.sets:
            m = _m(s)
            what = []
            dbs = [d for d in self.databases if d.backup_id == s.backup_id]
            if dbs:
                what.append(
                    "stores "
                    + ", ".join(f"{d.database.store} ({d.database.file}, {d.entry.size:,} bytes)" for d in dbs)
                )
            gens = [log.generation for log in self.logs if log.backup_id == s.backup_id]
            if gens:
                what.append(f"logs {min(gens)}-{max(gens)}")
            if not what:
                what.append(f"nothing needed (its logs {m.first_gen}-{m.last_gen} are not needed)")
            lines.append(f"  {s.kind:<12} {s.backup_id}  {'; '.join(what)}")
        lines.append(
            f"Replay generations {self.first_gen}-{self.last_gen} from the backups"
            + (f", then the live logs from generation {self.live_from} on" if self.live_from is not None else "")
            + f"; {self.to_dict()['bytes']:,} bytes to copy."
        )
        files = len(self.databases) + len({(log.backup_id, log.entry.name) for log in self.logs})
        lines.append(f"All {files} files it needs are in the target with the sizes their manifests record.")
        lines += [f"Not used: {why}" for why in self.ignored]
        return lines


def plan_restore(
    sets: list[SetInfo], target: RestoreTarget, *, sg: str | None = None, roll_forward_live: bool = False
) -> RestorePlan:
    """The plan that restores ``sg`` (the only storage group in ``sets`` when None) to ``target``.

    Raises InvalidParameterError (several storage groups and none chosen), NoRestorableBackupError (-560) and
    MissingRestoreLogFilesError (-557) with the exact missing piece.
    """
    homes = sorted({s.home for s in sets})
    if len(homes) > 1:
        raise InvalidParameterError(f"a restore plan uses the backups of one home; these are of {', '.join(homes)}")
    sg = _choose_sg(sets, sg)
    mine = [s for s in sets if s.sg == sg]
    complete = {s.backup_id: s for s in mine if s.whole}
    bases = sorted(
        (s for s in complete.values() if s.kind in ("full", "copy") and _m(s).databases),
        key=age,
        reverse=True,
    )
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
    plans, refusal = _attempt(usable, complete, mine, target, roll_forward_live and target.kind == LATEST)
    if not plans and roll_forward_live and target.kind != LATEST:
        plans, _ = _attempt(usable, complete, mine, target, True)
    if not plans:
        assert refusal is not None
        raise refusal
    plan = max(plans, key=lambda p: p.last_gen)  # the first (newest base) of the furthest
    ignored = tuple(
        f"backup set {s.backup_id} ({s.kind}) is {s.why_not_usable()}"
        for s in mine
        if not s.whole and (age(s) > age(plan.sets[0]) if s.manifest else s.backup_id > plan.sets[0].backup_id)
    )
    return dataclasses.replace(plan, ignored=ignored)


def _attempt(
    usable: list[SetInfo], complete: dict[str, SetInfo], mine: list[SetInfo], target: RestoreTarget, live: bool
) -> tuple[list[RestorePlan], MissingRestoreLogFilesError | None]:
    """Plans from the usable full backups, newest first (all of them for the latest state, else up to the
    first that works), and the refusal of the newest that did not."""
    plans: list[RestorePlan] = []
    refusal: MissingRestoreLogFilesError | None = None
    for base in usable:
        try:
            plans.append(_plan_from(base, complete, mine, target, live))
        except MissingRestoreLogFilesError as exc:
            refusal = refusal or exc
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
    base: SetInfo, complete: dict[str, SetInfo], mine: list[SetInfo], target: RestoreTarget, live: bool
) -> RestorePlan:
    chain = _incremental_chain(base, complete)
    differential = _newest_differential(base, complete)
    paths = [chain] if differential is None else [[base, differential], chain]
    live_from: int | None = None
    if target.kind == LATEST:
        # the path that goes furthest; a differential (one set) first on a tie
        path = max(paths, key=lambda p: (_m(p[-1]).last_gen, -len(p)))
        _refuse_broken_tail(base, path, complete, mine)
        if live:
            live_from = _m(path[-1]).last_gen + 1
        return _with_logs(base, path, target, live_from)
    # the shortest prefix of each path that reaches the target; a differential first on a tie
    reaching = [p for p in (_prefix_reaching(path, target) for path in paths) if p is not None]
    if reaching:
        path = min(reaching, key=lambda p: (_m(p[-1]).last_gen, len(p)))
    elif live:
        path = max(paths, key=lambda p: _m(p[-1]).last_gen)
        live_from = _m(path[-1]).last_gen + 1
    else:
        raise MissingRestoreLogFilesError(_short_of(base, paths, complete, mine, target))
    return _with_logs(base, path, target, live_from)


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
        if target.until_us is not None and m.logs_end_us is not None and m.logs_end_us > target.until_us:
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
            why = f"is {found.why_not_usable()}" if found is not None else "is not in the target"
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


def _refuse_broken_tail(base: SetInfo, path: list[SetInfo], complete: dict[str, SetInfo], mine: list[SetInfo]) -> None:
    """The latest state is not the end of ``path`` when a newer backup exists that cannot be joined to it."""
    end = _m(path[-1]).last_gen
    newer = [(s, why) for s, why in _broken_links(base, complete, mine) if _m(s).last_gen > end]
    if newer:
        s, why = newer[0]
        raise MissingRestoreLogFilesError(
            f"the chain of backups of {base.sg!r} is broken: {why}; without it the restore ends at generation "
            f"{end}, before the logs of {s.backup_id} ({_m(s).first_gen}-{_m(s).last_gen})",
            hint=f"restore with --until-gen {end} to use what is intact, or find the missing backup set",
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
            f", which holds every transaction committed before {iso_time(end.logs_end_us)}"
            if end.logs_end_us
            else " (when it ends is not recorded)"
        )
    broken = [why for s, why in _broken_links(base, complete, mine) if _m(s).last_gen > end.last_gen]
    if broken:
        text += "; " + broken[0]
    else:
        text += "; add --roll-forward-live to continue with the live logs"
    return text


def _with_logs(base: SetInfo, path: list[SetInfo], target: RestoreTarget, live_from: int | None) -> RestorePlan:
    """The plan: the databases of ``base`` and generations from their replay start to the target, each from
    the first set of ``path`` that holds it."""
    mb = _m(base)
    databases = [DatabaseSource(base.backup_id, d, _db_file(mb, d)) for d in mb.databases]
    low = min(d.replay_start_gen for d in mb.databases)
    high = _m(path[-1]).last_gen
    if target.until_gen is not None:
        high = min(high, target.until_gen)
    holders: dict[int, tuple[str, FileEntry]] = {}
    for s in path:
        for entry in _m(s).logs():
            if entry.generation is not None and entry.generation not in holders:
                holders[entry.generation] = (s.backup_id, entry)
    missing = [g for g in range(low, high + 1) if g not in holders]
    if missing:
        where = next(s for s in path if _m(s).first_gen <= missing[0] <= _m(s).last_gen or s is path[-1])
        raise MissingRestoreLogFilesError(
            f"the restore of {base.sg!r} needs log generations {low}-{high}, but {_are(missing)} in no backup "
            "set of the chain "
            f"({where.kind} backup {where.backup_id} holds {_m(where).first_gen}-{_m(where).last_gen})"
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
        sets=[s for s in path if s.backup_id in {x.backup_id for x in logs} | {base.backup_id}],
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
