"""``backup prune``: the pure plan on synthetic catalogs, then deletion of real backup sets."""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

import fsspec
import pytest

from shadowstore.backup.catalog import SetInfo, list_sets
from shadowstore.backup.fsspectarget import FsspecTarget
from shadowstore.backup.lease import LEASE_NAME, Lease, this_system
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.manifest import MANIFEST_NAME, Manifest
from shadowstore.backup.prune import PrunePlan, apply_prune, plan_prune
from shadowstore.backup.run import back_up
from shadowstore.backup.verify import verify_set
from shadowstore.errors import BackupTargetError, InvalidParameterError
from shadowstore.format.common import now_us
from shadowstore.home import ServerHome
from shadowstore.tools import workload
from tests.cli.clirun import run, run_json
from tests.conftest import QUIET

SG = "First Storage Group"
HOME = "mail01-0123abcd"
History = tuple[str, LocalTarget, list[str]]  # home, target, ids of the sets oldest first


# --- synthetic catalogs ---------------------------------------------------------------------------------


class Catalog:
    """Sets made in time order: ``add("F1", "full")``, ``add("I1", "incremental", on="F1")``."""

    def __init__(self, sg: str = SG) -> None:
        self.sg = sg
        self.sets: list[SetInfo] = []
        self.ids: dict[str, str] = {}

    def add(self, label: str, kind: str, on: str | None = None, *, complete: bool = True) -> SetInfo:
        n = len(self.sets) + 1
        backup_id = f"20260101T0000{n:02d}.000000Z-{kind}-{n:06x}"
        self.ids[label] = backup_id
        manifest = None
        if complete:
            manifest = Manifest(
                backup_id, kind, self.sg, "E00", "host", "", "", {}, n, n, based_on=self.ids[on] if on else None
            )
        files = {MANIFEST_NAME: 1} if complete else {"priv1.edb": 1}
        info = SetInfo(HOME, self.sg, backup_id, files, manifest, None if complete else "no manifest")
        self.sets.append(info)
        return info

    def label(self, backup_id: str) -> str:
        return next(k for k, v in self.ids.items() if v == backup_id)


def deleted(plan: PrunePlan, catalog: Catalog) -> list[str]:
    return [catalog.label(d.backup_id) for d in plan.to_delete]


def reason(plan: PrunePlan, catalog: Catalog, label: str) -> str:
    return next(d.reason for d in plan.decisions if d.backup_id == catalog.ids[label])


def test_keeps_the_newest_fulls_and_what_builds_on_them() -> None:
    c = Catalog()
    c.add("F1", "full")
    c.add("I1", "incremental", on="F1")
    c.add("I2", "incremental", on="I1")
    c.add("F2", "full")
    c.add("D1", "differential", on="F2")
    c.add("F3", "full")
    plan = plan_prune(c.sets, keep_full=2)
    assert deleted(plan, c) == ["F1", "I1", "I2"]
    assert "builds on kept full backup" in reason(plan, c, "D1")
    assert c.ids["F2"] in reason(plan, c, "D1")
    assert reason(plan, c, "F3") == "one of the 2 newest whole full backups"
    assert "older than" in reason(plan, c, "I2")
    assert [d.backup_id for d in plan.decisions] == [s.backup_id for s in c.sets]


def test_an_incremental_chain_is_kept_from_its_full_to_the_newest() -> None:
    c = Catalog()
    c.add("F1", "full")
    c.add("I1", "incremental", on="F1")
    c.add("F2", "full")
    c.add("I2", "incremental", on="F2")
    c.add("I3", "incremental", on="I2")
    plan = plan_prune(c.sets, keep_full=1)
    assert deleted(plan, c) == ["F1", "I1"]
    assert f"{c.ids['I3']} -> {c.ids['I2']} -> {c.ids['F2']}" in reason(plan, c, "I3")


def test_never_deletes_what_a_kept_set_needs() -> None:
    c = Catalog()
    c.add("F1", "full")
    c.add("I1", "incremental", on="F1")
    c.add("F2", "full")
    c.add("I2", "incremental", on="I1")  # built on I1 (for example F2 went to this target later by hand)
    plan = plan_prune(c.sets, keep_full=1)
    assert deleted(plan, c) == []
    assert reason(plan, c, "I1") == f"kept set {c.ids['I2']} builds on it"
    assert reason(plan, c, "F1") == f"kept set {c.ids['I2']} builds on it"


