"""The state of each set in a busy target (complete, damaged, running, incomplete, unreadable), and what
prune, verify, restore plans and the backup program do with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from shadowstore.backup import catalog
from shadowstore.backup.lease import LEASE_NAME, Lease, this_system
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.prune import apply_prune, plan_prune
from shadowstore.backup.run import back_up
from shadowstore.backup.target import Buffer
from shadowstore.backup.verified import read_verification
from shadowstore.backup.verify import verify_set
from shadowstore.engine.logstream import LogSet
from shadowstore.errors import BackupSetError, BackupTargetError, BackupTargetNotFoundError, NoRestorableBackupError
from shadowstore.format.common import now_us
from shadowstore.home import ServerHome
from shadowstore.restore.plan import RestoreTarget, plan_restore
from tests.cli.clirun import run, run_json
from tests.conftest import QUIET

SG = "First Storage Group"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[ServerHome]:
    made = ServerHome.init(str(tmp_path / "home"), log_file_size=64 << 10, policy=QUIET)
    yield made
    made.close()


@pytest.fixture
def target(tmp_path: Path) -> LocalTarget:
    return LocalTarget(str(tmp_path / "target"))


def commit(home: ServerHome, n: int) -> None:
    sg = home.storage_group(SG)
    if not sg.mounted:
        sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        if "t" not in tx.tables():
            tx.create_table("t")
        for i in range(n):
            tx.put("t", f"k{i}".encode(), b"v" * 100)
    sg.dismount()


def states(target: LocalTarget, home: ServerHome) -> list[str]:
    return [s.state for s in catalog.list_sets(target, home=home.home_id)]


def remove(target: LocalTarget, home: ServerHome, backup_id: str, name: str) -> None:
    Path(target.url, home.home_id, SG, backup_id, name).unlink()


# --- damaged: a manifest whose files are not all there ------------------------------------------------------


def test_a_full_that_lost_a_file_is_damaged_and_not_used(home: ServerHome, target: LocalTarget) -> None:
    older = back_up(home, SG, "full", target).backup_id
    commit(home, 20)
    newer = back_up(home, SG, "full", target).backup_id
    remove(target, home, newer, "priv1.edb")
    assert states(target, home) == ["complete", "damaged"]
    sets = catalog.list_sets(target, home=home.home_id)
    assert sets[1].damage == ["priv1.edb is missing"]
    plan = plan_restore(sets, RestoreTarget.latest())
    assert plan.sets[0].backup_id == older
    assert any(newer in why and "priv1.edb is missing" in why for why in plan.ignored)
    pruned = plan_prune(sets, keep_full=1)
    assert [d.backup_id for d in pruned.to_delete] == []  # the damaged newest full does not count
    assert "newest whole full" in pruned.decisions[0].reason


def test_verify_of_an_incremental_checks_the_files_of_its_full(home: ServerHome, target: LocalTarget) -> None:
    full = back_up(home, SG, "full", target).backup_id
    commit(home, 20)
    incremental = back_up(home, SG, "incremental", target).backup_id
    assert verify_set(target, incremental).ok
    remove(target, home, full, "priv1.edb")
    report = verify_set(target, incremental)
    assert not report.ok
    assert [p.kind for p in report.errors] == ["base"]
    assert "priv1.edb is missing" in report.errors[0].detail


def test_a_restore_plan_refuses_when_only_a_damaged_full_is_left(home: ServerHome, target: LocalTarget) -> None:
    full = back_up(home, SG, "full", target).backup_id
    Path(target.url, home.home_id, SG, full, "priv1.edb").write_bytes(b"shorter than it was")
    with pytest.raises(NoRestorableBackupError, match=r"priv1\.edb is 19 bytes, the manifest says"):
        plan_restore(catalog.list_sets(target, home=home.home_id), RestoreTarget.latest())


# --- unreadable: one set's trouble is that set's, not the listing's -------------------------------------------


class VanishingManifest(LocalTarget):
    """A target where one set's manifest is deleted between the listing and the read (a prune at work)."""

    def __init__(self, path: str, vanish: str, error: BackupTargetError) -> None:
        super().__init__(path)
        self.vanish = vanish
        self.error = error

    def read_file(self, name: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        if name.startswith(self.vanish) and name.endswith("manifest.json"):
            raise self.error
        return super().read_file(name, chunk_size)


@pytest.mark.parametrize(
    "error",
    [BackupTargetNotFoundError("gone"), BackupTargetError("permission denied")],
    ids=["vanished", "unreadable"],
)
def test_a_manifest_that_cannot_be_read_makes_that_set_unreadable_only(
    home: ServerHome, target: LocalTarget, error: BackupTargetError
) -> None:
    old = back_up(home, SG, "full", target).backup_id
    full = back_up(home, SG, "full", target).backup_id
    busy = VanishingManifest(target.url, f"{home.home_id}/{SG}/{old}/", error)
    sets = catalog.list_sets(busy, home=home.home_id)
    assert [s.state for s in sets] == ["unreadable", "complete"]
    assert sets[0].problem is not None
    assert plan_restore(sets, RestoreTarget.latest()).sets[0].backup_id == full
    commit(home, 10)
    assert back_up(home, SG, "incremental", busy).kind == "incremental"  # the chain check lists the catalog too
    assert [d.delete for d in plan_prune(catalog.list_sets(busy), 1).decisions[:1]] == [False]


# --- running: judged by the lease, never by the id -------------------------------------------------------------


def lease_in(target: LocalTarget, folder: str, lease: Lease) -> None:
    target.write_file(f"{folder}/priv1.edb", [b"half a store"])
    target.write_file(f"{folder}/{LEASE_NAME}", [lease.to_json()])


@pytest.mark.parametrize(
    ("lease", "state"),
    [
        (Lease("another server", "elsewhere", 1, "a" * 16, now_us(), 600), "running"),
        (Lease("another server", "elsewhere", 1, "b" * 16, now_us() - 700_000_000, 600), "incomplete"),
        (Lease("this machine", this_system(), 2**22 + 17, "c" * 16, now_us(), 600), "incomplete"),
        (None, "incomplete"),
    ],
    ids=["live", "ran-out", "holder-gone", "none"],
)
def test_a_set_without_a_manifest_is_pruned_only_when_its_lease_is_dead(
    home: ServerHome, target: LocalTarget, lease: Lease | None, state: str
) -> None:
    back_up(home, SG, "full", target)
    folder = f"{home.home_id}/{SG}/20000101T000000.000000Z-full-000001"  # a clock far behind: the id says nothing
    if lease is None:
        target.write_file(f"{folder}/priv1.edb", [b"half a store"])
    else:
        lease_in(target, folder, lease)
    assert states(target, home) == [state, "complete"] or states(target, home) == ["complete", state]
    plan = plan_prune(catalog.list_sets(target), keep_full=1)
    apply_prune(target, plan)
    left = {s.backup_id for s in catalog.list_sets(target)}
    assert ("20000101T000000.000000Z-full-000001" in left) == (state == "running")


class DeletingTarget(LocalTarget):
    """A target where, once the backup has written its first log, another process deletes the store copy."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.deleted: str | None = None

    def write_file(self, name: str, chunks: Iterable[Buffer], **options: object) -> int:
        written = super().write_file(name, chunks, **options)  # type: ignore[arg-type]
        if name.endswith(".log") and self.deleted is None:
            self.deleted = name.rpartition("/")[0] + "/priv1.edb"
            self.delete(self.deleted)
        return written


def test_a_backup_whose_files_were_deleted_under_it_fails_and_truncates_nothing(
    home: ServerHome, tmp_path: Path
) -> None:
    commit(home, 1500)
    sg = home.storage_group(SG)
    before = sorted(LogSet.scan(home.fs, sg.config.log_dir, sg.base).archived)
    assert before, "the test needs archived logs that a full backup would truncate"
    target = DeletingTarget(str(tmp_path / "target"))
    with pytest.raises(BackupSetError, match=r"changed while it was written: priv1\.edb is missing"):
        back_up(home, SG, "full", target)
    assert set(before) <= set(LogSet.scan(home.fs, sg.config.log_dir, sg.base).archived)
    assert states(target, home) == ["incomplete"]
    assert back_up(home, SG, "full", LocalTarget(str(tmp_path / "other"))).kind == "full"


class SlowCheckTarget(LocalTarget):
    """A target that, while ``delay`` is set, takes that long to answer the backup's last check of its set (are
    uploads of it unfinished?), and notes which sets a prune asked at that moment would delete."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.delay = 0.0
        self.refuse_renewals = False
        self.prune_would_delete: list[str] = []
        self._asking = False

    def write_file(self, name: str, chunks: Iterable[Buffer], **options: object) -> int:
        if self.refuse_renewals and name.endswith(LEASE_NAME) and self.exists(name):
            raise BackupTargetError(f"{name}: permission denied")
        return super().write_file(name, chunks, **options)  # type: ignore[arg-type]

    def partial(self, prefix: str = "") -> list[str]:  # type: ignore[override]
        found = super().partial(prefix)
        if self.delay and not self._asking and "-full-" in prefix:
            time.sleep(self.delay)
            self._asking = True
            try:
                plan = plan_prune(catalog.list_sets(self), keep_full=1)
                self.prune_would_delete = [d.backup_id for d in plan.to_delete]
            finally:
                self._asking = False
        return list(found)


