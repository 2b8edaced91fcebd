"""``shadowstore init`` and ``shadowstore status``."""

from __future__ import annotations

import json
import os

import pytest

from tests.cli.clirun import run, run_json


def test_init_creates_the_default_storage_group(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> None:
    home = os.path.join(tmp_path, "home")
    code, out, _ = run(capsys, "--home", home, "init", "--log-file-size", "128K", "--page-size", "4096")
    assert code == 0
    assert "First Storage Group (E00): Mailbox Store (priv1.edb), Public Folder Store (pub1.edb)" in out
    sg_dir = os.path.join(home, "First Storage Group")
    assert sorted(os.listdir(sg_dir)) == ["E00.chk", "E00.log", "priv1.edb", "pub1.edb", "res1.log", "res2.log"]
    assert os.path.getsize(os.path.join(sg_dir, "E00.log")) == 128 * 1024
    code, data = run_json(capsys, "--home", home, "status", "--json")
    assert code == 0
    [sg] = data["storage_groups"]
    assert sg["name"] == "First Storage Group"
    assert sg["log_base"] == "E00"
    assert sg["current_generation"] == 1
    assert [s["state"] for s in sg["stores"]] == ["Clean Shutdown", "Clean Shutdown"]
    assert all(s["log_required"] == [0, 0] for s in sg["stores"])


def test_init_twice_is_refused(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> None:
    home = os.path.join(tmp_path, "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    code, _out, err = run(capsys, "--home", home, "init")
    assert code == 3
    assert "already a server home" in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--log-file-size", "10K", "log file size 10240 must be"),
        ("--log-file-size", "64M", "must be a multiple of 4 KiB from 64 KiB to 32 MiB"),
        ("--page-size", "5000", "page size 5000 must be one of"),
        ("--log-file-size", "lots", "is not a size"),
    ],
)
def test_init_refuses_bad_sizes(
    tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    home = os.path.join(tmp_path, "home")
    code, _out, err = run(capsys, "--home", home, "init", option, value)
    assert code == 3
    assert message in err
    assert not os.path.exists(os.path.join(home, "shadowstore.toml"))


def test_status_of_a_directory_that_is_not_a_home(
    tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "--home", os.fspath(tmp_path), "status")
    assert code == 4
    assert "is not a ShadowStore server home" in err
    assert f"hint: create one with 'shadowstore --home {os.fspath(tmp_path)} init'" in err


def test_status_json_error_goes_to_stdout(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "--home", os.fspath(tmp_path), "status", "--json")
    assert code == 4
    assert data["error"] == "NotFoundError"
    assert data["hint"].startswith("create one with")


def test_home_defaults_to_the_environment(
    tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = os.path.join(tmp_path, "from-env")
    monkeypatch.setenv("SHADOWSTORE_HOME", home)
    assert run(capsys, "init")[0] == 0
    assert os.path.exists(os.path.join(home, "shadowstore.toml"))


@pytest.mark.parametrize("args", [["--home", "", "init"], ["init", "--home", ""], ["--home", "", "status", "--json"]])
def test_an_empty_home_is_refused_not_taken_for_the_default(
    tmp_path: os.PathLike[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
) -> None:
    default = os.path.join(tmp_path, "data")
    monkeypatch.setenv("XDG_DATA_HOME", default)  # where the default home would be
    monkeypatch.delenv("SHADOWSTORE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *args)
    assert code == 3
    message = "--home is empty: it names no server home"
    hint = "name the server home's folder (--home /srv/shadowstore), or leave --home out for the default"
    if "--json" in args:
        assert (json.loads(out)["message"], json.loads(out)["hint"]) == (message, hint)
    else:
        assert err.splitlines() == [f"error: [-1003 JET_errInvalidParameter] {message}", f"hint: {hint}"]
    assert os.listdir(tmp_path) == []  # neither the default home nor one in the current folder


def test_an_empty_shadowstore_home_is_refused(
    tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", os.path.join(tmp_path, "data"))
    monkeypatch.setenv("SHADOWSTORE_HOME", "")
    monkeypatch.chdir(tmp_path)
    for command in ("init", "status"):
        code, _out, err = run(capsys, command)
        assert code == 3
        assert err.splitlines() == [
            "error: [-1003 JET_errInvalidParameter] $SHADOWSTORE_HOME is set but empty: it names no server home",
            "hint: set SHADOWSTORE_HOME to the server home's folder, or unset it for the default, or pass --home DIR",
        ]
    assert os.listdir(tmp_path) == []
    home = os.path.join(tmp_path, "named")
    assert run(capsys, "init", "--home", home)[0] == 0  # --home after the command still names one
    assert run(capsys, "--home", home, "status")[0] == 0
