"""shadowstore.toml: a store's ``mount_at_start`` is written only when false, read back, and a file written
before the setting existed loads as true and is saved back unchanged."""

from __future__ import annotations

import os
import tomllib

import pytest

from shadowstore import config as cfg
from shadowstore.errors import InvalidParameterError, NotFoundError
from shadowstore.home import DEFAULT_SG, ServerHome
from shadowstore.io.fs import OsFileSystem

PUBLIC = "Public Folder Store"


@pytest.fixture
def home_path(tmp_path: os.PathLike[str]) -> str:
    path = os.path.join(tmp_path, "home")
    ServerHome.init(path).close()
    return path


def config_bytes(home: str, name: str = cfg.CONFIG_NAME) -> bytes:
    with open(os.path.join(home, name), "rb") as f:
        return f.read()


def store_tables(home: str) -> list[dict[str, object]]:
    data = tomllib.loads(config_bytes(home).decode())
    return list(data["storage_group"][0]["store"])


def test_a_file_without_mount_at_start_loads_as_true_and_is_saved_back_unchanged(home_path: str) -> None:
    before = config_bytes(home_path)
    assert b"mount_at_start" not in before
    fs = OsFileSystem()
    config = cfg.load(fs, home_path)
    assert [s.mount_at_start for s in config.find(DEFAULT_SG).stores] == [True, True]
    cfg.save(fs, home_path, config)
    assert config_bytes(home_path) == before
    assert not os.path.exists(os.path.join(home_path, cfg.PREVIOUS_NAME)), "nothing changed, so nothing was kept"


def test_mount_at_start_false_is_written_for_that_store_only_and_read_back(home_path: str) -> None:
    fs = OsFileSystem()
    before = config_bytes(home_path)
    config = cfg.load(fs, home_path)
    changed = cfg.set_mount_at_start(config, DEFAULT_SG, PUBLIC, False)
    assert changed.name == PUBLIC
    cfg.save(fs, home_path, config)
    assert store_tables(home_path) == [
        {"name": "Mailbox Store", "file": "priv1.edb", "dbid": 1},
        {"name": PUBLIC, "file": "pub1.edb", "dbid": 2, "mount_at_start": False},
    ]
    again = cfg.load(fs, home_path)
    assert [(s.name, s.mount_at_start) for s in again.find(DEFAULT_SG).stores] == [
        ("Mailbox Store", True),
        (PUBLIC, False),
    ]
    assert config_bytes(home_path, cfg.PREVIOUS_NAME) == before  # the last content, kept beside it
    cfg.set_mount_at_start(again, DEFAULT_SG, "pub1.edb", True)  # a store named by its file, too
    cfg.save(fs, home_path, again)
    assert config_bytes(home_path) == before, "back to true, the file is as it was"


def test_a_mount_at_start_that_is_not_a_boolean_is_refused_naming_the_file_and_store(home_path: str) -> None:
    path = os.path.join(home_path, cfg.CONFIG_NAME)
    text = config_bytes(home_path).decode().replace("dbid = 2 }", 'dbid = 2, mount_at_start = "no" }')
    with open(path, "w") as f:
        f.write(text)
    with pytest.raises(InvalidParameterError) as info:
        cfg.load(OsFileSystem(), home_path)
    assert path in info.value.message
    assert "mount_at_start of store 'Public Folder Store' must be true or false, not 'no'" in info.value.message


def test_setting_mount_at_start_of_an_unknown_store_names_the_stores_there_are(home_path: str) -> None:
    config = cfg.load(OsFileSystem(), home_path)
    with pytest.raises(NotFoundError, match="has no store 'Nonesuch' \\(it has: Mailbox Store, Public Folder Store\\)"):
        cfg.set_mount_at_start(config, DEFAULT_SG, "Nonesuch", False)
