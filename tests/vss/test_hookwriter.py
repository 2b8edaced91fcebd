"""The command-hook writer: another application pauses before the freeze and resumes after the thaw, also when
the job fails; a command that fails or hangs vetoes the job."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.report import BackupReport
from shadowstore.backup.snapshotrun import back_up_snapshot
from shadowstore.config import save
from shadowstore.errors import InvalidParameterError
from shadowstore.home import ServerHome
from shadowstore.vss.hookwriter import CommandHookWriter, hook_writers
from shadowstore.vss.states import WriterFailure, WriterState
from shadowstore.vss.writer import WriterVeto
from tests.cli.clirun import run

SG = "First Storage Group"


def _note(log: Path, word: str) -> str:
    return f"sh -c {shlex.quote(f'echo {word} >> {log}')}"


def test_the_hook_pauses_before_the_freeze_and_resumes_after_the_thaw(tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    state = tmp_path / "app.state"
    state.write_text("the other application's file\n")
    home = ServerHome.init(str(tmp_path / "home"))
    home.config.settings["vss"] = {
        "hook": [
            {
                "name": "app",
                "pre_freeze": _note(log, "pause"),
                "post_thaw": _note(log, "resume"),
                "timeout": 5,
                "paths": [str(state)],
            }
        ]
    }
    save(home.fs, home.path, home.config)
    home = ServerHome.open(home.path)
    writers = tuple(hook_writers(home.config.settings))
    assert [w.name for w in writers] == ["ShadowStore Command Hook Writer (app)"]
    run = back_up_snapshot(home, [SG], "full", LocalTarget(str(tmp_path / "b")), provider="copy",
                           report=BackupReport(home.fs, home.path), writers=writers)  # fmt: skip
    assert not run.failures
    assert log.read_text().split() == ["pause", "resume"]
    assert writers[0].state == WriterState.STABLE


def test_a_failing_pre_freeze_vetoes_and_a_hook_that_ran_always_resumes(tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    failing = CommandHookWriter("app", f"sh -c 'echo pause >> {log}; exit 3'", _note(log, "resume"), 5, [])
    failing.identify()
    failing.prepare_for_backup("full", [])
    failing.prepare_for_snapshot()
    with pytest.raises(WriterVeto, match="exited 3"):
        failing.freeze()
    failing.abort()
    failing.backup_shutdown()
    assert log.read_text().split() == ["pause", "resume"]
    assert failing.state == WriterState.FAILED_AT_FREEZE
    assert failing.failure == WriterFailure.RETRYABLE

    hanging = CommandHookWriter("slow", "sleep 5", None, 0.3, [])
    hanging.identify()
    hanging.prepare_for_backup("full", [])
    hanging.prepare_for_snapshot()
    with pytest.raises(WriterVeto, match=r"within 0\.3 s"):
        hanging.freeze()
    assert hanging.failure == WriterFailure.TIMEOUT


def test_a_vetoing_hook_fails_the_backup_as_a_refusal_that_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init")[0] == 0
    server = ServerHome.open(home)
    server.config.settings["vss"] = {"hook": [{"name": "mail filter", "pre_freeze": "/bin/false"}]}
    save(server.fs, home, server.config)
    target = str(tmp_path / "backups")
    args = ("--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--method", "snapshot", "--to", target)
    code, _out, err = run(capsys, *args)
    assert code == 20, err  # a backup refused, not an unknown failure
    assert "the pre_freeze command of hook 'mail filter' exited 1" in err
    assert "hint: the application behind the hook refused; once it can pause, run the backup again" in err


def test_a_malformed_hook_entry_is_named(tmp_path: Path) -> None:
    home = ServerHome.init(str(tmp_path / "home"))
    home.config.settings["vss"] = {"hook": [{"name": "app"}]}
    with pytest.raises(InvalidParameterError, match="'app' needs a pre_freeze or post_thaw"):
        hook_writers(home.config.settings)