def test_a_backup_whose_check_outlasts_its_lease_writes_no_manifest_and_truncates_nothing(
    home: ServerHome, tmp_path: Path
) -> None:
    target = SlowCheckTarget(str(tmp_path / "target"))
    back_up(home, SG, "full", target)
    commit(home, 1500)
    sg = home.storage_group(SG)
    before = sorted(LogSet.scan(home.fs, sg.config.log_dir, sg.base).archived)
    assert before, "the test needs archived logs that a full backup would truncate"
    home.config.settings.setdefault("backup", {})["lease_seconds"] = 1.0
    target.delay = 1.2
    refused = r"has only 0\.0 s of its 1 s lease left .*: its last renewal was 1\.\d s ago\."
    with pytest.raises(BackupSetError, match=refused) as err:
        back_up(home, SG, "full", target)
    assert "raise backup.lease_seconds" in (err.value.hint or "")
    # at the moment the check ended, a prune elsewhere would have deleted the set: a manifest then is no proof
    failed = [s.backup_id for s in catalog.list_sets(target) if s.state == "incomplete"]
    assert target.prune_would_delete == failed
    assert set(before) <= set(LogSet.scan(home.fs, sg.config.log_dir, sg.base).archived)
    assert sorted(states(target, home)) == ["complete", "incomplete"]
    target.delay = 0.0
    assert back_up(home, SG, "full", target).kind == "full"


