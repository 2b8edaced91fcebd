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


# --- numbers and names a hand-edited file or a command may give -----------------------------------------------


def edit_config(home: str, old: str, new: str) -> str:
    """Replace ``old`` with ``new`` in the home's shadowstore.toml (``old`` must be there); returns its path."""
    path = os.path.join(home, cfg.CONFIG_NAME)
    text = config_bytes(home).decode()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("table", "line", "named"),
    [
        ("backup", "lease_seconds = 99999999999999999999", "backup.lease_seconds must be a number of seconds from 1"),
        ("backup", "lease_seconds = -1", "not -1"),
        ("backup", "lease_seconds = inf", "not inf"),
        ("backup", "lease_seconds = true", "not True"),
        (
            "engine",
            "transaction_timeout = 0.5",
            "engine.transaction_timeout must be a number of seconds from 1 to 3,600",
        ),
        ("service", "session_lease_seconds = 1e9", "to 3,600, not 1000000000.0"),
        ("vss", "freeze_seconds = 86401", "vss.freeze_seconds must be a number of seconds from 1 to 86,400, not 86401"),
        (
            "backup",
            'max_rate = "fast"',
            "backup.max_rate must be a rate in MB/s from 0 to 100,000, or auto, not 'fast'",
        ),
        ("vss", 'hook = [{name = "filter", pre_freeze = "true", timeout = 1e30}]', "timeout of [[vss.hook]] 'filter'"),
    ],
)
def test_a_numeric_setting_out_of_range_in_the_file_is_refused_at_load(
    home_path: str, table: str, line: str, named: str
) -> None:
    path = edit_config(
        home_path, "[backup]\n", f"[{table}]\n{line}\n\n[backup]\n" if table != "backup" else f"[backup]\n{line}\n"
    )
    with pytest.raises(InvalidParameterError) as info:
        cfg.load(OsFileSystem(), home_path)
    assert info.value.message.startswith(f"{path}: ")
    assert named in info.value.message
    assert path in info.value.hint


def test_a_setting_in_range_loads_and_the_hint_says_which_line_to_change(home_path: str) -> None:
    edit_config(home_path, "[backup]\n", '[backup]\nlease_seconds = 900\nmax_rate = "auto"\n')
    assert cfg.load(OsFileSystem(), home_path).settings["backup"]["lease_seconds"] == 900
    path = edit_config(home_path, "lease_seconds = 900", "lease_seconds = 0")
    with pytest.raises(InvalidParameterError) as info:
        cfg.load(OsFileSystem(), home_path)
    assert info.value.hint == (
        f"change lease_seconds in the [backup] table of {path} to a value in that range, for example 600 (the "
        "default), or delete the line"
    )


def test_a_settings_section_that_is_not_a_table_is_refused_at_load(home_path: str) -> None:
    edit_config(home_path, "[backup]\n", "engine = 5\n\n[backup]\n")
    with pytest.raises(InvalidParameterError, match=r"engine must be a table \(\[engine\]\), not 5"):
        cfg.load(OsFileSystem(), home_path)


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("log_file_size = 1048576", "log_file_size = 99999999999999", "log file size 99999999999999 must be"),
        ("log_file_size = 1048576", "log_file_size = -4096", "log file size -4096 must be"),
        ("page_size = 8192", "page_size = 12345", "page size 12345 must be one of"),
        ("dbid = 2 }", "dbid = 300 }", "dbid 300 of store 'Public Folder Store' is not from 1 to 255"),
        ("dbid = 1 }", "dbid = 0 }", "dbid 0 of store 'Mailbox Store' is not from 1 to 255"),
        ("circular_logging = false", 'circular_logging = "false"', "circular_logging of storage group"),
    ],
)
def test_a_storage_group_number_the_engine_cannot_use_is_refused_at_load(
    home_path: str, old: str, new: str, named: str
) -> None:
    path = edit_config(home_path, old, new)
    with pytest.raises(InvalidParameterError) as info:
        cfg.load(OsFileSystem(), home_path)
    assert info.value.message.startswith(f"{path}: ")
    assert named in info.value.message
    assert f"'{DEFAULT_SG}'" in info.value.message
