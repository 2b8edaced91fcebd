"""``shadowstore config get|set|list|new-home-id``: settings of the server home (``backup.target``, ...) and
its home id."""

from __future__ import annotations

import os

import click

from shadowstore import config as cfg
from shadowstore.backup.pace import parse_max_rate
from shadowstore.cli.backup_cmd import configured_target
from shadowstore.cli.common import CliContext, json_option, pass_ctx, print_json
from shadowstore.errors import InvalidParameterError, NotFoundError, ServiceError

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


@config_group.command("new-home-id")
@click.option("--yes", is_flag=True, help="Change it; without it nothing changes and what would is printed.")
@json_option
@pass_ctx
def new_home_id(ctx: CliContext, yes: bool, as_json: bool) -> None:
    """Give this home a new home id: for a copy of a home (its folder copied whole to another server that runs
    too) or a machine rolled back to an earlier image, whose backups must not be filed with the other history's.
    The sets already taken keep the old id (restore them with --from-home OLD); take a full backup next."""
    home = ctx.open_home()
    if ctx.service() is not None:
        raise ServiceError(
            "the Information Store service runs for this home, and names its backups and shared files by the id",
            hint="stop it (systemctl stop shadowstore, or kill -TERM its pid), change the id, then start it again",
        )
    old, new = home.home_id, cfg.new_home_id(home.config.server_name)
    if yes:
        # why under the lock that gives old homes their id: one process at a time writes the id
        with home.fs.locked(os.path.join(home.path, "home-id.lock")):
            config = cfg.load(home.fs, home.path)
            config.home_id = new
            cfg.save(home.fs, home.path, config)
    if as_json:
        print_json({"old": old, "new": new if yes else None, "changed": yes})
        return
    if not yes:
        click.echo(f"Home id {old} would be replaced by a new one. Nothing changed: add --yes to change it.")
        return
    click.echo(f"Home id {old} is now {new}. The backup sets taken so far keep {old}: restore them with")
    click.echo(f"--from-home {old}. Take a full backup now: incrementals cannot build on {old}'s sets.")


def register(cli: click.Group) -> None:
    cli.add_command(config_group)
