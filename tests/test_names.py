"""What a storage group's, a store's or a store file's name may be, and the names the home keeps (names.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowstore import config as cfg
from shadowstore import names
from shadowstore.errors import InvalidParameterError
from shadowstore.home import ServerHome

UNPRINTABLE = "holds a character that cannot be printed (a line break, a tab or another control character)"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("   ", "is only blanks"),
        ("new\nline", UNPRINTABLE),
        ("tab\there", UNPRINTABLE),
        ("nul\0", UNPRINTABLE),
        ("a/b", "holds a '/'"),
        (" edge", "starts or ends with a blank"),
        (".", "is a folder's name for itself or its parent"),
        ("..", "is a folder's name for itself or its parent"),
        ("x" * 65, "is 65 characters long (at most 64)"),
    ],
)
def test_a_bad_name_is_refused_saying_what_is_wrong(name: str, problem: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        names.validate_name(name, "store")
    assert info.value.message == f"store name {name!r} {problem}"
    assert "printable characters" in info.value.hint
    assert "\n" not in info.value.message


def test_the_home_entries_name_every_folder_and_file_the_home_keeps() -> None:
    # why: the names live in the modules that use them; a new one must be reserved too
    from shadowstore import home, quarantine
    from shadowstore.service import homefiles, server
    from shadowstore.tools import doctorplan, movejournal

    used = {
        cfg.CONFIG_NAME,
        cfg.PREVIOUS_NAME,
        home.EVENTS_DIR,
        quarantine.QUARANTINE,
        quarantine.PLACES,
        movejournal.MOVES_FOLDER,
        doctorplan.DOCTOR_FOLDER,
        homefiles.LOCK_NAME,
        homefiles.INFO_NAME,
        server.SOCKET_NAME,
        "reports",
        "backups",
        "home-id.lock",
    }
    assert used <= set(names.HOME_ENTRIES)


def test_the_library_refuses_what_the_command_line_refuses(tmp_path: Path) -> None:
    # why: the service and scripts create storage groups and stores through ServerHome, not through the CLI
    home = ServerHome.init(str(tmp_path / "home"))
    with pytest.raises(InvalidParameterError, match="is the name of the event log's folder"):
        home.create_storage_group("events")
    with pytest.raises(InvalidParameterError, match="log_dir 'reports/sg2' is the folder of backup reports"):
        home.create_storage_group("Second Storage Group", log_dir="reports/sg2")
    with pytest.raises(InvalidParameterError, match="is the name of ESE's temporary database"):
        home.create_store("First Storage Group", "Archive", "tmp.edb")
    assert [g.name for g in home.config.storage_groups] == ["First Storage Group"]


def test_the_recovery_storage_groups_name_is_kept_for_restores(tmp_path: Path) -> None:
    # why: a restore into the recovery group took such a group over and its own store left the configuration
    home = ServerHome.init(str(tmp_path / "home"))
    for name in ("Recovery Storage Group", "recovery storage group"):
        with pytest.raises(InvalidParameterError, match="the name restores into the recovery storage group use"):
            home.create_storage_group(name)
    assert [g.name for g in home.config.storage_groups] == ["First Storage Group"]
