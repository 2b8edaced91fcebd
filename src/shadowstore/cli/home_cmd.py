"""``shadowstore init`` and ``shadowstore status``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from shadowstore.cli.common import SIZE, CliContext, json_option, pass_ctx, print_json
from shadowstore.config import CONFIG_NAME, validate_log_file_size, validate_page_size
from shadowstore.format.dbheader import DEFAULT_PAGE_SIZE
from shadowstore.format.logfile import DEFAULT_LOG_FILE_SIZE
from shadowstore.home import DEFAULT_SG, ServerHome
from shadowstore.leftovers import add_leftovers
from shadowstore.restore.run import INTO_PLACE, INTO_RECOVERY_GROUP
from shadowstore.vss.providers import make_subvolume


@click.command()
@click.option(
    "--log-file-size",
    type=SIZE,
    default=DEFAULT_LOG_FILE_SIZE,
    show_default=True,
    help="Size of each transaction log file (64K to 32M).",
)
@click.option(
    "--page-size",
    type=SIZE,
    default=DEFAULT_PAGE_SIZE,
    show_default=True,
    help="Database page size (4096, 8192, 16384 or 32768).",
)
@click.option("--circular-logging", is_flag=True, help="Delete logs below the checkpoint automatically.")
@json_option
@pass_ctx
def init(ctx: CliContext, log_file_size: int, page_size: int, circular_logging: bool, as_json: bool) -> None:
    """Create a server home with "First Storage Group" (E00), "Mailbox Store" and "Public Folder Store". On btrfs
    the home and the storage group's folder are made subvolumes, so shadow copies can snapshot just them."""
    subvolumes = _subvolume_layout(ctx.home_path)
    home = ServerHome.init(
        ctx.home_path,
        log_file_size=validate_log_file_size(log_file_size),
        page_size=validate_page_size(page_size),
        circular_logging=circular_logging,
    )
    if as_json:
        print_json(home.status())
        return
    click.echo(f"Created server home {home.path} (home id {home.home_id})")
    if subvolumes:
        click.echo(f"  on btrfs: {', '.join(subvolumes)} are subvolumes (shadow copies use the btrfs provider)")
    for sg in home.config.storage_groups:
        click.echo(f"  {sg.name} ({sg.log_base}): {', '.join(f'{s.name} ({s.file})' for s in sg.stores)}")


@click.command()
@json_option
@pass_ctx
def status(ctx: CliContext, as_json: bool) -> None:
    """Show each storage group and store (read from disk; nothing is mounted), unfinished restores, and the log
    streams and stores on disk that the configuration does not name."""
    service = ctx.service()
    # why the service's document whole: it reads the restores and quarantines too, so a status over TCP needs no
    # copy of the home on this machine
    if service is not None:
        data = service.get("/v1/status")
    else:
        home = ctx.open_home()
        data = add_leftovers(home, home.status())
    data.pop("service", None)  # why: the same document either way; 'backup status' shows the sessions
    if as_json:
        print_json(data)
        return
    for line in status_lines(data):
        click.echo(line)


def _subvolume_layout(path: str) -> list[str]:
    """On btrfs, make a new home and its first storage group's folder subvolumes (vss/providers.py); nothing when
    the home exists already or its parent is not btrfs. Returns the subvolumes made."""
    path = os.path.abspath(path)
    if Path(path).exists() or Path(path).is_symlink() or not Path(path).parent.is_dir():
        return []
    if not make_subvolume(path):
        return []
    group = os.path.join(path, DEFAULT_SG)
    return [path, group] if make_subvolume(group) else [path]


def status_lines(data: dict[str, Any]) -> list[str]:
    """``status`` in words. A value the files did not give (JSON null) is shown as a word, never as None."""
    lines = [f"Server home: {data['home']} (server {data['server']}, home id {data['home_id']})"]
    if not data["storage_groups"]:
        lines.append(f"\nThe configuration ({CONFIG_NAME}) names no storage group.")
    for sg in data["storage_groups"]:
        lines += ["", *_group_lines(sg)]
    if data["unfinished_restores"]:
        lines += ["", "Unfinished restores:"]
        for r in data["unfinished_restores"]:
            lines += _restore_lines(r, data["home_id"])
    if data["found_on_disk"]:
        lines += ["", f"Found on disk but not in the configuration ({CONFIG_NAME}):"]
        for found in data["found_on_disk"]:
            lines += [f"  ! {found['message']}", f"    hint: {found['hint']}"]
            if found.get("suggested_config"):
                lines += ["    entry:", *(f"      {line}" for line in found["suggested_config"].splitlines())]
    return lines


def _group_lines(sg: dict[str, Any]) -> list[str]:
    mounted = f"mounted by {sg.get('mounted_by') or 'another process'}" if sg["mounted"] else "dismounted"
    low, high = sg.get("lowest_generation"), sg.get("current_generation")
    generations = f"{low} - {high}" if high is not None else "none (no current log file)"
    lines = [
        f"{sg['name']} [{sg['log_base']}] {mounted}",
        f"  log folder:        {sg['log_dir']}",
        f"  log generations:   {generations}",
        f"  checkpoint:        {sg['checkpoint'] if sg['checkpoint'] is not None else 'none (see below)'}",
        f"  circular logging:  {'on' if sg['circular_logging'] else 'off'}",
    ]
    for store in sg["stores"]:
        required = store.get("log_required")
        req = f"  Log Required: {required[0]}-{required[1]}" if required else ""
        off = " (store dismounted)" if sg["mounted"] and store.get("mounted") is False else ""
        lines.append(f"  - {store['name']} ({store['file']}): {store['state']}{req}{off}")
    quarantine = sg.get("quarantine") or {}
    if quarantine.get("folders"):
        lines.append(
            f"  quarantine:        {quarantine['folders']} folder(s), {quarantine['bytes']:,} bytes "
            "(shadowstore quarantine list; purge them when sure)"
        )
    lines += [f"  ! {problem}" for problem in sg.get("problems", [])]
    for mismatch in sg.get("config_mismatches", []):
        lines += [f"  ! {mismatch['message']}", f"    hint: {mismatch['hint']}"]
    return lines


def _restore_lines(r: dict[str, Any], home_id: str) -> list[str]:
    other = r["from_home"] and r["from_home"] != home_id
    source = f"of {r['source_sg']!r}" + (f" of home {r['from_home']}" if other else "") if r["source_sg"] else ""
    where = {INTO_PLACE: "in place", INTO_RECOVERY_GROUP: "into the recovery storage group"}.get(r["into"], "")
    lines = [
        f"  ! restore into {r['sg']!r} ({' '.join(p for p in (source, where) if p)}), started {r['started'] or '?'}",
        f"    phase {r['phase']}: {r['reached']}",
    ]
    if r["running"]:
        lines.append(f"    the storage group is locked by {r['running']}: it may be running now")
    lines.append(f"    resume: {r['resume']}")
    if r["note"]:
        lines.append(f"    note: {r['note']}")
    if r["undo"]:
        lines.append(f"    or undo it: {r['undo']}")
    return lines


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(status)
