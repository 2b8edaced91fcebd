"""The catalog of a target: every set of every storage group, complete or not, manifests read several at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from shadowstore.backup import catalog
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.prune import apply_prune, plan_prune
from shadowstore.backup.run import back_up
from shadowstore.errors import BackupTargetError, BackupTargetNotFoundError
from shadowstore.home import ServerHome
from tests.conftest import QUIET

SG = "First Storage Group"


@pytest.fixture
def four_sets(tmp_path: Path) -> tuple[LocalTarget, str, list[str]]:
    """A target with four sets of one home; returns the target, the home's id and the backup ids."""
    home = ServerHome.init(str(tmp_path / "home"), policy=QUIET)
    target = LocalTarget(str(tmp_path / "target"))
    ids = [back_up(home, SG, kind, target).backup_id for kind in ("full", "incremental", "incremental", "copy")]
    home.close()
    return target, home.home_id, ids


def test_sets_are_listed_oldest_first_and_unfinished_or_damaged_ones_say_why(
    four_sets: tuple[LocalTarget, str, list[str]],
) -> None:
    target, home_id, ids = four_sets
    target.write_file(f"{home_id}/{SG}/20991231T000000.000000Z-full-000000/priv1.edb", [b"cut short"])
    target.write_file(f"{home_id}/{SG}/{ids[2]}/manifest.json", [b"{ not json"])
    sets = catalog.list_sets(target)
    assert [s.backup_id for s in sets] == [*ids, "20991231T000000.000000Z-full-000000"]
    assert [s.complete for s in sets] == [True, True, False, True, False]
    assert [s.kind for s in sets] == ["full", "incremental", "incremental", "copy", "full"]
    assert sets[2].problem is not None
    assert "manifest.json" in sets[2].problem
    assert sets[4].problem == "no manifest: no lease: the backup did not finish"
    assert catalog.list_sets(target, "Another Group", home=home_id) == []
    assert catalog.find_set(target, ids[1]).backup_id == ids[1]
    with pytest.raises(BackupTargetNotFoundError, match="there is no backup set 'nope'"):
        catalog.find_set(target, "nope")


def test_a_backup_killed_while_writing_its_first_file_is_listed_as_incomplete(
    four_sets: tuple[LocalTarget, str, list[str]],
) -> None:
    """Its folder holds nothing but the temporary file of the store it was copying, which ``list`` hides."""
    target, home_id, ids = four_sets
    folder = Path(target.url) / home_id / SG / "20991231T000000.000000Z-full-000000"
    folder.mkdir()
    (folder / ".priv1.edb.tmp-0123456789abcdef").write_bytes(b"half a store")
    sets = catalog.list_sets(target, SG, home=home_id)
    assert [s.backup_id for s in sets] == [*ids, folder.name]
    assert (sets[-1].complete, sets[-1].files, sets[-1].partial) == (False, [], ["priv1.edb"])
    assert sets[-1].problem == "no manifest: no lease: the backup did not finish; partly written: priv1.edb"
    assert sets[-1].to_dict()["partial_files"] == 1
    assert all(s.partial == [] for s in sets[:-1])


class NoUploadListing(LocalTarget):
    """A target that refuses to name its unfinished writes, as S3 does under a policy without
    s3:ListBucketMultipartUploads."""

    def partial(self, prefix: str = "") -> list[str]:
        raise BackupTargetError("cannot list the unfinished uploads: access denied")


def test_a_target_that_will_not_name_its_unfinished_writes_still_lists_its_sets(
    four_sets: tuple[LocalTarget, str, list[str]],
) -> None:
    target, home_id, ids = four_sets
    failed = "20000101T000000.000000Z-full-000001"  # no manifest and no lease: prune deletes it
    target.write_file(f"{home_id}/{SG}/{failed}/priv1.edb", [b"cut short"])
    refusing = NoUploadListing(target.url)
    assert [s.backup_id for s in catalog.list_sets(refusing)] == [failed, *ids]
    assert catalog.find_set(refusing, ids[1]).complete
    with pytest.raises(BackupTargetError, match="access denied"):  # prune, which would remove them, says so
        apply_prune(refusing, plan_prune(catalog.list_sets(refusing), keep_full=1))


class CountingPartial(LocalTarget):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.asked = 0

    def partial(self, prefix: str = "") -> list[str]:
        self.asked += 1
        return super().partial(prefix)


def test_finding_the_set_a_backup_builds_on_does_not_look_for_unfinished_writes(
    four_sets: tuple[LocalTarget, str, list[str]],
) -> None:
    """Each backup and restore reads the catalog; only listing and pruning need the extra listing."""
    target, home_id, ids = four_sets
    full = catalog.find_set(target, ids[0]).manifest
    assert full is not None
    counting = CountingPartial(target.url)
    found = catalog.previous_in_chain(counting, home_id, SG, "incremental", full.log_signature)
    assert found is not None
    assert found.backup_id == ids[2]
    assert counting.asked == 0
    catalog.list_sets(counting, SG, home=home_id)
    assert counting.asked == 1


class MeetingTarget(LocalTarget):
    """Each manifest read waits until ``readers`` reads are under way at once: on a target read one at a time
    the first waits in vain and the barrier breaks."""

    def __init__(self, url: str, readers: int) -> None:
        super().__init__(url)
        self.barrier = threading.Barrier(readers, timeout=10)

    def read_bytes(self, name: str) -> bytes:
        self.barrier.wait()
        return super().read_bytes(name)


def test_manifests_are_read_several_at_once(four_sets: tuple[LocalTarget, str, list[str]]) -> None:
    target, _home_id, ids = four_sets
    sets = catalog.list_sets(MeetingTarget(target.url, readers=4))
    assert [s.backup_id for s in sets if s.complete] == ids
