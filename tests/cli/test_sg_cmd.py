"""``shadowstore sg create`` and ``shadowstore store create|tables|read``."""

from __future__ import annotations

import os

import pytest

from shadowstore.home import ServerHome
from tests.cli.clirun import run, run_json


@pytest.fixture
def home_dir(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> str:
    path = os.path.join(tmp_path, "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "64K")[0] == 0
    return path


def test_second_storage_group_gets_the_next_log_base(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    logs = os.path.join(os.path.dirname(home_dir), "elsewhere-logs")
    code, data = run_json(
        capsys, "--home", home_dir, "sg", "create", "Second Storage Group", "--log-dir", logs, "--json"
    )
    assert code == 0
    assert data["log_base"] == "E01"
    assert os.path.exists(os.path.join(logs, "E01.log"))
    code, status = run_json(capsys, "--home", home_dir, "status", "--json")
    assert [g["log_base"] for g in status["storage_groups"]] == ["E00", "E01"]


def test_duplicate_storage_group_and_shared_log_folder_are_refused(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "--home", home_dir, "sg", "create", "First Storage Group")
    assert code == 3
    assert "already exists" in err
    code, _out, err = run(capsys, "--home", home_dir, "sg", "create", "Other", "--log-dir", "First Storage Group")
    assert code == 3
    assert "already used by 'First Storage Group'" in err


def test_store_create_adds_a_mountable_store(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(
        capsys, "--home", home_dir, "store", "create", "First Storage Group", "Journal Store", "--json"
    )
    assert code == 0
    assert data == {"sg": "First Storage Group", "name": "Journal Store", "file": "journal_store.edb", "dbid": 3}
    home = ServerHome.open(home_dir)
    sg = home.storage_group()
    sg.mount()
    with sg.store("Journal Store").transaction() as tx:
        tx.create_table("j")
    sg.dismount()


def test_store_create_refuses_while_another_process_has_it_mounted(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ServerHome.open(home_dir)
    home.storage_group().mount()
    try:
        code, _out, err = run(capsys, "--home", home_dir, "store", "create", "First Storage Group", "Late")
    finally:
        home.storage_group().dismount()
    assert code == 5
    assert "is locked by" in err
    with open(os.path.join(home_dir, "shadowstore.toml")) as config:
        assert "Late" not in config.read()


def test_store_in_unknown_storage_group(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--home", home_dir, "store", "create", "Nope", "X")
    assert code == 4
    assert "there is no storage group 'Nope'" in err


def test_store_tables_and_read(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> None:
    home = os.path.join(tmp_path, "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    h = ServerHome.open(home)
    sg = h.storage_group()
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.create_table("inbox")
        tx.put("inbox", b"m1", b"hello")
        tx.put("inbox", b"m2", b"\x00\xff")
        tx.put("inbox", b"x3", b"")
    sg.dismount()
    code, tables = run_json(capsys, "--home", home, "store", "tables", "First Storage Group", "priv1.edb", "--json")
    assert (code, tables) == (0, [{"table": "inbox", "rows": 3}])
    code, rows = run_json(
        capsys,
        "--home",
        home,
        "store",
        "read",
        "First Storage Group",
        "Mailbox Store",
        "inbox",
        "--prefix",
        "m",
        "--json",
    )
    assert code == 0
    assert [(r["key"], r["value"], r["value_hex"]) for r in rows] == [
        ("m1", "hello", "68656c6c6f"),
        ("m2", None, "00ff"),
    ]
    code, out, _err = run(
        capsys, "--home", home, "store", "read", "First Storage Group", "Mailbox Store", "inbox", "--limit", "2"
    )
    assert code == 0
    assert out.splitlines() == ["m1\t5 bytes\thello", "m2\t2 bytes\t0x00ff"]
    code, _out, err = run(capsys, "--home", home, "store", "read", "First Storage Group", "Mailbox Store", "outbox")
    assert code != 0
    assert "has no table 'outbox' (tables: inbox)" in err


def test_store_set_mount_saves_mount_at_start_for_the_service(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--home", home_dir, "store", "set-mount", "First Storage Group", "Public Folder Store")
    code, out, err = run(capsys, *args, "--at-start", "no")
    assert code == 0, err
    assert out == "The service leaves dismounted store 'Public Folder Store' of 'First Storage Group' when it starts.\n"
    stores = ServerHome.open(home_dir).config.find("First Storage Group").stores
    assert [(s.name, s.mount_at_start) for s in stores] == [("Mailbox Store", True), ("Public Folder Store", False)]
    code, data = run_json(capsys, *args, "--at-start", "yes", "--json")
    assert (code, data) == (0, {"sg": "First Storage Group", "store": "Public Folder Store", "mount_at_start": True})
    with open(os.path.join(home_dir, "shadowstore.toml")) as f:
        assert "mount_at_start" not in f.read()
    code, _out, err = run(
        capsys, "--home", home_dir, "store", "set-mount", "First Storage Group", "Nonesuch", "--at-start", "no"
    )
    assert code == 4
    assert "has no store 'Nonesuch'" in err


def home_listing(home: str) -> tuple[list[str], bytes]:
    """What the home's top folder holds and its configuration: a refused command changes neither."""
    with open(os.path.join(home, "shadowstore.toml"), "rb") as f:
        return sorted(os.listdir(home)), f.read()


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("events", "the event log's folder"),
        ("reports", "the folder of backup reports and crash reports"),
        ("backups", "the folder of the default backup target"),
        ("moves", "the folder of 'sg move' journals"),
        ("quarantine-places.json", "the list of quarantine folders left behind"),
        ("service.sock", "the Information Store service's socket"),
        ("shadowstore.toml", "the configuration file"),
        ("Events", "the event log's folder"),  # the same folder on a file system that ignores case
    ],
)
def test_a_storage_group_may_not_take_the_name_of_the_homes_own_folders_and_files(
    home_dir: str, capsys: pytest.CaptureFixture[str], name: str, taken: str
) -> None:
    before = home_listing(home_dir)
    code, _out, err = run(capsys, "--home", home_dir, "sg", "create", name)
    assert code == 3
    assert f"storage group name {name!r} is the name of {taken} in the server home" in err
    assert "hint: choose another name; the home keeps these for itself: shadowstore.toml, " in err
    assert home_listing(home_dir) == before
    assert not os.path.exists(os.path.join(home_dir, "events", "E01.log"))


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("new\nline", "holds a character that cannot be printed"),
        ("bell\a", "holds a character that cannot be printed"),
        ("a/b", "holds a '/'"),
        ("", "is empty"),
        ("   ", "is only blanks"),
        (".", "is a folder's name for itself or its parent"),
        ("..", "is a folder's name for itself or its parent"),
        (".hidden", "starts with a dot"),
    ],
)
def test_a_storage_group_name_that_cannot_be_a_folder_or_a_line_is_refused(
    home_dir: str, capsys: pytest.CaptureFixture[str], name: str, problem: str
) -> None:
    before = home_listing(home_dir)
    code, _out, err = run(capsys, "--home", home_dir, "sg", "create", "--", name)
    assert code == 3
    error = err.splitlines()[0]
    assert error.startswith(f"error: [-1003 JET_errInvalidParameter] storage group name {name!r} {problem}")
    assert home_listing(home_dir) == before


def test_a_storage_group_may_not_take_the_name_of_a_backup_target_in_the_home(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--home", home_dir, "config", "set", "backup.target", "vault/nightly")[0] == 0
    code, _out, err = run(capsys, "--home", home_dir, "sg", "create", "vault")
    assert code == 3
    assert "'vault' is the name of the folder of the backup target (backup.target)" in err
    assert run(capsys, "--home", home_dir, "sg", "create", "nightly")[0] == 0  # only the top folder is the target's


@pytest.mark.parametrize(
    "args",
    [
        ["sg", "create", "Second", "--log-dir", "events"],
        ["sg", "create", "Second", "--data-dir", "backups/stores"],
        ["sg", "move", "First Storage Group", "--to", "events"],
        ["sg", "move", "First Storage Group", "--system-dir", "./reports"],
    ],
)
def test_a_storage_groups_folder_may_not_be_one_of_the_homes_own(
    home_dir: str, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    before = home_listing(home_dir)
    code, _out, err = run(capsys, "--home", home_dir, *args)
    assert code == 3
    option, folder = args[-2:]
    assert f"{option} {folder!r} is the " in err
    assert "of the server home" in err
    assert "hint: choose a folder of the storage group's own" in err
    assert home_listing(home_dir) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tab\tname"], "store name 'tab\\tname' holds a character that cannot be printed"),
        (["Other", "--file", "new\nline.edb"], "store file name 'new\\nline.edb' must be a plain name ending in .edb"),
        (["Other", "--file", ".edb"], "store file name '.edb' must be a plain name ending in .edb"),
        (["Other", "--file", ".hidden.edb"], "store file name '.hidden.edb' must be a plain name ending in .edb"),
        (["Other", "--file", "tmp.edb"], "'tmp.edb' is the name of ESE's temporary database"),
    ],
)
def test_a_store_name_or_file_that_cannot_be_shown_or_stored_is_refused(
    home_dir: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    folder = os.path.join(home_dir, "First Storage Group")
    before = sorted(os.listdir(folder)), home_listing(home_dir)
    code, _out, err = run(capsys, "--home", home_dir, "store", "create", "First Storage Group", *args)
    assert code == 3
    assert message in err.splitlines()[0]
    assert (sorted(os.listdir(folder)), home_listing(home_dir)) == before
