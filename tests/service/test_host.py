"""The service's state (service/host.py), in this process: what ``status`` says of a storage group whose files
are locked while it is not mounted here."""

from __future__ import annotations

import os
from pathlib import Path

from shadowstore.home import ServerHome
from shadowstore.io.fs import OsFileSystem
from shadowstore.service.host import InformationStore

SG = "First Storage Group"


def test_status_of_a_group_locked_but_not_mounted_here_says_so_and_names_no_store_mounted(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    ServerHome.init(home)
    host = InformationStore(home)
    host.start()
    try:
        host.dismount(SG)
        config = host.owned().config.find(SG).resolved(home)
        # as while the engine dismounts it after a full log disk: not mounted here, its lock not yet released
        lock = OsFileSystem().lock(os.path.join(config.system_dir, f"{config.log_base}.lock"), "a dismount")
        try:
            [group] = host.status()["storage_groups"]
        finally:
            lock.release()
        assert group["mounted"] is True
        assert [store["mounted"] for store in group["stores"]] == [False, False]
    finally:
        host.stop()
