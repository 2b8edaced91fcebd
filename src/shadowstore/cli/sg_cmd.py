"""``shadowstore sg ...`` and ``shadowstore store ...``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from shadowstore import config as cfg
from shadowstore import names
from shadowstore.cli.common import SIZE, CliContext, json_option, pass_ctx, print_json
from shadowstore.config import validate_log_file_size, validate_page_size
from shadowstore.engine import movepath
from shadowstore.engine.transaction import Transaction
from shadowstore.errors import NotFoundError
from shadowstore.format.dbheader import DEFAULT_PAGE_SIZE
from shadowstore.format.logfile import DEFAULT_LOG_FILE_SIZE
from shadowstore.tools import sgmove

if TYPE_CHECKING:
    from shadowstore.home import ServerHome


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
    _own_folders(home, {"--log-dir": log_dir, "--system-dir": system_dir, "--data-dir": data_dir})
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


@sg_group.command("move")
@click.argument("name")
@click.option("--to", "to_dir", metavar="DIR", help="New folder for the logs, the checkpoint and the stores alike.")
@click.option("--log-dir", metavar="DIR", help="New folder for the logs [default: --to, else where they are].")
@click.option("--system-dir", metavar="DIR", help="New folder for the checkpoint [default: --to, else where it is].")
@click.option("--data-dir", metavar="DIR", help="New folder for the stores [default: --to, else where they are].")
@click.option("--resume", is_flag=True, help="Finish the interrupted move of NAME recorded in its journal.")
@click.option("--dry-run", is_flag=True, help="Check and print the plan; copy nothing.")
@json_option
@pass_ctx
def sg_move(
    ctx: CliContext,
    name: str,
    to_dir: str | None,
    log_dir: str | None,
    system_dir: str | None,
    data_dir: str | None,
    resume: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Move the files of storage group NAME to other folders, for example off a full disk: copy each file
    (fsynced, so the new folder may be on another disk), switch the configuration once every copy is
    durable, and keep the old files in a quarantine folder beside them (nothing is deleted). NAME must not be
    mounted. Relative folders are taken from the server home, as in 'sg create'. A move that was interrupted
    is finished by the same command, or by --resume."""
    home = ctx.open_home()
    _own_folders(home, {"--to": to_dir, "--log-dir": log_dir, "--system-dir": system_dir, "--data-dir": data_dir})
    result = sgmove.move_storage_group(
        home,
        name,
        log_dir=log_dir or to_dir,
        system_dir=system_dir or to_dir,
        data_dir=data_dir or to_dir,
        resume=resume,
        dry_run=dry_run,
    )
    if as_json:
        print_json(_move_json(result))
        return
    for line in _move_lines(home.path, result):
        click.echo(line)


def _own_folders(home: ServerHome, folders: dict[str, str | None]) -> None:
    """Refuse a folder given for a storage group's files that is one of the home's own (its event log's, the
    backup target's, ...) or inside one. Raises InvalidParameterError naming the option."""
    for option, folder in folders.items():
        if folder is not None:
            names.check_home_folder(home.path, home.config, folder, option)


def _move_json(result: sgmove.MoveResult) -> dict[str, object]:
    return {
        "sg": result.sg,
        "dry_run": result.dry_run,
        "resumed": result.resumed,
        "folders": {r: {"from": getattr(result.old, r), "to": getattr(result.new, r)} for r in result.moved_roles},
        "files": [{"role": m.role, "from": m.source, "to": m.target, "size": m.size} for m in result.moves],
        "copied": result.copied,
        "copied_bytes": result.copied_bytes,
        "kept_from_earlier_run": result.kept,
        "room": {folder: {"needed": need, "free": free} for folder, (need, free) in result.room.items()},
        "quarantine": result.quarantine,
        "set_aside": result.set_aside,
        "warnings": result.warnings,
    }


def _move_lines(home: str, result: sgmove.MoveResult) -> list[str]:
    verb = "Would move" if result.dry_run else "Moved"
    lines = [f"{verb} storage group {result.sg!r}" + (" (finishing an interrupted move)" if result.resumed else "")]
    for role in result.moved_roles:
        files = [m for m in result.moves if m.role == role]
        old, new = getattr(result.old.resolved(home), role), getattr(result.new.resolved(home), role)
        size = sum(m.size for m in files)
        count = f"{len(files)} file{'' if len(files) == 1 else 's'}"
        lines.append(f"  {movepath.ROLE_NAMES[role] + ':':<15} {old} -> {new}  ({count}, {size:,} bytes)")
    for folder, (need, free) in result.room.items():
        lines.append(f"  room in {folder}: {need:,} bytes needed, {free:,} free")
    if not result.dry_run:
        kept = f" ({result.kept} copied by the interrupted run)" if result.kept else ""
        lines.append(f"Copied and synced {result.copied} files, {result.copied_bytes:,} bytes{kept}.")
        lines.append("The configuration names the new folders. Old files kept in:")
        lines += [f"  {q}" for q in result.quarantine] or ["  (there were none)"]
        if result.set_aside:
            lines.append("Copies of files gone from the old folders since the interrupted run, kept in quarantine:")
            lines += [f"  {path}" for path in result.set_aside]
    lines += [f"warning: {w}" for w in result.warnings]
    return lines


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


@store_group.command("set-mount")
@click.argument("sg")
@click.argument("store")
@click.option(
    "--at-start", type=click.Choice(["yes", "no"]), required=True, help="Mount STORE when the service starts."
)
@json_option
@pass_ctx
def store_set_mount(ctx: CliContext, sg: str, store: str, at_start: str, as_json: bool) -> None:
    """Choose whether the service mounts STORE of storage group SG when it starts (mount_at_start in
    shadowstore.toml; it takes effect at the next start). A storage group with no store to mount at start is
    not mounted at all; the other stores of one that is are mounted, then this one is dismounted."""
    home = ctx.open_home()
    changed = cfg.set_mount_at_start(home.config, sg, store, at_start == "yes")
    cfg.save(home.fs, home.path, home.config)
    if as_json:
        print_json({"sg": sg, "store": changed.name, "mount_at_start": changed.mount_at_start})
    else:
        when = "mounts" if changed.mount_at_start else "leaves dismounted"
        click.echo(f"The service {when} store {changed.name!r} of {sg!r} when it starts.")


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
