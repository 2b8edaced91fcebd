"""``shadowstore sg ...`` and ``shadowstore store ...``."""

from __future__ import annotations

import click

from shadowstore.cli.common import SIZE, CliContext, json_option, pass_ctx, print_json
from shadowstore.config import validate_log_file_size, validate_page_size
from shadowstore.format.dbheader import DEFAULT_PAGE_SIZE
from shadowstore.format.logfile import DEFAULT_LOG_FILE_SIZE


@click.group("sg")
def sg_group() -> None:
    """Storage groups."""


@sg_group.command("create")
@click.argument("name")
@click.option("--log-dir", help="Folder for the transaction logs [default: <home>/<NAME>].")
@click.option("--system-dir", help="Folder for the checkpoint file [default: the log folder].")
@click.option("--data-dir", help="Folder for the store files [default: the log folder].")
@click.option("--log-file-size", type=SIZE, default=DEFAULT_LOG_FILE_SIZE, show_default=True)
@click.option("--page-size", type=SIZE, default=DEFAULT_PAGE_SIZE, show_default=True)
@click.option("--circular-logging", is_flag=True)
@json_option
@pass_ctx
def sg_create(
    ctx: CliContext,
    name: str,
    log_dir: str | None,
    system_dir: str | None,
    data_dir: str | None,
    log_file_size: int,
    page_size: int,
    circular_logging: bool,
    as_json: bool,
) -> None:
    """Create storage group NAME (with the next free log base name) and no stores."""
    home = ctx.open_home()
    sg = home.create_storage_group(
        name,
        log_dir=log_dir,
        system_dir=system_dir,
        data_dir=data_dir,
        log_file_size=validate_log_file_size(log_file_size),
        page_size=validate_page_size(page_size),
        circular_logging=circular_logging,
    )
    if as_json:
        print_json({"name": sg.name, "log_base": sg.base, "log_dir": sg.config.log_dir})
    else:
        click.echo(f"Created storage group {sg.name!r} with log base {sg.base} in {sg.config.log_dir}")


@click.group("store")
def store_group() -> None:
    """Stores (databases)."""


@store_group.command("create")
@click.argument("sg")
@click.argument("name")
@click.option("--file", "file_name", help="File name of the store [default: derived from NAME].")
@json_option
@pass_ctx
def store_create(ctx: CliContext, sg: str, name: str, file_name: str | None, as_json: bool) -> None:
    """Create store NAME in storage group SG (which must not be mounted by another process)."""
    home = ctx.open_home()
    home.create_store(sg, name, file_name)
    store = home.config.find(sg).find_store(name)
    if as_json:
        print_json({"sg": sg, "name": store.name, "file": store.file, "dbid": store.dbid})
    else:
        click.echo(f"Created store {store.name!r} ({store.file}, dbid {store.dbid}) in {sg!r}")


def register(cli: click.Group) -> None:
    cli.add_command(sg_group)
    cli.add_command(store_group)