def test_copies_older_than_the_oldest_kept_full_are_deleted() -> None:
    c = Catalog()
    c.add("C0", "copy")
    c.add("F1", "full")
    c.add("C1", "copy")
    c.add("F2", "full")
    c.add("C2", "copy")
    assert deleted(plan_prune(c.sets, keep_full=1), c) == ["C0", "F1", "C1"]
    assert deleted(plan_prune(c.sets, keep_full=2), c) == ["C0"]


def test_fewer_fulls_than_asked_keeps_every_full() -> None:
    c = Catalog()
    c.add("C0", "copy")
    c.add("F1", "full")
    c.add("I1", "incremental", on="F1")
    plan = plan_prune(c.sets, keep_full=2)
    assert deleted(plan, c) == ["C0"]
    assert reason(plan, c, "F1") == "the newest whole full backup"


def test_without_a_full_backup_nothing_is_pruned() -> None:
    c = Catalog()
    c.add("C0", "copy")
    c.add("X0", "full", complete=False)
    c.add("C1", "copy")
    plan = plan_prune(c.sets, keep_full=1)
    assert deleted(plan, c) == ["X0"]
    assert "no whole full backup" in reason(plan, c, "C0")


def test_a_set_without_a_manifest_is_judged_by_its_lease_not_by_its_id() -> None:
    c = Catalog()
    running_before = c.add("R0", "full", complete=False)  # its id sorts before every complete set
    c.add("F1", "full")
    c.add("X1", "incremental", complete=False)
    c.add("F2", "full")
    c.add("X2", "full", complete=False)
    unreadable = c.add("U", "incremental", complete=False)
    unreadable.sizes, unreadable.problem = {MANIFEST_NAME: 1}, "manifest format version 9 is not supported"
    running_before.live, running_before.lease_note = True, "a backup is writing it: pid 1"
    plan = plan_prune(c.sets, keep_full=2)
    assert deleted(plan, c) == ["X1", "X2"]
    assert "running" in reason(plan, c, "R0")
    assert "manifest format version 9" in reason(plan, c, "U")
    assert "left for you to inspect" in reason(plan, c, "U")


def test_storage_groups_are_pruned_independently() -> None:
    a, b = Catalog("A"), Catalog("B")
    a.add("F1", "full")
    a.add("F2", "full")
    b.add("F1", "full")
    plan = plan_prune(a.sets + b.sets, keep_full=1)
    assert [(d.sg, d.delete) for d in plan.decisions] == [("A", True), ("A", False), ("B", False)]


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_full_must_be_at_least_one(keep: int) -> None:
    with pytest.raises(InvalidParameterError, match="keep at least 1 full backup"):
        plan_prune([], keep)


def random_catalog(rng: random.Random, count: int) -> Catalog:
    """A history like the backup program makes (each incremental builds on the newest full or incremental,
    each differential on the newest full), except that one in five builds on an older one of those, as when
    backups of one storage group alternate between targets. About one set in ten has no manifest; half of
    those have a live lease (a backup still writing them), whatever their place in the history."""
    c = Catalog()
    fulls: list[str] = []
    chain: list[str] = []
    for n in range(count):
        kind = rng.choice(["full", "incremental", "incremental", "differential", "copy"])
        if kind in ("incremental", "differential") and not fulls:
            kind = "full"
        bases = {"incremental": chain, "differential": fulls}.get(kind, [])
        on = (rng.choice(bases) if rng.random() < 0.2 else bases[-1]) if bases else None
        info = c.add(f"S{n}", kind, on=on, complete=rng.random() > 0.1)
        if not info.complete and rng.random() < 0.5:
            info.live, info.lease_note = True, "a backup is writing it"
        if info.complete and kind in ("full", "incremental"):
            chain.append(f"S{n}")
            fulls += [f"S{n}"] if kind == "full" else []
    return c


