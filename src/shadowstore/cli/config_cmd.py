"""``shadowstore config get|set|list``: settings of the server home (``backup.target``, ...)."""

from __future__ import annotations

import click

from shadowstore import config as cfg
from shadowstore.backup.pace import parse_max_rate
from shadowstore.cli.backup_cmd import configured_target
from shadowstore.cli.common import CliContext, json_option, pass_ctx, print_json
from shadowstore.errors import InvalidParameterError, NotFoundError

SETTINGS = {
    "backup.target": "where 'backup run' writes when --to is not given (a directory or a URL)",
    "engine.transaction_timeout": "seconds a write transaction may hold its store's writer latch (default 60)",
    "backup.lease_seconds": "seconds a running backup's lease in its target lasts unrenewed (default 600)",
    "service.session_lease_seconds": "seconds the service keeps a silent backup program's session (default 30)",
    "vss.freeze_seconds": "seconds a shadow copy may hold a storage group's commits before it thaws (default 60)",
    "backup.max_rate": "MB per second a backup's copy may take when --max-rate is not given; 0: no limit; auto: "
    "slow down while commits wait longer (default: auto for snapshot backups, 0 for streaming)",
}


@click.group("config")
def config_group() -> None:
    """Settings of the server home."""


@config_group.command("set")
@click.argument("key")
@click.argument("value")
@json_option
@pass_ctx
def set_value(ctx: CliContext, key: str, value: str, as_json: bool) -> None:
    """Set KEY to VALUE (keys: backup.target, engine.transaction_timeout, backup.lease_seconds,
    service.session_lease_seconds, vss.freeze_seconds, backup.max_rate)."""
    if key not in SETTINGS:
        raise InvalidParameterError(f"unknown setting {key!r}; settings: {', '.join(SETTINGS)}")
    home = ctx.open_home()
    stored: str | float = value
    if key == "backup.target":
        # why now: a target that can never work should be refused here, not at the next backup
        configured_target(home, value)
    elif key in cfg.NUMBER_SETTINGS:
        if key == "backup.max_rate":
            parse_max_rate(value, key)  # why first: a bad rate is refused in the words --max-rate uses
        stored = cfg.check_setting(key, value)  # the range that loading the file checks too
    section, name = key.split(".", 1)
    home.config.settings.setdefault(section, {})[name] = stored
    cfg.save(home.fs, home.path, home.config)
    if as_json:
        print_json({key: stored})
    else:
        click.echo(f"{key} = {value}")


@config_group.command("get")
@click.argument("key")
@json_option
@pass_ctx
def get_value(ctx: CliContext, key: str, as_json: bool) -> None:
    """Print the value of KEY."""
    home = ctx.open_home()
    section, _, name = key.partition(".")
    value = home.config.settings.get(section, {}).get(name)
    if value is None:
        raise NotFoundError(f"setting {key!r} is not set")
    if as_json:
        print_json({key: value})
    else:
        click.echo(value)


@config_group.command("list")
@json_option
@pass_ctx
def list_values(ctx: CliContext, as_json: bool) -> None:
    """Every setting: its value in this home (or that it is not set, and so has its default) and what it does."""
    settings = ctx.open_home().config.settings
    rows = []
    for key, meaning in SETTINGS.items():
        section, name = key.split(".", 1)
        limits = cfg.NUMBER_SETTINGS.get(key)
        row = {"key": key, "value": settings.get(section, {}).get(name), "meaning": meaning}
        rows.append(row | ({"takes": limits.describe()} if limits else {}))
    if as_json:
        print_json(rows)
        return
    for row in rows:
        shown = "(not set)" if row["value"] is None else row["value"]
        takes = f"; takes {row['takes']}" if "takes" in row else ""
        click.echo(f"{row['key']} = {shown}\n    {row['meaning']}{takes}")


def register(cli: click.Group) -> None:
    cli.add_command(config_group)
