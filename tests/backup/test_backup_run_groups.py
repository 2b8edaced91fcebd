"""``backup run`` over several storage groups: one that fails stops no other, and every failure is named, on
stderr and in the one JSON document on stdout; and the refusals a group can meet before anything is copied."""

from __future__ import annotations

import json
import os

import pytest

from shadowstore.home import ServerHome
from tests.cli.clirun import run, run_json

FIRST, SECOND, EMPTY = "First Storage Group", "Second Storage Group", "Empty Storage Group"


@pytest.fixture
def home(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> str:
    """First Storage Group with a full backup in <home>/backups; Second with a store but no full backup
    anywhere; Empty with no store at all."""
    path = os.path.join(tmp_path, "home")
    for args in (
        ("init", "--log-file-size", "64K"),
        ("sg", "create", SECOND),
        ("store", "create", SECOND, "Mailbox Store"),
        ("sg", "create", EMPTY),
        ("workload", "run", "--txns", "60", "--seed", "1"),
        ("workload", "run", "--sg", SECOND, "--txns", "60", "--seed", "2"),
        ("backup", "run", "--sg", FIRST, "--kind", "full", "--quiet"),
        ("workload", "run", "--txns", "60", "--seed", "3"),
    ):
        code, out, err = run(capsys, "--home", path, *args)
        assert code == 0, (args, out, err)
    return path


def test_all_goes_on_past_failing_groups_and_names_each_one(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--home", home, "backup", "run", "--all", "--kind", "incremental")
    assert code == 20, err  # the first failure's exit code: -560's
    assert out.startswith(f"{FIRST}: incremental backup "), out  # the group that could be backed up was
    assert f"error: {SECOND}: [-560 JET_errMissingFullBackup]" in err
    assert f"error: {EMPTY}: [-1003 JET_errInvalidParameter] storage group {EMPTY!r} has no stores" in err
    assert f"hint: create one with: shadowstore store create '{EMPTY}' NAME" in err
    code, sets = run_json(capsys, "--home", home, "backup", "list", "--json")
    assert [(s["sg"], s["kind"]) for s in sets] == [(FIRST, "full"), (FIRST, "incremental")]


def test_all_with_json_prints_one_document_naming_the_failures(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "--home", home, "backup", "run", "--all", "--kind", "incremental", "--json")
    document = json.loads(out)  # one document: a second one would make this raise
    assert code == 20
    assert [b["sg"] for b in document["backups"]] == [FIRST]
    failed = {f["sg"]: f for f in document["failed"]}
    assert sorted(failed) == [EMPTY, SECOND]
    assert failed[SECOND]["code"] == -560
    assert failed[EMPTY]["code"] == -1003
    assert "has no stores" in failed[EMPTY]["message"]
    code, out, _err = run(capsys, "--home", home, "backup", "run", "--sg", FIRST, "--kind", "incremental", "--json")
    assert code == 0
    assert json.loads(out)["failed"] == []


def test_one_failing_group_is_reported_as_before(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--home", home, "backup", "run", "--sg", EMPTY, "--kind", "full")
    assert code == 3  # usage: -1003
    assert err.startswith(f"error: [-1003 JET_errInvalidParameter] storage group {EMPTY!r} has no stores"), err
    assert "report: " in out


def test_an_incremental_into_a_target_without_its_chain_is_refused_with_560(
    home: str, capsys: pytest.CaptureFixture[str], tmp_path: os.PathLike[str]
) -> None:
    """The store headers remember the full backup in <home>/backups; another target holds none of the chain."""
    other = os.path.join(tmp_path, "other")
    args = ("backup", "run", "--sg", FIRST, "--kind", "incremental", "--to", other)
    code, _out, err = run(capsys, "--home", home, *args)
    assert code == 20, err
    assert "[-560 JET_errMissingFullBackup]" in err
    home_id = ServerHome.open(home).home_id
    assert (
        f"{other} cannot continue that chain: it holds no whole full backup of this storage group's log stream "
        f"from home {home_id}"
    ) in err
    assert f"hint: take a full backup into {other} first" in err
    code, events = run_json(capsys, "--home", home, "events", "--id", "214", "--json")
    assert "-560 (JET_errMissingFullBackup)" in events[-1]["description"]


def test_workload_on_a_group_without_stores_says_how_to_make_one(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--home", home, "workload", "run", "--sg", EMPTY, "--txns", "1", "--seed", "1")
    assert code != 0
    assert f"storage group {EMPTY!r} has no stores yet, so it has no store 'Mailbox Store'" in err
    assert f"hint: create one with: shadowstore store create '{EMPTY}' 'Mailbox Store'" in err
