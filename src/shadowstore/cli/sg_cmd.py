"""``shadowstore sg ...`` and ``shadowstore store ...``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from shadowstore.cli.common import SIZE, CliContext, json_option, pass_ctx, print_json
from shadowstore.config import validate_log_file_size, validate_page_size
from shadowstore.engine.transaction import Transaction
from shadowstore.errors import NotFoundError
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


@contextmanager
def _snapshot(ctx: CliContext, sg: str, store: str) -> Iterator[Transaction]:
    """A read snapshot of ``store``, the storage group mounted for the command (recovering it if needed)."""
    home = ctx.open_home()
    group = home.storage_group(sg)
    group.mount()
    try:
        with group.store(store).snapshot() as snap:
            yield snap
    finally:
        group.dismount()


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _shown(data: bytes, room: int = 48) -> str:
    """A short one-line form for a terminal: the text if it is printable UTF-8, else hex."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if (text.isprintable() and text) or not data:
        return text[:room] + ("..." if len(text) > room else "")
    return "0x" + data[: room // 2].hex() + ("..." if len(data) > room // 2 else "")


@store_group.command("tables")
@click.argument("sg")
@click.argument("store")
@json_option
@pass_ctx
def store_tables(ctx: CliContext, sg: str, store: str, as_json: bool) -> None:
    """List the tables of STORE in storage group SG with their row counts (also for the Recovery Storage
    Group: this is how restored stores are read)."""
    with _snapshot(ctx, sg, store) as snap:
        tables = [{"table": name, "rows": snap.count(name)} for name in snap.tables()]
    if as_json:
        print_json(tables)
        return
    for t in tables:
        click.echo(f"{t['table']:<32} {t['rows']:>12,} rows")


@store_group.command("read")
@click.argument("sg")
@click.argument("store")
@click.argument("table")
@click.option("--prefix", help="Only keys starting with this text.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True, help="Rows to print (0: all).")
@json_option
@pass_ctx
def store_read(ctx: CliContext, sg: str, store: str, table: str, prefix: str | None, limit: int, as_json: bool) -> None:
    """Print rows of TABLE in STORE, in key order (JSON: keys and values in hex, and as text where they are
    UTF-8)."""
    rows = []
    with _snapshot(ctx, sg, store) as snap:
        if not snap.has_table(table):
            raise NotFoundError(
                f"store {store!r} of {sg!r} has no table {table!r} (tables: {', '.join(snap.tables())})"
            )
        for key, value in snap.range(table, prefix=prefix.encode() if prefix is not None else None):
            rows.append((key, value))
            if limit and len(rows) >= limit:
                break
    if as_json:
        print_json(
            [
                {"key": _utf8(k), "value": _utf8(v), "key_hex": k.hex(), "value_hex": v.hex(), "size": len(v)}
                for k, v in rows
            ]
        )
        return
    for key, value in rows:
        click.echo(f"{_shown(key)}\t{len(value)} bytes\t{_shown(value)}")


def register(cli: click.Group) -> None:
    cli.add_command(sg_group)
    cli.add_command(store_group)