@pytest.mark.parametrize("seed", range(40))
def test_random_histories_keep_every_chain_whole(seed: int) -> None:
    rng = random.Random(seed)
    c = random_catalog(rng, rng.randint(1, 30))
    keep = rng.randint(1, 4)
    plan = plan_prune(c.sets, keep)
    kept = {d.backup_id for d in plan.to_keep}
    manifests = {s.backup_id: s.manifest for s in c.sets}
    for backup_id in kept:
        manifest = manifests[backup_id]
        while manifest is not None and manifest.based_on:
            assert manifest.based_on in kept, f"seed {seed}: kept {backup_id} needs {manifest.based_on}"
            manifest = manifests[manifest.based_on]
    fulls = [s.backup_id for s in c.sets if s.complete and s.kind == "full"]
    assert set(fulls[-keep:]) <= kept, f"seed {seed}"
    oldest_kept_full = min(fulls[-keep:], default="")
    for d in plan.to_delete:
        if d.complete:
            assert d.backup_id < oldest_kept_full, f"seed {seed}: {d}"
    for s in c.sets:  # a set without a manifest is deleted exactly when its lease is dead, wherever its id sorts
        if not s.complete:
            assert (s.backup_id in kept) == s.live, f"seed {seed}: {s.backup_id} live={s.live}"


# --- real sets ------------------------------------------------------------------------------------------


@pytest.fixture
def history(tmp_path: Path) -> tuple[str, LocalTarget, list[str]]:
    """A home and a target with F1 I1 F2 D1 I2 C1 F3 (backups in this order): (home, target, ids)."""
    home = ServerHome.init(str(tmp_path / "home"), log_file_size=64 * 1024, policy=QUIET)
    target = LocalTarget(str(tmp_path / "t"))
    sg = home.storage_group()
    sg.mount()
    ids = []
    kinds = ["full", "incremental", "full", "differential", "incremental", "copy", "full"]
    for n, kind in enumerate(kinds):
        workload.run(sg.store("Mailbox Store"), txns=60, seed=n + 1)
        ids.append(back_up(home, SG, kind, target).backup_id)
    sg.dismount()
    home.close()
    return str(tmp_path / "home"), target, ids


def sets_of(home: str) -> str:
    """Where the sets of the storage group of ``home`` lie in its target: ``<home id>/<storage group>``."""
    return f"{ServerHome.open(home, policy=QUIET).home_id}/{SG}"