def test_a_backup_whose_lease_renewals_fail_says_so_when_too_little_of_it_is_left(
    home: ServerHome, tmp_path: Path
) -> None:
    target = SlowCheckTarget(str(tmp_path / "target"))
    home.config.settings.setdefault("backup", {})["lease_seconds"] = 1.0
    target.delay, target.refuse_renewals = 0.7, True
    refused = r"lease left for its manifest.*: its last renewal was .* ago; renewing it failed: .*permission denied"
    with pytest.raises(BackupSetError, match=refused):
        back_up(home, SG, "full", target)
    assert states(target, home) == ["incomplete"]


class PausedTarget(LocalTarget):
    """Holds the backup after its lease and first file are written until ``go`` is set."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.paused = threading.Event()
        self.go = threading.Event()

    def write_file(self, name: str, chunks: Iterable[Buffer], **options: object) -> int:
        written = super().write_file(name, chunks, **options)  # type: ignore[arg-type]
        if name.endswith("priv1.edb") and not self.paused.is_set():
            self.paused.set()
            assert self.go.wait(60)
        return written


def test_a_prune_during_a_backup_whose_clock_is_behind_leaves_it_alone(
    home: ServerHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = PausedTarget(str(tmp_path / "target"))
    target.paused.set()  # the first full goes through
    first = back_up(home, SG, "full", target).backup_id
    target.paused.clear()
    commit(home, 20)
    monkeypatch.setattr("shadowstore.backup.run.new_backup_id", lambda kind: f"20000101T000000.000000Z-{kind}-00beef")
    done: list[str] = []
    thread = threading.Thread(target=lambda: done.append(back_up(home, SG, "full", target).backup_id))
    thread.start()
    try:
        assert target.paused.wait(60)
        sets = catalog.list_sets(target, home=home.home_id)
        assert [(s.backup_id, s.state) for s in sets] == [
            ("20000101T000000.000000Z-full-00beef", "running"),
            (first, "complete"),
        ]
        result = apply_prune(target, plan_prune(sets, keep_full=1))
        assert result.deleted == []
    finally:
        target.go.set()
        thread.join(60)
    assert done == ["20000101T000000.000000Z-full-00beef"]
    sets = catalog.list_sets(target, home=home.home_id)
    assert [s.state for s in sets] == ["complete", "complete"]
    pruned = plan_prune(sets, keep_full=1)  # the newest full is the one with the newer logs, not the newer id
    assert [d.backup_id for d in pruned.to_delete] == [first]


# --- verified recently: prune can count only fulls proven restorable ---------------------------------------------


def test_prune_verified_within_keeps_the_newest_full_verify_passed_on(
    home: ServerHome, target: LocalTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    proven = back_up(home, SG, "full", target).backup_id
    commit(home, 20)
    unread = back_up(home, SG, "full", target).backup_id
    home.close()
    cli = ("--home", home.path)
    code, _out, err = run(capsys, *cli, "backup", "verify", proven, "--to", target.url, "--quiet")
    assert code == 0, err
    record = read_verification(target, f"{home.home_id}/{SG}/{proven}")
    assert record is not None
    assert record.ok
    code, plan = run_json(
        capsys, *cli, "backup", "prune", "--to", target.url, "--keep-full", "1", "--verified-within", "1d", "--json"
    )
    assert code == 0
    assert [(s["id"], s["action"]) for s in plan["sets"]] == [(proven, "keep"), (unread, "keep")]
    assert "verified recently enough" in plan["sets"][0]["reason"]
    code, plan = run_json(capsys, *cli, "backup", "prune", "--to", target.url, "--keep-full", "1", "--json")
    assert [(s["id"], s["action"]) for s in plan["sets"]] == [(proven, "delete"), (unread, "keep")]
    assert verify_set(target, proven).warnings == []  # the record is not an unknown file of the set


def test_prune_verified_within_prunes_nothing_when_no_full_was_verified(
    home: ServerHome, target: LocalTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    back_up(home, SG, "full", target)
    back_up(home, SG, "full", target)
    home.close()
    code, plan = run_json(
        capsys, "--home", home.path, "backup", "prune", "--to", target.url, "--keep-full", "1",
        "--verified-within", "3600", "--json",
    )  # fmt: skip
    assert code == 0
    assert [s["action"] for s in plan["sets"]] == ["keep", "keep"]
    assert "verified recently enough" in plan["sets"][0]["reason"]
