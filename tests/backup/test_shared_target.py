"""One backup target shared by two server homes whose storage groups have the same name, as when every
server's ``backup.target`` names one bucket: prune, the incremental chain, listing and restore keep each
home's sets to that home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shadowstore.backup import catalog
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.errors import RestoreError
from shadowstore.home import ServerHome
from shadowstore.restore.plan import RestoreTarget, plan_restore
from shadowstore.restore.run import INTO_PLACE, run_restore
from tests.cli.clirun import run, run_json

SG = "First Storage Group"


def make_home(capsys: pytest.CaptureFixture[str], path: Path, seed: int, target: Path) -> str:
    home = str(path)
    assert run(capsys, "--home", home, "init", "--log-file-size", "64K")[0] == 0
    assert run(capsys, "--home", home, "config", "set", "backup.target", str(target))[0] == 0
    commit(capsys, home, seed, 60)
    return home


def commit(capsys: pytest.CaptureFixture[str], home: str, seed: int, txns: int) -> None:
    code, _out, err = run(capsys, "--home", home, "workload", "run", "--txns", str(txns), "--seed", str(seed))
    assert code == 0, err


def backup(capsys: pytest.CaptureFixture[str], home: str, kind: str) -> dict[str, object]:
    code, data = run_json(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", kind, "--json")
    assert code == 0, data
    result: dict[str, object] = data["backups"][0]
    return result


def home_id(home: str) -> str:
    return ServerHome.open(home).home_id


@pytest.fixture
def two_homes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Path]:
    target = tmp_path / "shared"
    a = make_home(capsys, tmp_path / "a", 1, target)
    b = make_home(capsys, tmp_path / "b", 2, target)
    return a, b, target


def test_each_home_files_its_sets_under_its_own_id(
    two_homes: tuple[str, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, target = two_homes
    first = backup(capsys, a, "full")
    backup(capsys, b, "full")
    assert home_id(a) != home_id(b)
    assert (target / home_id(a) / SG / str(first["id"]) / "manifest.json").is_file()
    code, listed = run_json(capsys, "--home", a, "backup", "list", "--json")
    assert code == 0
    assert sorted(s["home"] for s in listed) == sorted([home_id(a), home_id(b)])
    assert all(s["state"] == "complete" and s["stream"] for s in listed)
    code, out, _err = run(capsys, "--home", a, "backup", "list")
    assert code == 0
    assert f"{home_id(a)} (this home)" in out
    assert home_id(b) in out


def test_prune_keeps_each_homes_newest_full(
    two_homes: tuple[str, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, target = two_homes
    only_a = backup(capsys, a, "full")
    backup(capsys, b, "full")  # newer, and of a storage group with the same name
    code, out, err = run(capsys, "--home", a, "backup", "prune", "--to", str(target), "--keep-full", "1", "--yes")
    assert code == 0, err
    sets = catalog.list_sets(LocalTarget(str(target)), home=home_id(a))
    assert [s.backup_id for s in sets] == [only_a["id"]], out


def test_an_incremental_builds_on_its_own_homes_full(
    two_homes: tuple[str, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, _target = two_homes
    full_a = backup(capsys, a, "full")
    backup(capsys, b, "full")  # the same generations as a's full: both homes did the same amount of work
    commit(capsys, a, 1, 30)
    incremental = backup(capsys, a, "incremental")
    code, shown = run_json(capsys, "--home", a, "backup", "show", str(incremental["id"]), "--json")
    assert code == 0
    assert shown["manifest"]["based_on"] == full_a["id"]
    assert shown["manifest"]["home_id"] == home_id(a)


def test_an_in_place_restore_installs_this_homes_data_only(
    two_homes: tuple[str, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, _target = two_homes
    backup(capsys, a, "full")
    backup(capsys, b, "full")  # newer
    code, out, err = run(capsys, "--home", a, "restore", "run", "--sg", SG, "--in-place", "--yes")
    assert code == 0, err
    code, out, err = run(capsys, "--home", a, "workload", "check", "--seed", "1", "--committed", "60")
    assert code == 0, out + err


def test_another_homes_backup_restores_into_the_recovery_group_only_when_named(
    two_homes: tuple[str, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, _target = two_homes
    backup(capsys, b, "full")
    code, _out, err = run(capsys, "--home", a, "restore", "plan", "--sg", SG)
    assert code != 0
    assert f"--from-home {home_id(b)}" in err
    code, _out, err = run(
        capsys, "--home", a, "restore", "run", "--sg", SG, "--from-home", home_id(b), "--into-recovery-group"
    )
    assert code == 0, err
    assert f"restoring backups of home {home_id(b)}" in err
    code, out, err = run(
        capsys, "--home", a, "workload", "check", "--sg", "Recovery Storage Group", "--seed", "2", "--committed", "60"
    )
    assert code == 0, out + err


def test_a_home_made_before_home_ids_gets_one_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "old")
    assert run(capsys, "--home", home, "init")[0] == 0
    config = Path(home, "shadowstore.toml")
    config.write_text("\n".join(line for line in config.read_text().splitlines() if not line.startswith("home_id")))
    given = home_id(home)
    assert given == home_id(home)
    assert f'home_id = "{given}"' in config.read_text()
    assert os.path.basename(home) not in given


def test_an_in_place_restore_of_another_homes_backup_needs_that_home_named(
    two_homes: tuple[str, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, target = two_homes
    backup(capsys, b, "full")
    other = ServerHome.open(a)
    sets = catalog.list_sets(LocalTarget(str(target)), home=home_id(b))
    plan = plan_restore(sets, RestoreTarget.latest(), sg=SG)
    with pytest.raises(RestoreError, match=f"restores backups of home {home_id(b)}"):
        run_restore(other, LocalTarget(str(target)), plan, into=INTO_PLACE)
    other.close()
    args = ("--home", a, "restore", "run", "--sg", SG, "--from-home", home_id(b), "--in-place", "--yes")
    code, _out, err = run(capsys, *args)
    assert code != 0, "this home's own data would be discarded: a stop option is needed"
    assert "of a log stream that is not the backups'" in err
    code, _out, err = run(capsys, *args, "--stop-at-backup")
    assert code == 0, err
    assert "its data replaces this home's stores" in err
    code, out, err = run(capsys, "--home", a, "workload", "check", "--seed", "2", "--committed", "60")
    assert code == 0, out + err
