"""The service's state (service/host.py), in this process: what ``status`` says of a storage group whose files
are locked while it is not mounted here, and a storage group another program held at the start, mounted once
that program lets it go."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from shadowstore.home import ServerHome
from shadowstore.io.fs import OsFileSystem
from shadowstore.service import host as host_module
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


def test_a_group_another_program_held_at_the_start_is_mounted_once_it_is_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_module, "BUSY_RETRY_SECONDS", 0.05)
    home = str(tmp_path / "home")
    ServerHome.init(home)
    config = ServerHome.open(home).config.find(SG).resolved(home)
    # as a backup program that opened the home while no service ran holds it
    holder = OsFileSystem().lock(os.path.join(config.system_dir, f"{config.log_base}.lock"), "a backup program")
    host = InformationStore(home)
    said: list[str] = []
    host.announce = said.append
    try:
        host.start()
        assert [f["error"] for f in host.start_failures] == ["StorageGroupBusyError"]
        time.sleep(0.3)  # several tries while it is held
        assert [store["mounted"] for store in host.status()["storage_groups"][0]["stores"]] == [False, False]
        assert [f["error"] for f in host.start_failures] == ["StorageGroupBusyError"]
        holder.release()
        deadline = time.monotonic() + 10
        while host.start_failures and time.monotonic() < deadline:
            time.sleep(0.02)
        [group] = host.status()["storage_groups"]
        assert group["mounted"] is True
        assert [store["mounted"] for store in group["stores"]] == [True, True]
        assert host.start_failures == []
        assert said == [f"{SG} is mounted now: the program that held it when the service started has ended"]
        host.mail.create("alice")  # served: the mailbox layer works on it
    finally:
        holder.release()
        host.stop()
