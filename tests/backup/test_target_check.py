"""A backup target that does not exist or is not a folder is an error with its own exit code (issue 12, deliver
5) for every command that reads one, not "no backup sets" with exit code 0: per backend (check_readable), and
end to end through the command line."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shadowstore.backup.fsspectarget import FsspecTarget
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.targetcheck import check_readable
from shadowstore.errors import BackupTargetError, ExitCode, TargetNotFoundError
from tests.cli.clirun import run, run_json
from tests.s3server import S3Server

SG = "First Storage Group"


# --- per backend ------------------------------------------------------------------------------------------------


def test_a_local_folder_that_exists_is_readable_even_empty(tmp_path: Path) -> None:
    check_readable(LocalTarget(str(tmp_path)))


def test_a_local_folder_that_does_not_exist_is_named_with_the_nearest_that_does(tmp_path: Path) -> None:
    with pytest.raises(TargetNotFoundError) as raised:
        check_readable(LocalTarget(str(tmp_path / "a" / "b")), where="--to")
    assert (
        raised.value.message
        == f"backup target {tmp_path}/a/b does not exist (the nearest folder that does is {tmp_path})"
    )
    assert raised.value.hint.startswith("check the backup target named by --to: no backup was ever written there")
    assert raised.value.exit_code == ExitCode.TARGET_NOT_FOUND == 24


def test_a_file_is_not_a_target(tmp_path: Path) -> None:
    file = tmp_path / "sets.tar"
    file.write_bytes(b"x")
    with pytest.raises(TargetNotFoundError, match="is a file, not a folder of backup sets"):
        check_readable(LocalTarget(str(file)))
    with pytest.raises(TargetNotFoundError, match="a part of its path is a file"):
        check_readable(LocalTarget(str(file / "inside")))


def test_an_s3_target_needs_its_bucket_not_its_prefix(s3_server: S3Server) -> None:
    check_readable(FsspecTarget(f"s3://{s3_server.bucket}/never-written-{uuid.uuid4().hex}"))
    missing = f"no-such-bucket-{uuid.uuid4().hex[:12]}"
    with pytest.raises(TargetNotFoundError, match=f"bucket '{missing}' does not exist"):
        check_readable(FsspecTarget(f"s3://{missing}/prefix"), where="--from")


def test_an_s3_endpoint_that_does_not_answer_is_a_target_error_not_a_missing_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHADOWSTORE_S3_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    target = FsspecTarget(f"s3://bucket-{uuid.uuid4().hex[:12]}/prefix", config_kwargs={"connect_timeout": 1})
    with pytest.raises(BackupTargetError, match="cannot find out whether bucket") as raised:
        check_readable(target)
    assert not isinstance(raised.value, TargetNotFoundError)


def test_a_memory_target_always_exists() -> None:
    check_readable(FsspecTarget(f"memory://never-{uuid.uuid4().hex}"))


# --- through the command line -------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "home")
    assert run(capsys, "--home", path, "init", "--log-file-size", "64K")[0] == 0
    return path


READING = [
    ("backup", "list"),
    ("backup", "show", "20261125T084500.000000Z-full-3f2a9c"),
    ("backup", "verify", "20261125T084500.000000Z-full-3f2a9c"),
    ("backup", "prune", "--keep-full", "1"),
]


@pytest.mark.parametrize("command", READING, ids=[" ".join(c[:2]) for c in READING])
@pytest.mark.parametrize("kind", ["missing", "file"])
def test_reading_commands_refuse_a_target_that_is_not_a_folder(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...], kind: str
) -> None:
    target = tmp_path / "does" / "not" / "exist"
    if kind == "file":
        target = tmp_path / "a-file"
        target.write_text("not a target")
    code, out, err = run(capsys, "--home", home, *command, "--to", str(target))
    assert code == ExitCode.TARGET_NOT_FOUND, out + err
    assert f"error: backup target {target} " in err
    assert "hint: check the backup target named by --to" in err
    assert "no backup sets" not in out
    code, data = run_json(capsys, "--home", home, *command, "--to", str(target), "--json")
    assert code == ExitCode.TARGET_NOT_FOUND
    assert data["error"] == "TargetNotFoundError"
    assert data["target"] == str(target)


def test_a_configured_target_outside_the_home_that_is_gone_is_an_error(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mounted = tmp_path / "backup-disk"
    mounted.mkdir()
    assert run(capsys, "--home", home, "config", "set", "backup.target", str(mounted))[0] == 0
    code, out, _err = run(capsys, "--home", home, "backup", "list")
    assert (code, out) == (0, f"no backup sets in {mounted}\n")
    mounted.rmdir()  # the disk is not mounted today
    code, _out, err = run(capsys, "--home", home, "backup", "list")
    assert code == ExitCode.TARGET_NOT_FOUND
    assert "named by backup.target in shadowstore.toml" in err


def test_the_homes_own_target_reads_as_empty_before_the_first_backup(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run(capsys, "--home", home, "backup", "list")
    assert (code, out) == (0, f"no backup sets in {home}/backups\n")


def test_backup_run_still_creates_a_new_target_folder(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new-target"
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--to", str(target))
    assert code == 0, err
    code, sets = run_json(capsys, "--home", home, "backup", "list", "--to", str(target), "--json")
    assert code == 0
    assert [s["kind"] for s in sets] == ["full"]


def test_listing_an_s3_target_whose_bucket_does_not_exist(
    home: str, s3_server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://no-such-bucket-{uuid.uuid4().hex[:12]}/backups"
    code, _out, err = run(capsys, "--home", home, "backup", "list", "--to", url)
    assert code == ExitCode.TARGET_NOT_FOUND
    assert "does not exist (or these credentials cannot see it)" in err
    code, _out, err = run(capsys, "--home", home, "backup", "list", "--to", f"s3://{s3_server.bucket}/new")
    assert code == 0, err
