"""Restore planning without I/O: backup sets are made up from a simulated log stream.

The stream has generations 1..N; generation g is created at ``T0 + g * 1000`` µs and its commits are made before
generation g + 1 is created. A backup taken when generation ``b`` is the newest closed one holds logs up to b,
records ``logs_end_us`` = creation of b + 1, and (full/copy) database copies consistent from the checkpoint's
generation that may hold commits up to just before b + 1 was created. The property tests are deterministic in CI
(SHADOWSTORE_LONG=1 explores, tests/conftest.py); a failing one prints the history and the target.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowstore.backup.catalog import SetInfo
from shadowstore.backup.manifest import DatabaseEntry, FileEntry, Manifest
from shadowstore.errors import InvalidParameterError, MissingRestoreLogFilesError, NoRestorableBackupError
from shadowstore.format.common import iso_time
from shadowstore.restore.plan import RestoreTarget, plan_restore
from tests.conftest import examples

T0 = 1_790_000_000_000_000
SG = "First Storage Group"
HOME = "mail01-0123abcd"
SIGNATURE = {"random": 1, "created": "2026-11-25T10:00:00+00:00", "computer": "test"}


def created(gen: int) -> int:
    return T0 + gen * 1000


@dataclass
class History:
    """Backups of one storage group, in the order they were taken."""

    sets: list[SetInfo] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _id(self, kind: str) -> str:
        n = next(self.counter)
        return f"20261125T10{n // 60:02d}{n % 60:02d}.000000Z-{kind}-{n:06x}"

    def take(
        self,
        kind: str,
        closed: int,
        *,
        checkpoint: int | None = None,
        based_on: SetInfo | None = None,
        first: int | None = None,
        signature: dict[str, object] | None = None,
        stores: int = 2,
    ) -> SetInfo:
        """A backup taken when generation ``closed`` is the newest closed one."""
        backup_id = self._id(kind)
        databases = []
        files = []
        if kind in ("full", "copy"):
            start = checkpoint if checkpoint is not None else closed
            for i in range(stores):
                databases.append(
                    DatabaseEntry(
                        store=f"store{i}",
                        file=f"priv{i}.edb",
                        dbid=i + 1,
                        db_signature={},
                        page_size=8192,
                        dbtime=100,
                        replay_start=f"{start:08X}:1000",
                        replay_start_gen=start - i % 2,  # stores checkpointed at different generations
                        page_count=10,
                        state="Dirty Shutdown",
                        max_commit_us=created(closed + 1) - 1,
                    )
                )
                files.append(FileEntry(f"priv{i}.edb", "db", f"priv{i}.edb", 81920, "0" * 64, 81920, "00000000"))
            low = min(d.replay_start_gen for d in databases)
        else:
            assert based_on is not None
            assert based_on.manifest is not None
            low = based_on.manifest.last_gen + 1
        low = first if first is not None else low
        for gen in range(low, closed + 1):
            name = f"E00{gen:05X}.log"
            files.append(FileEntry(name, "log", name, 4096, "0" * 64, 4096, "00000000", generation=gen))
        manifest = Manifest(
            backup_id=backup_id,
            kind=kind,
            sg=SG,
            log_base="E00",
            server="test",
            started="2026-11-25T10:00:00+00:00",
            ended="2026-11-25T10:00:01+00:00",
            log_signature=signature or SIGNATURE,
            first_gen=low,
            last_gen=closed,
            based_on=based_on.backup_id if based_on is not None else None,
            logs_end_us=created(closed + 1),
            databases=databases,
            files=files,
        )
        sizes = {f.name: f.stored_size for f in files} | {"manifest.json": 1}
        info = SetInfo(HOME, SG, backup_id, sizes, manifest)
        self.sets.append(info)
        return info


def ids(plan_sets: list[SetInfo]) -> list[str]:
    return [s.backup_id for s in plan_sets]


def chain_history() -> tuple[History, list[SetInfo]]:
    """full at 5 (checkpoint 3), incrementals at 8, 11, 14."""
    h = History()
    full = h.take("full", 5, checkpoint=3)
    i1 = h.take("incremental", 8, based_on=full)
    i2 = h.take("incremental", 11, based_on=i1)
    i3 = h.take("incremental", 14, based_on=i2)
    return h, [full, i1, i2, i3]


def test_latest_takes_the_full_and_every_incremental_with_contiguous_logs() -> None:
    h, chain = chain_history()
    plan = plan_restore(h.sets, RestoreTarget.latest())
    assert ids(plan.sets) == ids(chain)
    assert [log.generation for log in plan.logs] == list(range(2, 15))  # store1's replay starts at 2
    assert (plan.first_gen, plan.last_gen, plan.live_from) == (2, 14, None)
    assert [log.backup_id for log in plan.logs[:4]] == [chain[0].backup_id] * 4
    assert plan.logs[-1].backup_id == chain[3].backup_id
    assert [d.database.file for d in plan.databases] == ["priv0.edb", "priv1.edb"]
    assert all(d.backup_id == chain[0].backup_id for d in plan.databases)


def test_until_generation_uses_the_shortest_prefix_and_no_log_after_it() -> None:
    h, chain = chain_history()
    plan = plan_restore(h.sets, RestoreTarget.at_generation(9))
    assert ids(plan.sets) == ids(chain[:3])
    assert plan.last_gen == 9
    assert plan.logs[-1].generation == 9


def test_until_time_stops_at_the_first_set_whose_logs_cover_the_time() -> None:
    h, chain = chain_history()
    plan = plan_restore(h.sets, RestoreTarget.at_time(created(9) + 500))  # a commit in generation 9
    assert ids(plan.sets) == ids(chain[:3])  # i2's logs (9-11) end after it
    plan = plan_restore(h.sets, RestoreTarget.at_time(created(9) - 1))  # the last instant of generation 8
    assert ids(plan.sets) == ids(chain[:2])


def test_a_time_before_every_full_backup_is_refused_with_minus_560() -> None:
    h, _ = chain_history()
    with pytest.raises(NoRestorableBackupError) as err:
        plan_restore(h.sets, RestoreTarget.at_time(created(5)))
    assert err.value.code == -560
    assert "may hold transactions committed up to" in err.value.message


def test_an_older_full_serves_a_target_the_newest_full_is_too_new_for() -> None:
    h = History()
    old = h.take("full", 4, checkpoint=3)
    inc = h.take("incremental", 7, based_on=old)
    h.take("full", 10, checkpoint=9)
    plan = plan_restore(h.sets, RestoreTarget.at_generation(6))
    assert ids(plan.sets) == ids([old, inc])
    assert plan_restore(h.sets, RestoreTarget.latest()).sets[0].backup_id != old.backup_id


def test_latest_goes_past_a_newer_copy_backup_with_the_incrementals_of_an_older_full() -> None:
    h = History()
    full = h.take("full", 5, checkpoint=4)
    h.take("copy", 8, checkpoint=7)
    inc = h.take("incremental", 11, based_on=full)
    assert ids(plan_restore(h.sets, RestoreTarget.latest()).sets) == ids([full, inc])


def test_a_differential_is_preferred_when_it_reaches_as_far() -> None:
    h = History()
    full = h.take("full", 5, checkpoint=4)
    i1 = h.take("incremental", 7, based_on=full)
    diff = h.take("differential", 9, based_on=full)
    latest = plan_restore(h.sets, RestoreTarget.latest())
    assert ids(latest.sets) == ids([full, diff])
    assert {log.backup_id for log in latest.logs if log.generation > 5} == {diff.backup_id}
    i2 = h.take("incremental", 12, based_on=i1)
    assert ids(plan_restore(h.sets, RestoreTarget.latest()).sets) == ids([full, i1, i2])
    assert ids(plan_restore(h.sets, RestoreTarget.at_generation(8)).sets) == ids([full, diff])


def test_a_missing_incremental_is_named_with_the_set_that_needs_it() -> None:
    h, chain = chain_history()
    h.sets.remove(chain[2])
    with pytest.raises(MissingRestoreLogFilesError) as err:
        plan_restore(h.sets, RestoreTarget.latest())
    assert err.value.code == -557
    assert f"incremental backup {chain[3].backup_id} builds on {chain[2].backup_id}, which is not in the target" in (
        err.value.message
    )
    assert "--until-gen 8" in err.value.hint
    # what is intact still restores
    assert ids(plan_restore(h.sets, RestoreTarget.at_generation(8)).sets) == ids(chain[:2])
    with pytest.raises(MissingRestoreLogFilesError, match=f"builds on {chain[2].backup_id}"):
        plan_restore(h.sets, RestoreTarget.at_generation(12))


def test_an_incomplete_set_in_the_chain_is_named_with_its_problem() -> None:
    h, chain = chain_history()
    chain[1].manifest = None
    del chain[1].sizes["manifest.json"]
    chain[1].problem = "no manifest: the backup did not finish"
    with pytest.raises(MissingRestoreLogFilesError, match="which is incomplete: no manifest"):
        plan_restore(h.sets, RestoreTarget.latest())


def test_a_newer_incomplete_set_is_reported_as_not_used() -> None:
    h, chain = chain_history()
    chain[3].manifest = None
    chain[3].problem = "the manifest is malformed (log range 15-14 is impossible)"
    plan = plan_restore(h.sets, RestoreTarget.latest())
    assert ids(plan.sets) == ids(chain[:3])
    assert plan.ignored == (f"backup set {chain[3].backup_id} (incremental) is unreadable: {chain[3].problem}",)
    assert f"Not used: backup set {chain[3].backup_id}" in "\n".join(plan.describe())


def test_a_generation_missing_from_the_full_backup_is_named() -> None:
    h = History()
    h.take("full", 6, checkpoint=4, first=5)  # the store whose replay starts at 3 needs 3 and 4
    with pytest.raises(MissingRestoreLogFilesError) as err:
        plan_restore(h.sets, RestoreTarget.latest())
    assert "needs log generations 3-6, but generations 3-4 are in no backup set" in err.value.message
    assert "--until-gen" not in str(err.value.hint), "no generation before the gap makes the stores consistent"


def refused_with_a_stop_before(h: History, missing: int, hint: str) -> None:
    """The latest state is refused naming generation ``missing``, with a hint that starts with ``hint`` and
    names a --until-gen that plans."""
    with pytest.raises(MissingRestoreLogFilesError, match=f"generation {missing} is in no backup") as err:
        plan_restore(h.sets, RestoreTarget.latest())
    assert err.value.hint is not None
    assert err.value.hint.startswith(hint)
    assert plan_restore(h.sets, RestoreTarget.at_generation(missing - 1)).last_gen == missing - 1


def test_a_gap_between_sets_is_named() -> None:
    h = History()
    full = h.take("full", 5, checkpoint=4)
    h.take("incremental", 9, based_on=full, first=7)
    refused_with_a_stop_before(h, 6, "restore with --until-gen 5 to use what is intact")


def test_a_generation_missing_inside_a_set_names_the_generation_to_stop_at() -> None:
    h = History()
    full = h.take("full", 5, checkpoint=4)
    inc = h.take("incremental", 9, based_on=full)
    assert inc.manifest is not None
    inc.manifest.files = [f for f in inc.manifest.files if f.generation != 8]  # its range still claims 8
    refused_with_a_stop_before(h, 8, "restore with --until-gen 7 to use what is intact before the gap")


def test_a_set_left_out_with_skip_set_is_named_so_in_the_broken_chain() -> None:
    h = History()
    h.take("full", 5, checkpoint=4)
    newer = h.take("full", 9, checkpoint=8)
    h.take("incremental", 12, based_on=newer)
    with pytest.raises(MissingRestoreLogFilesError) as err:
        plan_restore(h.sets, RestoreTarget.latest(), skip=[newer.backup_id])
    assert f"builds on {newer.backup_id}, which was left out with --skip-set" in err.value.message


def test_a_broken_chain_names_the_furthest_stop_any_full_backup_reaches() -> None:
    # the newest base, a copy backup, ends before the incremental built on the older full: the hint must name
    # the stop that keeps that incremental's transactions
    h = History()
    full1 = h.take("full", 5, checkpoint=4)
    h.take("copy", 7, checkpoint=6)
    inc = h.take("incremental", 9, based_on=full1)
    full2 = h.take("full", 12, checkpoint=11)
    h.take("differential", 14, based_on=full2)
    with pytest.raises(MissingRestoreLogFilesError) as err:
        plan_restore(h.sets, RestoreTarget.latest(), skip=[full2.backup_id])
    assert err.value.hint is not None
    assert err.value.hint.startswith("restore with --until-gen 9 to use what is intact")
    stop = RestoreTarget.at_generation(9)
    assert plan_restore(h.sets, stop, skip=[full2.backup_id]).sets[-1].backup_id == inc.backup_id


def test_a_set_of_another_log_stream_does_not_join_the_chain() -> None:
    h = History()
    full = h.take("full", 5, checkpoint=4)
    h.take("incremental", 8, based_on=full, signature={**SIGNATURE, "random": 2})
    with pytest.raises(MissingRestoreLogFilesError, match="belongs to another log stream"):
        plan_restore(h.sets, RestoreTarget.latest())


def test_a_target_after_the_backups_needs_the_live_logs() -> None:
    h, _ = chain_history()
    with pytest.raises(MissingRestoreLogFilesError, match=r"do not reach .* end at generation 14.*--roll-forward-live"):
        plan_restore(h.sets, RestoreTarget.at_time(created(20)))
    with pytest.raises(MissingRestoreLogFilesError) as err:
        plan_restore(h.sets, RestoreTarget.at_time(created(20)))
    assert f"generation 14, which holds every transaction committed up to {iso_time(created(15))};" in str(err.value)
    assert plan_restore(h.sets, RestoreTarget.at_time(created(15))).last_gen == 14  # the time it names plans
    plan = plan_restore(h.sets, RestoreTarget.at_time(created(20)), roll_forward_live=True)
    assert (plan.last_gen, plan.live_from) == (14, 15)
    assert plan_restore(h.sets, RestoreTarget.latest(), roll_forward_live=True).live_from == 15
    assert plan_restore(h.sets, RestoreTarget.at_generation(10), roll_forward_live=True).live_from is None


def test_the_live_logs_serve_only_when_no_backup_reaches_the_target() -> None:
    h = History()
    old = h.take("full", 3, checkpoint=3)
    h.take("copy", 4, checkpoint=4)
    inc = h.take("incremental", 6, based_on=old)
    plan = plan_restore(h.sets, RestoreTarget.at_generation(5), roll_forward_live=True)
    assert ids(plan.sets) == ids([old, inc])
    assert plan.live_from is None


def test_several_storage_groups_need_a_choice() -> None:
    h, _ = chain_history()
    other = History()
    other.take("full", 3, checkpoint=2)
    for s in other.sets:
        s.sg = "Second Storage Group"
        assert s.manifest is not None
        s.manifest.sg = s.sg
    with pytest.raises(InvalidParameterError, match="several storage groups"):
        plan_restore(h.sets + other.sets, RestoreTarget.latest())
    assert plan_restore(h.sets + other.sets, RestoreTarget.latest(), sg="Second Storage Group").last_gen == 3


def test_no_backup_at_all_is_minus_560() -> None:
    with pytest.raises(NoRestorableBackupError):
        plan_restore([], RestoreTarget.latest())
    h = History()
    full = h.take("full", 5, checkpoint=4)
    full.manifest = None
    del full.sizes["manifest.json"]
    full.problem = "no manifest: the backup did not finish"
    with pytest.raises(NoRestorableBackupError, match=r"incomplete: .*did not finish"):
        plan_restore(h.sets, RestoreTarget.latest())
    with pytest.raises(NoRestorableBackupError, match="the target holds no backup of 'Nope'") as err:
        plan_restore(h.sets, RestoreTarget.latest(), sg="Nope")
    assert err.value.hint == f"take a full backup of 'Nope' first; this target holds backups of {h.sets[0].sg!r}"


def test_the_plan_describes_itself_and_round_trips_to_json() -> None:
    h, chain = chain_history()
    plan = plan_restore(h.sets, RestoreTarget.at_generation(9))
    text = "\n".join(plan.describe())
    assert "to the end of log generation 9" in text
    assert chain[2].backup_id in text
    assert "logs 9-9" in text
    data = plan.to_dict()
    assert [s["id"] for s in data["sets"]] == ids(chain[:3])
    assert data["logs"][0] == {"generation": 2, "backup_id": chain[0].backup_id, "name": "E0000002.log", "size": 4096}


# --- property: every plan is sound, and an intact history restores every target it covers --------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[History, int]:
    """A random sequence of backups over a growing log stream; returns it and the newest closed generation.
    Copy backups are not part of any chain: with them some targets are out of reach of an intact history."""
    h = History()
    closed = draw(st.integers(2, 5))
    full: SetInfo | None = None
    last_chain: SetInfo | None = None
    for _ in range(draw(st.integers(1, 8))):
        closed += draw(st.integers(1, 4))
        kind = draw(st.sampled_from(["full", "full", "copy", "incremental", "differential"]))
        if kind in ("full", "copy") or full is None:
            backup = h.take("full" if full is None else kind, closed, checkpoint=closed - draw(st.integers(0, 2)))
            if backup.kind == "full":
                full = last_chain = backup
        elif kind == "incremental":
            assert last_chain is not None
            last_chain = h.take("incremental", closed, based_on=last_chain)
        else:
            h.take("differential", closed, based_on=full)
    return h, closed


def family(h: History, base: SetInfo) -> list[SetInfo]:
    """``base`` and the sets built on it, directly or through incrementals."""
    members = [base]
    for s in h.sets:
        assert s.manifest is not None
        if s.manifest.based_on in {m.backup_id for m in members}:
            members.append(s)
    return members


def reaches(s: SetInfo, target: RestoreTarget) -> bool:
    assert s.manifest is not None
    assert s.manifest.logs_end_us is not None
    if target.until_gen is not None:
        return s.manifest.last_gen >= target.until_gen
    if target.until_us is not None:
        return s.manifest.logs_end_us >= target.until_us  # nothing is committed at a generation's creation time
    return True


def onward(h: History, base: SetInfo, target: RestoreTarget) -> bool:
    """Whether other sets of the stream carry ``base``'s furthest chain on to ``target``: a set past its end that
    reaches the target, every generation in between held by some set (restore/plan.py: _onward)."""
    end = max(s.manifest.last_gen for s in family(h, base) if s.manifest)
    held = {e.generation for s in h.sets if s.manifest for e in s.manifest.logs() if e.generation is not None}
    return any(
        s.manifest.last_gen > end
        and reaches(s, target)
        and all(g in held for g in range(end + 1, s.manifest.first_gen))
        for s in h.sets
        if s.manifest
    )


def usable(base: SetInfo, target: RestoreTarget) -> bool:
    assert base.manifest is not None
    dbs = base.manifest.databases
    if target.until_gen is not None:
        return all(d.replay_start_gen <= target.until_gen for d in dbs)
    if target.until_us is not None:
        return all(d.max_commit_us is not None and d.max_commit_us <= target.until_us for d in dbs)
    return True


@settings(max_examples=examples(300))
@given(histories(), st.data())
def test_plans_are_sound_and_an_intact_history_covers_what_its_chains_cover(
    history: tuple[History, int], data: st.DataObject
) -> None:
    h, newest = history
    target = data.draw(
        st.one_of(
            st.just(RestoreTarget.latest()),
            st.integers(1, newest + 2).map(RestoreTarget.at_generation),
            st.integers(created(1), created(newest + 2)).map(RestoreTarget.at_time),
        )
    )
    bases = [s for s in h.sets if s.kind in ("full", "copy")]
    startable = [b for b in bases if usable(b, target)]
    reachable = [b for b in startable if any(reaches(s, target) for s in family(h, b))]
    carried = [b for b in startable if onward(h, b, target)]  # by logs of sets outside the chain
    live = data.draw(st.booleans(), label="roll forward live")
    try:
        plan = plan_restore(h.sets, target, roll_forward_live=live)
    except NoRestorableBackupError:
        assert not startable
        return
    except MissingRestoreLogFilesError:
        assert startable
        assert not reachable
        assert not carried or target.kind == "latest"
        return
    assert reachable or carried or live
    if reachable:  # the backups reach it: the live logs are not used
        assert plan.live_from is None or target.kind == "latest"
    base = plan.sets[0].manifest
    assert base is not None
    assert base.kind in ("full", "copy")
    assert usable(plan.sets[0], target)
    gens = [log.generation for log in plan.logs]
    assert gens == list(range(plan.first_gen, plan.last_gen + 1))
    assert plan.first_gen == min(d.replay_start_gen for d in base.databases)
    by_id = {s.backup_id: s.manifest for s in h.sets}
    for log in plan.logs:  # every generation comes from a set that holds it: of the base's family, if it reaches
        m = by_id[log.backup_id]
        assert m is not None
        assert m.first_gen <= log.generation <= m.last_gen
        if reachable:
            assert log.backup_id in {s.backup_id for s in family(h, plan.sets[0])}
    if plan.live_from is not None:
        assert plan.live_from == plan.last_gen + 1
    elif target.until_gen is not None:
        assert plan.last_gen == target.until_gen
    elif target.until_us is not None:
        assert created(plan.last_gen + 1) >= target.until_us  # every commit up to the target is in the logs
    if target.kind == "latest":
        furthest = max(max(s.manifest.last_gen for s in family(h, b) if s.manifest) for b in bases)
        assert plan.last_gen == furthest


def test_an_empty_target_says_how_to_get_a_backup() -> None:
    with pytest.raises(NoRestorableBackupError, match="the target holds no backup sets") as err:
        plan_restore([], RestoreTarget.latest())
    assert "backup run --all --kind full" in err.value.hint
    assert "--from" in err.value.hint
