"""An error that is not ShadowStore's own (a bug, or a library raising what it should not) still reaches the
backup report and the caller as one clear line, and leaves nothing that blocks the next backup."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.report import BackupReport
from shadowstore.backup.run import back_up
from shadowstore.backup.source import EngineSource
from shadowstore.backup.target import Buffer
from shadowstore.errors import AccessDeniedError, BackupTargetError, UnexpectedError
from shadowstore.home import ServerHome
from tests.cli.clirun import run, run_json
from tests.conftest import QUIET

SG = "First Storage Group"


class BrokenTarget(LocalTarget):
    def write_file(self, name: str, chunks: Iterable[Buffer], **options: object) -> int:
        if name.endswith("priv1.edb"):
            raise KeyError("a bug in some library")
        return super().write_file(name, chunks, **options)  # type: ignore[arg-type]


def test_a_foreign_exception_becomes_one_line_in_the_report(tmp_path: Path) -> None:
    home = ServerHome.init(str(tmp_path / "home"), policy=QUIET)
    report = BackupReport(home.fs, home.path)
    with pytest.raises(UnexpectedError, match=r"backing up 'First Storage Group' \(in read_database\): KeyError"):
        back_up(home, SG, "full", BrokenTarget(str(tmp_path / "target")), report=report)
    lines = Path(report.path).read_text().splitlines()
    errors = [line for line in lines if "returned" in line]
    assert len(errors) == 1
    assert "KeyError: 'a bug in some library'" in errors[0]
    assert back_up(home, SG, "full", LocalTarget(str(tmp_path / "target"))).kind == "full"
    home.close()


def test_a_path_the_backup_may_not_read_is_a_refusal_naming_it_not_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = ServerHome.init(str(tmp_path / "home"), policy=QUIET)
    checkpoint = str(tmp_path / "home" / SG / "E00.chk")

    def denied(self: object) -> tuple[str, bytes]:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), checkpoint)

    monkeypatch.setattr(EngineSource, "read_checkpoint", denied)
    report = BackupReport(home.fs, home.path)
    with pytest.raises(AccessDeniedError) as refused:
        back_up(home, SG, "full", LocalTarget(str(tmp_path / "target")), report=report)
    assert refused.value.message.startswith(f"permission denied: {checkpoint}, while backing up {SG!r}")
    assert "check the permissions of" in refused.value.hint
    assert "a bug" not in Path(report.path).read_text()
    monkeypatch.undo()
    assert back_up(home, SG, "full", LocalTarget(str(tmp_path / "target"))).kind == "full"
    home.close()


def test_the_cli_says_it_in_one_line_and_goes_on_with_the_other_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    monkeypatch.setattr("shadowstore.cli.backup_cmd.open_target", lambda url: BrokenTarget(url))
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--all", "--kind", "full", "--quiet")
    assert code != 0
    assert "Traceback" not in err
    assert "KeyError" in err.splitlines()[0]


class RefusingTarget(LocalTarget):
    def write_file(self, name: str, chunks: Iterable[Buffer], **options: object) -> int:
        if name.endswith("priv1.edb"):
            raise BackupTargetError(f"cannot write {name!r}: the store refused", file=name, target=self.url)
        return super().write_file(name, chunks, **options)  # type: ignore[arg-type]


def test_a_target_failure_is_an_error_of_the_backup_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not event 215 ("halted by the client"): 214 with the cause. And the CLI says it in one line: the
    events go to the event log, not to the terminal as well."""
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    monkeypatch.setattr("shadowstore.cli.backup_cmd.open_target", lambda url: RefusingTarget(url))
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--all", "--kind", "full", "--quiet")
    assert code != 0
    assert [line for line in err.splitlines() if "the store refused" in line] == [err.splitlines()[0]]
    assert "ESE" not in err
    code, events = run_json(capsys, "--home", home, "events", "--json")
    ids = [e["event_id"] for e in events]
    assert 214 in ids
    assert 215 not in ids
    assert any("the store refused" in str(e["description"]) for e in events if e["event_id"] == 214)