def test_dry_run_deletes_nothing(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    home, target, ids = history
    before = target.list()
    code, out, _err = run(capsys, "--home", home, "backup", "prune", "--to", target.url, "--keep-full", "2")
    assert code == 0
    assert target.list() == before
    assert out.startswith("Dry run")
    assert f"delete  {sets_of(home)}/{ids[0]}" in out
    assert f"keep    {sets_of(home)}/{ids[2]}" in out
    assert out.strip().endswith("would delete 2 set(s), kept 5")


def test_prune_yes_deletes_old_sets_and_the_rest_still_verify(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    home, target, ids = history
    code, data = run_json(
        capsys, "--home", home, "backup", "prune", "--to", target.url, "--keep-full", "2", "--yes", "--json"
    )
    assert code == 0
    assert data["dry_run"] is False
    assert data["deleted"] == [f"{sets_of(home)}/{ids[1]}", f"{sets_of(home)}/{ids[0]}"]  # newest first
    assert [s["id"] for s in data["sets"]] == ids
    assert [s["action"] for s in data["sets"]] == ["delete", "delete", "keep", "keep", "keep", "keep", "keep"]
    code, listed = run_json(capsys, "--home", home, "backup", "list", "--to", target.url, "--json")
    assert [s["id"] for s in listed] == ids[2:]
    assert not (Path(target.url) / sets_of(home) / ids[0]).exists()
    for backup_id in ids[2:]:
        report = verify_set(target, backup_id)
        assert report.ok, report.problems


def test_prune_removes_what_killed_backups_left_but_not_a_backup_that_may_be_running(history: History) -> None:
    """A set without a manifest is judged by its lease, not by the time in its id: a killed backup (no lease)
    is deleted whether its id is older or newer than every complete set, and a backup whose lease is live is
    kept even when its id is older than every complete set."""
    home, target, ids = history
    old, new = "20000101T000000.000000Z-full-00000a", "20991231T000000.000000Z-full-00000b"
    running = "20000102T000000.000000Z-full-00000c"
    for backup_id in (old, new, running):  # each stopped while writing its first store: a temporary file alone
        folder = Path(target.url) / sets_of(home) / backup_id
        folder.mkdir()
        (folder / ".priv1.edb.tmp-0123456789abcdef").write_bytes(b"half a store")
    lease = Lease("a test's backup", this_system(), os.getpid(), "0123456789abcdef", now_us(), 600.0)
    target.write_file(f"{sets_of(home)}/{running}/{LEASE_NAME}", [lease.to_json()])
    plan = plan_prune(list_sets(target), keep_full=3)
    assert [d.backup_id for d in plan.to_delete] == [old, new]
    assert [d.state for d in plan.decisions if d.backup_id == running] == ["running"]
    result = apply_prune(target, plan)
    assert result.deleted == [f"{sets_of(home)}/{new}", f"{sets_of(home)}/{old}"]
    assert result.files == 2
    assert not (Path(target.url) / sets_of(home) / old).exists()
    assert not (Path(target.url) / sets_of(home) / new).exists()
    assert sorted(p.name for p in (Path(target.url) / sets_of(home) / running).iterdir()) == [
        ".priv1.edb.tmp-0123456789abcdef",
        LEASE_NAME,
    ]
    assert [s.backup_id for s in list_sets(target)] == [running, *ids]


class FinishesWhenItsLeaseIsRead(LocalTarget):
    """A target in which the backup writing ``folder`` finishes at the worst moment for a prune: between the
    prune's listing of the folder and its look at the lease (manifest written, then lease released)."""

    def __init__(self, path: str, folder: str, manifest: bytes) -> None:
        super().__init__(path)
        self.folder = folder
        self.manifest = manifest

    def read_bytes(self, name: str) -> bytes:
        if name == f"{self.folder}/{LEASE_NAME}" and self.exists(name):
            self.write_file(f"{self.folder}/{MANIFEST_NAME}", [self.manifest])
            self.delete(name)
        return super().read_bytes(name)


def test_a_backup_that_finishes_while_a_prune_looks_at_it_is_left_whole(history: History) -> None:
    """The plan saw only an unfinished write in the folder (the backup's lease was not listed yet) and marked
    it for deletion. By the deletion, the backup holds its lease and has written its files; it writes its
    manifest and releases its lease between the prune's listing and its look at the lease. The prune must leave
    the set alone, not delete the files it listed and leave a manifest naming files that are gone."""
    home, target, ids = history
    backup_id = "20991231T000000.000000Z-differential-00000d"
    folder = f"{sets_of(home)}/{backup_id}"
    (Path(target.url) / folder).mkdir(parents=True)
    (Path(target.url) / folder / ".E0000002.log.tmp-0123456789abcdef").write_bytes(b"half a log")
    plan = plan_prune(list_sets(target), keep_full=3)
    assert backup_id in [d.backup_id for d in plan.to_delete]  # no lease listed: a dead backup, as far as seen

    (Path(target.url) / folder / ".E0000002.log.tmp-0123456789abcdef").unlink()
    lease = Lease("a test's backup", this_system(), os.getpid(), "0123456789abcdef", now_us(), 600.0)
    target.write_file(f"{folder}/{LEASE_NAME}", [lease.to_json()])
    target.write_file(f"{folder}/E0000002.log", [b"a whole log"])
    manifest = target.read_bytes(f"{sets_of(home)}/{ids[3]}/{MANIFEST_NAME}")  # any manifest: only presence counts
    racing = FinishesWhenItsLeaseIsRead(target.url, folder, manifest)
    result = apply_prune(racing, plan)

    assert folder in result.skipped
    assert folder not in result.deleted
    assert sorted(p.name for p in (Path(target.url) / folder).iterdir()) == ["E0000002.log", MANIFEST_NAME]


class BeginsDuringTheListing(LocalTarget):
    """A target in which a backup begins (its lease, then its first unfinished write) while the set folders
    are being listed: at the first call of ``on`` (``sizes`` or ``partial``)."""

    def __init__(self, path: str, folder: str, on: str) -> None:
        super().__init__(path)
        self.folder, self.on, self.begun = folder, on, False

    def _begin(self, called: str) -> None:
        if called == self.on and not self.begun:
            self.begun = True
            lease = Lease("a test's backup", this_system(), os.getpid(), "0123456789abcdef", now_us(), 600.0)
            self.write_file(f"{self.folder}/{LEASE_NAME}", [lease.to_json()])
            (Path(self.url) / self.folder / ".E0000002.log.tmp-0123456789abcdef").write_bytes(b"half a log")

    def sizes(self, prefix: str = "") -> dict[str, int]:
        self._begin("sizes")
        return super().sizes(prefix)

    def partial(self, prefix: str = "") -> list[str]:
        self._begin("partial")
        return super().partial(prefix)


@pytest.mark.parametrize("on", ["sizes", "partial"])
def test_a_backup_that_begins_while_the_sets_are_listed_is_never_planned_for_deletion(
    history: History, on: str
) -> None:
    home, target, _ids = history
    folder = f"{sets_of(home)}/20991231T000000.000000Z-full-00000e"
    beginning = BeginsDuringTheListing(target.url, folder, on)
    plan = plan_prune(list_sets(beginning), keep_full=3)
    assert beginning.begun
    assert not [d for d in plan.to_delete if d.folder == folder]


class FailingDeletes(LocalTarget):
    """Records deletions; the ``fail_at``-th one (counting from 1) raises like a target that went away."""

    def __init__(self, path: str, fail_at: int = 0) -> None:
        super().__init__(path)
        self.deleted: list[str] = []
        self.fail_at = fail_at

    def delete(self, name: str) -> None:
        if len(self.deleted) + 1 == self.fail_at:
            raise BackupTargetError(f"cannot delete {name!r}: the target went away")
        self.deleted.append(name)
        super().delete(name)


def test_apply_deletes_each_manifest_first(history: History) -> None:
    home, target, ids = history
    recording = FailingDeletes(target.url)
    result = apply_prune(recording, plan_prune(list_sets(recording), keep_full=2))
    where = sets_of(home)
    assert result.deleted == [f"{where}/{ids[1]}", f"{where}/{ids[0]}"]
    first_of_each = [  # <home id>/<storage group>/<backup id>/<file>: the set is the third part
        n
        for i, n in enumerate(recording.deleted)
        if i == 0 or n.split("/")[2] != recording.deleted[i - 1].split("/")[2]
    ]
    assert first_of_each == [f"{where}/{ids[1]}/{MANIFEST_NAME}", f"{where}/{ids[0]}/{MANIFEST_NAME}"]
    assert result.files == len(recording.deleted)


def test_failure_midway_leaves_a_half_deleted_set_incomplete_and_kept_sets_whole(
    history: History,
) -> None:
    _home, target, ids = history
    failing = FailingDeletes(target.url, fail_at=2)  # the manifest of the first set goes, then the target fails
    with pytest.raises(BackupTargetError, match="went away"):
        apply_prune(failing, plan_prune(list_sets(failing), keep_full=2))
    by_id = {s.backup_id: s for s in list_sets(target)}
    assert not by_id[ids[1]].complete
    assert by_id[ids[0]].complete  # untouched: nothing complete depends on a deleted set
    for backup_id in ids[2:]:
        assert verify_set(target, backup_id).ok


def test_prune_in_a_memory_target(history: History) -> None:
    home, local, ids = history
    unique = f"prune-{uuid.uuid4().hex}"
    target = FsspecTarget(f"memory://{unique}/t")
    try:
        for name in local.list():
            target.write_file(name, local.read_file(name))
        result = apply_prune(target, plan_prune(list_sets(target), keep_full=1))
        assert result.deleted == [f"{sets_of(home)}/{i}" for i in reversed(ids[:6])]
        assert [s.backup_id for s in list_sets(target)] == ids[6:]
        assert verify_set(target, ids[6]).ok
    finally:
        fsspec.filesystem("memory").rm(f"/{unique}", recursive=True)


def test_cli_keep_full_zero_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "home")
    ServerHome.init(home, log_file_size=64 * 1024, policy=QUIET).close()
    code, _out, err = run(capsys, "--home", home, "backup", "prune", "--to", str(tmp_path / "t"), "--keep-full", "0")
    assert code == 3
    assert "keep at least 1 full backup" in err
    code, _out, _err = run(capsys, "--home", home, "backup", "prune", "--keep-full", "1")
    assert code == 3  # --to is required: pruning deletes
