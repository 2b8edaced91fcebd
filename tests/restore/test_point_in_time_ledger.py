"""Point-in-time restores checked against a ledger of every commit, as an administrator would check them.

Each workload transaction's commit time (``workload run --print-times``) goes into a ledger. A restore into the
Recovery Storage Group to ``--until T`` must hold exactly the transactions committed at or before T, and one to
``--until-gen N`` exactly those whose commit record ends in a generation <= N (those committed before the
creation time of generation N+1, as the log headers record it). ``workload check --exact`` proves it per seed.

The first tests prove properties of exact restores; the later ones ("Refusals and hints") each pin down a refusal,
hint or note that was untrue, or a restore that was refused although the backups could do it.

Scenario (one home for the module, built through the command line, each step sequential):

    seed 1 (200)  full1
    seed 2 (200)  inc1
    seed 3 (200)  copy          <- a copy backup in the middle of the incremental chain
    seed 4 (200)  inc2          <- holds the generations from inc1's end on, through the copy's
    seed 5 (200)                <- these generations are truncated by full2 and are in no backup set
                  full2
    seed 6 (200)  diff
    seed 7 (50)                 <- only in the live logs
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field

import pytest

from shadowstore.backup.run import back_up
from shadowstore.backup.target import open_target
from shadowstore.cli.main import main
from shadowstore.engine.logstream import read_header
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.format.common import iso_time
from shadowstore.home import ServerHome
from shadowstore.io.fs import OsFileSystem
from shadowstore.tools import workload as wl

SG = "First Storage Group"
RSG = "Recovery Storage Group"


def cli(home: str, *args: str) -> tuple[int, str, str]:
    """``shadowstore --home HOME ARGS`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--home", home, *args])
    return code, out.getvalue(), err.getvalue()


def until(us: int) -> str:
    return iso_time(us).replace("+00:00", "Z")


@dataclass
class Ledger:
    home: str
    commits: dict[tuple[int, int], int] = field(default_factory=dict)  # (seed, n) -> commit time (µs)
    sets: dict[str, dict[str, object]] = field(default_factory=dict)  # name -> backup run JSON

    def run(self, seed: int, txns: int) -> None:
        code, out, err = cli(self.home, "workload", "run", "--txns", str(txns), "--seed", str(seed), "--print-times")
        assert code == 0, err
        for line in out.splitlines():
            _, n, t = line.split()
            self.commits[(seed, int(n))] = int(t)

    def backup(self, name: str, kind: str) -> None:
        code, out, err = cli(self.home, "backup", "run", "--sg", SG, "--kind", kind, "--json")
        assert code == 0, out + err
        [self.sets[name]] = json.loads(out)["backups"]

    def id(self, name: str) -> str:
        return str(self.sets[name]["id"])

    def manifest(self, name: str) -> dict[str, object]:
        [path] = glob.glob(os.path.join(self.home, "backups", "*", SG, self.id(name), "manifest.json"))
        with open(path) as f:
            return json.load(f)  # type: ignore[no-any-return]

    def times(self, seed: int) -> list[int]:
        return [t for (s, _n), t in sorted(self.commits.items()) if s == seed]

    def at_time(self, t: int) -> dict[int, int]:
        """seed -> how many of its transactions were committed at or before ``t`` (each seed commits in order)."""
        seeds = sorted({s for s, _ in self.commits})
        return {s: sum(1 for (x, _n), c in self.commits.items() if x == s and c <= t) for s in seeds}

    def before(self, t: int) -> dict[int, int]:
        return self.at_time(t - 1)


def created_times(home: str) -> dict[int, int]:
    """generation -> creation time (µs) from every log file of the backups and the live folder."""
    fs = OsFileSystem()
    created: dict[int, int] = {}
    for path in glob.glob(os.path.join(home, "backups", "**", "E00*.log"), recursive=True) + glob.glob(
        os.path.join(home, SG, "E00*.log")
    ):
        if not re.fullmatch(r"E00[0-9A-F]{8}\.log", os.path.basename(path)):
            continue  # E00.log (open), E00tmp.log (prepared, no header yet)
        header = read_header(fs, path)
        created[header.generation] = header.created_us
    return created


def restore(home: str, *args: str) -> tuple[int, dict[str, object] | None, str]:
    code, out, err = cli(home, "restore", "run", "--into-recovery-group", "--json", "--quiet", *args)
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    return code, doc, out + err


def assert_exactly(home: str, expected: dict[int, int]) -> None:
    """The recovery group holds, for each seed, exactly its transactions 1..expected[seed]."""
    for seed, count in expected.items():
        code, out, err = cli(
            home, "workload", "check", "--sg", RSG, "--seed", str(seed), "--committed", str(count), "--exact"
        )
        assert code == 0, f"seed {seed} should hold exactly 1..{count}: {out}{err}"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    home = str(tmp_path_factory.mktemp("pit") / "home")
    assert cli(home, "init", "--log-file-size", "64K")[0] == 0
    ledger = Ledger(home)
    ledger.run(1, 200)
    ledger.backup("full1", "full")
    ledger.run(2, 200)
    ledger.backup("inc1", "incremental")
    ledger.run(3, 200)
    ledger.backup("copy", "copy")
    ledger.run(4, 200)
    ledger.backup("inc2", "incremental")
    ledger.run(5, 200)
    ledger.backup("full2", "full")
    ledger.run(6, 200)
    ledger.backup("diff", "differential")
    ledger.run(7, 50)
    # the shape the tests rely on
    assert ledger.sets["inc2"]["first_gen"] == int(ledger.sets["inc1"]["last_gen"]) + 1  # type: ignore[arg-type]
    assert int(ledger.sets["copy"]["last_gen"]) < int(ledger.sets["inc2"]["last_gen"])  # type: ignore[arg-type]
    assert int(ledger.sets["full2"]["first_gen"]) > int(ledger.sets["inc2"]["last_gen"]) + 1  # type: ignore[arg-type]
    return ledger


# --------------------------------------------------------------------------------------------------------------
# Properties that hold


def test_until_time_is_exact_at_commits_and_between_them(chain: Ledger) -> None:
    """At a commit's own timestamp the commit is in, one microsecond before it is not; inside each set, at the
    sets' boundaries, from the full, the chain, the copy's region (the planner falls back to full1 + inc2) and
    the differential, and after the backups with --roll-forward-live."""
    points: list[int] = []
    for seed, picks in ((2, [1, 97, 200]), (4, [1, 120, 200]), (6, [1, 133]), (7, [20])):
        times = chain.times(seed)
        for k in picks:
            points += [times[k - 1], times[k - 1] - 1]
    # the last commit before a full or copy backup, exactly (the commits before it: see
    # test_store_copy_max_commit_is_not_understated_after_a_mount)
    points += [chain.times(1)[-1], chain.times(3)[-1]]
    for name in ("full1", "inc1", "copy", "inc2", "full2", "diff"):
        end = int(chain.manifest(name)["logs_end_us"])  # type: ignore[arg-type]
        points.append(end - 1)
    for t in sorted(set(points)):
        live = ["--roll-forward-live"] if t > chain.times(6)[-1] else []
        code, _doc, text = restore(chain.home, "--until", until(t), *live)
        assert code == 0, f"--until {until(t)}: {text}"
        assert_exactly(chain.home, chain.at_time(t))


def test_until_gen_is_exact_for_every_generation_the_backups_hold(chain: Ledger) -> None:
    created = created_times(chain.home)
    first = int(chain.sets["full1"]["last_gen"])  # type: ignore[arg-type]
    gaps = set(range(int(chain.sets["inc2"]["last_gen"]) + 1, int(chain.sets["full2"]["first_gen"])))  # type: ignore[arg-type]
    last = int(chain.sets["diff"]["last_gen"])  # type: ignore[arg-type]
    for n in range(first, last + 1):
        if n in gaps or n + 1 not in created:
            continue
        code, doc, text = restore(chain.home, "--until-gen", str(n))
        assert code == 0, f"--until-gen {n}: {text}"
        assert doc is not None
        assert doc["restore"]["stopped"] == f"at the end of generation {n}"
        assert_exactly(chain.home, chain.before(created[n + 1]))


def test_before_the_oldest_full_is_refused_naming_it(chain: Ledger) -> None:
    t = chain.times(1)[50]
    code, _doc, text = restore(chain.home, "--until", until(t))
    assert code == 23
    assert "-560" in text
    assert chain.id("full1") in text


def test_latest_with_and_without_live_logs(chain: Ledger) -> None:
    code, _doc, text = restore(chain.home)
    assert code == 0, text
    assert_exactly(chain.home, chain.before(int(chain.manifest("diff")["logs_end_us"])))  # type: ignore[arg-type]
    code, _doc, text = restore(chain.home, "--roll-forward-live")
    assert code == 0, text
    assert_exactly(chain.home, {s: len(chain.times(s)) for s in range(1, 8)})


@pytest.mark.slow
def test_concurrent_commits_while_backups_run_restore_exactly(tmp_path: os.PathLike[str]) -> None:
    """Commits from a second thread (production maintenance: checkpoints by themselves) while full, incremental,
    copy, differential backups run, so every boundary falls mid-stream; then restores to the commits around
    each set's end and its stores' max_commit_us."""
    path = os.path.join(tmp_path, "home")
    ServerHome.init(path, log_file_size=64 * 1024).close()
    home = ServerHome.open(path, policy=MaintenancePolicy())
    group = home.storage_group(SG)
    group.mount()
    store = group.store("Mailbox Store")
    commits: dict[tuple[int, int], int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def committer() -> None:
        seed = 100
        while not stop.is_set():
            seed += 1

            def record(n: int, t: int, seed: int = seed) -> None:
                with lock:
                    commits[(seed, n)] = t

            wl.run(store, txns=100, seed=seed, on_commit=record)

    worker = threading.Thread(target=committer)
    worker.start()
    target = open_target(os.path.join(path, "backups"))
    try:
        for kind in ("full", "incremental", "copy", "incremental", "full", "differential"):
            time.sleep(0.3)
            back_up(home, SG, kind, target)
    finally:
        stop.set()
        worker.join()
        group.dismount()
        home.close()
    ledger = Ledger(path, commits)
    times = sorted(commits.values())
    points = []
    manifests = []
    for manifest_path in glob.glob(os.path.join(path, "backups", "*", SG, "*", "manifest.json")):
        with open(manifest_path) as f:
            manifests.append(json.load(f))
    # a full backup truncates the generations since the last incremental: a time in them is in no set
    ends = sorted(m["logs_end_us"] for m in manifests if m["kind"] in ("full", "incremental"))
    holes = []
    for m in manifests:
        if m["kind"] == "full":
            newest = max(d["max_commit_us"] for d in m["databases"])
            earlier = [e for e in ends if e < m["logs_end_us"]][:-1]
            if earlier:
                holes.append((earlier[-1], newest))
    for m in manifests:
        end = m["logs_end_us"]
        before = [t for t in times if t < end]
        points += [end - 1, before[-1]] if before else [end - 1]
        points += [d["max_commit_us"] for d in m["databases"]]
    done = 0
    for t in sorted(set(points)):
        code, _doc, text = restore(path, "--until", until(t))
        if code == 23 and "-560" in text:
            continue  # before the first full backup's copies: refused, rightly
        if code == 23 and "-557" in text and any(lo <= t <= hi for lo, hi in holes):
            continue  # in generations a full backup truncated and no set holds: refused, rightly
        assert code == 0, f"--until {until(t)}: {text}"
        assert_exactly(path, ledger.at_time(t))
        done += 1
    assert done >= 8


# --------------------------------------------------------------------------------------------------------------
# Refusals and hints


def test_refusal_names_a_time_that_the_restore_then_refuses(chain: Ledger) -> None:
    """Asked for a time after the last backup, the refusal names the time up to which the backups hold every
    transaction (a generation's creation time: nothing is committed at it), and `--until` that time restores."""
    diff_end = int(chain.manifest("diff")["logs_end_us"])  # type: ignore[arg-type]
    code, _doc, text = restore(chain.home, "--until", until(chain.times(7)[0]))
    assert code == 23
    named = re.search(r"holds every transaction committed up to (\S+?)(?:;|$)", text)
    assert named is not None, text
    code, _doc, text = restore(chain.home, "--until", named.group(1))
    assert code == 0, f"--until {named.group(1)}, the time the refusal named: {text}"
    assert_exactly(chain.home, chain.before(diff_end))


def test_skipped_set_is_described_as_skipped(chain: Ledger) -> None:
    """A set the chain needs, left out with --skip-set, is named as skipped (not "complete: no manifest")."""
    code, _doc, text = restore(chain.home, "--skip-set", chain.id("full2"))
    assert code == 23
    assert "complete: no manifest" not in text, text
    assert "skip" in text, text


def test_broken_tail_hint_names_the_furthest_intact_generation(chain: Ledger) -> None:
    """--skip-set full2 for the latest state: the hint names the furthest generation an intact chain reaches
    (inc2's last, through full1), not the copy backup's, which would lose every transaction in between."""
    code, _doc, text = restore(chain.home, "--skip-set", chain.id("full2"))
    assert code == 23
    inc2_last = int(chain.sets["inc2"]["last_gen"])  # type: ignore[arg-type]
    code2, _doc2, text2 = restore(chain.home, "--skip-set", chain.id("full2"), "--until-gen", str(inc2_last))
    assert code2 == 0, text2  # holds: the intact path does reach it
    hinted = re.search(r"--until-gen (\d+)", text)
    assert hinted is not None, text
    assert int(hinted.group(1)) == inc2_last, text


def test_roll_forward_live_refusal_names_the_generation_really_missing(chain: Ledger) -> None:
    """A time in the generations full2 truncated without any backup holding them (seed 5), with
    --roll-forward-live: the plan refuses as the run would (not accept and leave the run to fail), naming the
    first generation after the furthest backup (inc2's last + 1) that the live folder lacks."""
    t = chain.times(5)[100]
    copy_last = int(chain.sets["copy"]["last_gen"])  # type: ignore[arg-type]
    inc2_last = int(chain.sets["inc2"]["last_gen"])  # type: ignore[arg-type]
    code, _out, _err = cli(chain.home, "restore", "plan", "--until", until(t), "--roll-forward-live")
    code_run, _doc, text = restore(chain.home, "--until", until(t), "--roll-forward-live")
    assert code_run == 23, text
    assert f"generation {copy_last + 1} " not in text, f"inc2 holds generation {copy_last + 1}: {text}"
    assert f"{inc2_last + 1}" in text, text
    assert code == 23, "restore plan accepted a restore that restore run refuses"


def test_point_in_time_from_copy_uses_the_streams_logs_as_latest_does(chain: Ledger) -> None:
    """With inc1 left out (--skip-set, as for a damaged set), a time in inc2's region restores exactly from the
    copy backup and inc2's logs of the same stream, as the latest state does."""
    t = chain.times(4)[100]
    code, _doc, text = restore(chain.home, "--skip-set", chain.id("inc1"))
    assert code == 0, text  # holds: the latest state from the copy uses inc2's logs
    code, _doc, text = restore(chain.home, "--skip-set", chain.id("inc1"), "--until", until(t))
    assert code == 0, text
    assert_exactly(chain.home, chain.at_time(t))


def test_latest_note_does_not_claim_generations_no_backup_holds(chain: Ledger) -> None:
    """`restore plan --set <copy>` does not note as held by the backups the generations that full2 truncated
    and no set holds."""
    code, out, err = cli(chain.home, "restore", "plan", "--set", chain.id("copy"), "--json")
    assert code == 0, out + err
    plan = json.loads(out)
    inc2_last = int(chain.sets["inc2"]["last_gen"])  # type: ignore[arg-type]
    full2_first = int(chain.sets["full2"]["first_gen"])  # type: ignore[arg-type]
    for note in plan["ignored"]:
        m = re.search(r"generations (\d+)-(\d+) of this log stream, which the backups hold", note)
        if m:
            held = set(range(int(m.group(1)), int(m.group(2)) + 1))
            assert not held & set(range(inc2_last + 1, full2_first)), note


def test_store_copy_max_commit_is_not_understated_after_a_mount(chain: Ledger) -> None:
    """A copy backup taken right after the storage group was mounted for it records as its newest commit at
    least the newest one it holds (engine/mountlog.newest_time), so a restore to a time among seed 3's last
    commits starts from full1 and its chain instead of the copy, which hard recovery would refuse."""
    t = chain.times(3)[198]
    newest = max(int(d["max_commit_us"]) for d in chain.manifest("copy")["databases"])  # type: ignore[union-attr,index]
    code, _doc, text = restore(chain.home, "--until", until(t))
    assert code == 0, f"--until {until(t)} (copy's recorded max_commit_us {until(newest)}): {text}"
    assert_exactly(chain.home, chain.at_time(t))
    assert newest >= chain.times(3)[-1], "the copy holds seed 3's last commit but says it holds nothing after " + until(
        newest
    )
