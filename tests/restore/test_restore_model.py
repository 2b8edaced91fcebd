"""Restores against a model: random histories of commits and backups, random targets, restored data compared
with exactly the transactions committed up to the target.

Each commit ``i`` puts key ``k<i>`` and deletes the key of commit ``i - 3`` when ``i`` is a multiple of 4, and
records the commit time the log gave it. The expected state at time T applies the commits with a time at or
before T; at the end of a backup's last generation, the commits made before that backup. Runs are
deterministic in CI (SHADOWSTORE_LONG=1 explores, tests/conftest.py); a failing one prints its steps and draws.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowstore.backup import catalog
from shadowstore.backup.fsspectarget import FsspecTarget
from shadowstore.backup.run import back_up
from shadowstore.errors import MissingFileToBackupError, MissingRestoreLogFilesError, NoRestorableBackupError
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.restore.plan import RestoreTarget, plan_restore
from shadowstore.restore.run import INTO_RECOVERY_GROUP, RECOVERY_SG, run_restore
from tests.conftest import examples, fault_home

SG = "First Storage Group"


@dataclass
class History:
    home: ServerHome
    times: list[int] = field(default_factory=list)  # commit time of commit i + 1
    backups: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, commits before it, last_gen)

    def commit(self, count: int) -> None:
        store = self.home.storage_group().store("Mailbox Store")
        for _ in range(count):
            i = len(self.times) + 1
            with store.transaction() as tx:
                tx.put("t", b"k%05d" % i, b"v%d" % i * (1 + i % 40))
                if i % 4 == 0:
                    tx.delete("t", b"k%05d" % (i - 3))
            assert tx.commit_time_us is not None
            self.times.append(tx.commit_time_us)


def model(commits: int) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for i in range(1, commits + 1):
        state[b"k%05d" % i] = b"v%d" % i * (1 + i % 40)
        if i % 4 == 0:
            state.pop(b"k%05d" % (i - 3), None)
    return state


def restored(home: ServerHome) -> dict[bytes, bytes]:
    rsg = home.storage_group(RECOVERY_SG)
    rsg.mount()
    try:
        with rsg.store("Mailbox Store").snapshot() as snap:
            return dict(snap.range("t")) if snap.has_table("t") else {}
    finally:
        rsg.dismount()


steps = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(1, 25)),
        st.tuples(st.just("backup"), st.sampled_from(["full", "incremental", "incremental", "differential", "copy"])),
    ),
    min_size=2,
    max_size=10,
)


@settings(max_examples=examples(80), suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, data=st.data())
def test_restores_hold_exactly_the_transactions_up_to_the_target(
    steps: list[tuple[str, object]], data: st.DataObject
) -> None:
    fs = FaultFileSystem(seed=3)
    home = fault_home(fs)
    sg = home.storage_group()
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.create_table("t")
    target = FsspecTarget(f"memory://{uuid.uuid4().hex}/target")
    history = History(home)
    history.commit(3)
    incremental_since_full = False
    for action, arg in [("backup", "full"), *steps]:
        if action == "commit":
            history.commit(int(str(arg)))
        else:
            refused = None
            try:
                outcome = back_up(home, SG, str(arg), target)
            except MissingFileToBackupError as exc:
                refused = exc.message
            if refused is not None:
                # an incremental may have truncated logs a differential needs (all since the full): -569
                assert arg == "differential"
                assert incremental_since_full
                assert "an incremental backup since the last full backup truncated them" in refused
                continue
            incremental_since_full = arg == "incremental" or (incremental_since_full and arg != "full")
            gens = [f.generation for f in outcome.files if f.generation is not None]
            history.backups.append((str(arg), len(history.times), max(gens)))
    history.commit(data.draw(st.integers(0, 10), label="commits after the last backup"))
    sg.dismount()
    sets = catalog.list_sets(target, SG, home=home.home_id)
    times = history.times
    for _ in range(3):
        kind = data.draw(st.sampled_from(["latest", "time", "between", "generation"]), label="target")
        live = data.draw(st.booleans(), label="roll forward live")
        if kind == "latest":
            # the furthest path ends with the last backup (every backup ends one); live: every commit
            goal, expected = RestoreTarget.latest(), len(times) if live else history.backups[-1][1]
        elif kind == "generation":
            _kind, before, last_gen = data.draw(st.sampled_from(history.backups), label="backup")
            goal, expected = RestoreTarget.at_generation(last_gen), before
        else:
            # mostly inside what the backups hold: from the first full backup's commits to the last backup's
            low, high = (history.backups[0][1], history.backups[-1][1]) if data.draw(st.booleans()) else (1, len(times))
            n = data.draw(st.integers(max(1, low), max(1, high)), label="commit")
            at = times[n - 1] if kind == "time" or n == len(times) else (times[n - 1] + times[n]) // 2
            goal, expected = RestoreTarget.at_time(at), n
        refusal = None
        try:
            plan = plan_restore(sets, goal, sg=SG, roll_forward_live=live)
            run_restore(home, target, plan, into=INTO_RECOVERY_GROUP)
        except (NoRestorableBackupError, MissingRestoreLogFilesError) as exc:
            refusal = exc.message
        if refusal is not None:
            # A time may be out of reach: before every full backup's copy, or between a full backup and the
            # next one when no incremental kept the logs between them (the second truncated them). The
            # latest state and the end of any backup's logs never are.
            assert kind in ("time", "between"), f"{goal.describe()}, live={live}: {refusal}"
            continue
        assert restored(home) == model(expected), f"{goal.describe()}, live={live}: expected {expected} commits"


def test_the_model_itself() -> None:
    assert model(4) == {b"k00002": b"v2" * 3, b"k00003": b"v3" * 4, b"k00004": b"v4" * 5}
