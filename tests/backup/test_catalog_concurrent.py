"""Listing a target while a prune deletes sets from it, on every target type: the listing never fails, and a
set caught half deleted is shown in a state that no restore or prune uses wrongly."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from shadowstore.backup import catalog
from shadowstore.backup.layout import set_folder
from shadowstore.backup.manifest import MANIFEST_NAME
from shadowstore.backup.prune import apply_prune, plan_prune
from shadowstore.backup.run import back_up
from shadowstore.backup.target import Target
from shadowstore.home import ServerHome
from tests.conftest import QUIET

SG = "First Storage Group"
COPIES = 24


def many_sets(home: ServerHome, target: Target) -> list[str]:
    """One real full backup, then COPIES older copies of it under other ids (as if taken earlier)."""
    newest = back_up(home, SG, "full", target).backup_id
    folder = set_folder(home.home_id, SG, newest)
    files = {name: target.read_bytes(name) for name in target.list(f"{folder}/")}
    ids = []
    for n in range(COPIES):
        backup_id = f"20200101T0000{n:02d}.000000Z-full-{n:06x}"
        ids.append(backup_id)
        for name, data in files.items():
            base = name.rpartition("/")[2]
            if base == MANIFEST_NAME:
                raw = json.loads(data)
                raw["backup_id"] = backup_id
                raw["last_gen"] = raw["first_gen"]  # older: the stream had not gone as far
                data = json.dumps(raw).encode()
            target.write_file(f"{set_folder(home.home_id, SG, backup_id)}/{base}", [data])
    return [*ids, newest]


def test_listing_while_a_prune_deletes_never_fails(tmp_path: Path, target: Target) -> None:
    home = ServerHome.init(str(tmp_path / "home"), policy=QUIET)
    ids = many_sets(home, target)
    home.close()
    plan = plan_prune(catalog.list_sets(target), keep_full=1)
    assert [d.backup_id for d in plan.to_delete] == ids[:-1]
    errors: list[BaseException] = []

    def prune() -> None:
        try:
            apply_prune(target, plan)
        except BaseException as exc:  # handed to the main thread, which fails the test with it
            errors.append(exc)

    pruning = threading.Thread(target=prune)
    pruning.start()
    seen: set[str] = set()
    listings = 0
    while pruning.is_alive() or listings == 0:
        for info in catalog.list_sets(target):
            seen.add(info.state)
            if info.backup_id == ids[-1]:
                assert info.whole
        listings += 1
    pruning.join()
    assert errors == []
    assert seen <= {"complete", "damaged", "incomplete", "unreadable"}
    assert [s.backup_id for s in catalog.list_sets(target)] == ids[-1:]
