"""The root command loads each command's modules when the command is first named (cli/main.py)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import click

import shadowstore.cli
from shadowstore.cli.main import COMMAND_MODULES, cli


def _modules_of(command: click.Command) -> set[str]:
    """The modules whose functions ``command`` and the commands below it run."""
    found = {command.callback.__module__} if command.callback is not None else set()
    for sub in getattr(command, "commands", {}).values():
        found |= _modules_of(sub)
    return found


def test_the_table_names_each_command_with_the_modules_that_register_it() -> None:
    registering = {
        info.name
        for info in pkgutil.iter_modules(shadowstore.cli.__path__)
        if hasattr(importlib.import_module(f"shadowstore.cli.{info.name}"), "register")
    }
    assert {m for modules in COMMAND_MODULES.values() for m in modules} == registering
    cli.load_all()
    assert sorted(cli.commands) == sorted(COMMAND_MODULES)
    for name, command in cli.commands.items():
        assert _modules_of(command) == {f"shadowstore.cli.{m}" for m in COMMAND_MODULES[name]}, name


def test_status_imports_no_other_commands_code(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from shadowstore.cli.main import main\n"
        f"main(['--home', {str(tmp_path / 'home')!r}, 'status'])\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('shadowstore.cli.'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    modules = set(loaded.split())
    assert "shadowstore.cli.home_cmd" in modules
    assert not modules & {f"shadowstore.cli.{m}" for m in ("backup_cmd", "mail_cmd", "eseutil_cmd", "service_cmd")}


def test_a_command_looked_up_again_is_wrapped_once() -> None:
    ctx = click.Context(cli)
    first = cli.get_command(ctx, "backup")
    again = cli.get_command(ctx, "backup")
    assert first is again
    assert isinstance(first, click.Group)
    run = first.commands["run"]
    assert sum("--home" in p.opts for p in run.params) == 1
    assert cli.get_command(ctx, "no-such-command") is None
