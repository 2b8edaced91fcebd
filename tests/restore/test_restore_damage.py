"""Restoring around damage: one flipped byte in the newest full backup does not block a restore to the latest
state. The restore leaves the damaged file out and plans again: the older full, then the logs of the newer
sets of the same stream. ``--skip-set``, ``--set`` and ``restore plan --verify`` let an administrator choose
and look first. With a local target and an S3 one (moto)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from shadowstore.backup.target import open_target
from shadowstore.home import ServerHome
from tests.cli.clirun import run, run_json

SG = "First Storage Group"
RSG = "Recovery Storage Group"


@pytest.fixture(params=["local", "s3"])
def history(request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Full F1 (seed 1), full F2 (seed 2 after it), incremental I (seed 3 after it)."""
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init", "--log-file-size", "64K")[0] == 0
    url = str(tmp_path / "target")
    if request.param == "s3":
        server: Any = request.getfixturevalue("s3_server")
        url = f"s3://{server.bucket}/d-{uuid.uuid4().hex}"
    assert run(capsys, "--home", home, "config", "set", "backup.target", url)[0] == 0
    ids = {}
    for seed, kind, label in ((1, "full", "F1"), (2, "full", "F2"), (3, "incremental", "I")):
        code, _out, err = run(capsys, "--home", home, "workload", "run", "--txns", "80", "--seed", str(seed))
        assert code == 0, err
        code, data = run_json(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", kind, "--json")
        assert code == 0, data
        ids[label] = data["backups"][0]["id"]
    return {"home": home, "url": url, "ids": ids, "home_id": ServerHome.open(home).home_id}


def flip_a_byte(h: dict[str, Any], label: str, name: str) -> None:
    """Damage one byte in the middle of a stored file; its size stays what the manifest records."""
    target = open_target(h["url"])
    path = f"{h['home_id']}/{SG}/{h['ids'][label]}/{name}"
    data = bytearray(target.read_bytes(path))
    data[len(data) // 2] ^= 0x40
    target.write_file(path, [bytes(data)])


def restored_everything(capsys: pytest.CaptureFixture[str], home: str) -> None:
    for seed in (1, 2, 3):
        args = ("--home", home, "workload", "check", "--sg", RSG, "--seed", str(seed), "--committed", "80")
        code, out, err = run(capsys, *args)
        assert code == 0, out + err


def test_a_damaged_newest_full_is_restored_around(history: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    flip_a_byte(history, "F2", "priv1.edb")
    home, ids = history["home"], history["ids"]
    code, out, err = run(capsys, "--home", home, "restore", "run", "--sg", SG, "--into-recovery-group")
    assert code == 0, out + err
    assert f"{ids['F2']}" in err
    assert "does not match the SHA-256 in its manifest" in err
    assert "planning the restore again without it" in err
    restored_everything(capsys, home)


def test_plan_verify_reads_the_files_and_names_what_it_left_out(
    history: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    flip_a_byte(history, "F2", "priv1.edb")
    home, ids = history["home"], history["ids"]
    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--sg", SG, "--json")
    assert code == 0
    assert plan["sets"][0]["id"] == ids["F2"], "without reading, the damage cannot be seen"
    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--sg", SG, "--verify", "--json")
    assert code == 0, plan
    assert plan["sets"][0]["id"] == ids["F1"]
    assert {s["id"] for s in plan["sets"]} >= {ids["F1"], ids["I"]}
    assert plan["verified"] is True
    assert any(f"priv1.edb of backup set {ids['F2']} does not match" in why for why in plan["ignored"])
    code, out, _err = run(capsys, "--home", home, "restore", "plan", "--sg", SG, "--verify")
    assert "each matches the SHA-256 its manifest records" in out


def test_skip_set_and_set_choose_what_to_restore_from(
    history: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    home, ids = history["home"], history["ids"]
    skip = ("--home", home, "restore", "plan", "--sg", SG, "--skip-set", ids["F2"])
    code, _out, err = run(capsys, *skip)
    assert code != 0, "a skipped set's logs are left out too: the chain to the incremental is broken"
    assert "--until-gen 1" in err
    code, plan = run_json(capsys, *skip, "--until-gen", "1", "--json")
    assert code == 0, plan
    assert plan["sets"][0]["id"] == ids["F1"]
    assert f"backup set {ids['F2']} was skipped (--skip-set)" in plan["ignored"]
    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--sg", SG, "--set", ids["F1"], "--json")
    assert code == 0, plan
    assert plan["sets"][0]["id"] == ids["F1"]
    latest = run_json(capsys, "--home", home, "restore", "plan", "--sg", SG, "--json")[1]
    assert plan["last_gen"] == latest["last_gen"], "from the older full, the newer sets' logs take it as far"
    code, _out, err = run(capsys, "--home", home, "restore", "plan", "--sg", SG, "--set", ids["I"])
    assert code != 0
    assert "not a whole, undamaged full or copy backup" in err
    code, _out, err = run(capsys, "--home", home, "restore", "plan", "--sg", SG, "--skip-set", "nope")
    assert code != 0
    assert "--skip-set nope: no such backup set" in err
    args = ("--home", home, "restore", "run", "--sg", SG, "--into-recovery-group", "--set", ids["F1"])
    code, _out, err = run(capsys, *args)
    assert code == 0, err
    restored_everything(capsys, home)


def test_a_newest_full_that_lost_a_file_is_planned_around_without_reading(
    history: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    target = open_target(history["url"])
    target.delete(f"{history['home_id']}/{SG}/{history['ids']['F2']}/priv1.edb")
    home = history["home"]
    code, plan = run_json(capsys, "--home", home, "restore", "plan", "--sg", SG, "--json")
    assert code == 0, plan
    assert plan["sets"][0]["id"] == history["ids"]["F1"]
    assert any("priv1.edb is missing" in why for why in plan["ignored"])
    code, _out, err = run(capsys, "--home", home, "restore", "run", "--sg", SG, "--into-recovery-group")
    assert code == 0, err
    restored_everything(capsys, home)
