"""``shadowstore quarantine list|purge``: the files ShadowStore set aside instead of deleting them."""

from __future__ import annotations

import click

from shadowstore.cli.backup_checks_cmd import parse_age
from shadowstore.cli.common import CliContext, json_option, pass_ctx, print_json, table
from shadowstore.quarantine import list_quarantine, purge


@click.group("quarantine")
def quarantine_group() -> None:
    """What restores (and other operations) set aside instead of deleting: list it, purge it when sure."""


@quarantine_group.command("list")
@click.option("--sg", help="Only this storage group.")
@json_option
@pass_ctx
def list_cmd(ctx: CliContext, sg: str | None, as_json: bool) -> None:
    """List every quarantine folder with its files, size and age, oldest first."""
    folders = list_quarantine(ctx.open_home(), sg)
    if as_json:
        print_json([f.to_dict() for f in folders])
        return
    if not folders:
        click.echo("Nothing is in quarantine.")
        return
    rows = [[f.sg, f.path, str(f.files), f"{f.bytes:,}", f.modified] for f in folders]
    for line in table(["STORAGE GROUP", "FOLDER", "FILES", "BYTES", "NEWEST FILE"], rows, frozenset({2, 3})):
        click.echo(line)
    click.echo(f"{len(folders)} folder(s), {sum(f.bytes for f in folders):,} bytes")


@quarantine_group.command("purge")
@click.option("--sg", help="Only this storage group.")
@click.option("--older-than", help="Only folders whose newest file is older than this (3600, 12h, 30d).")
@click.option("--yes", is_flag=True, help="Delete; without it nothing is deleted and what would be is listed.")
@json_option
@pass_ctx
def purge_cmd(ctx: CliContext, sg: str | None, older_than: str | None, yes: bool, as_json: bool) -> None:
    """Delete quarantine folders: the one thing in ShadowStore that deletes files, and only when asked."""
    home = ctx.open_home()
    limit = parse_age(older_than, "--older-than") if older_than is not None else None
    chosen = [f for f in list_quarantine(home, sg) if limit is None or f.age_seconds > limit]
    freed = purge(home, chosen) if yes else 0
    if as_json:
        print_json({"dry_run": not yes, "folders": [f.to_dict() for f in chosen], "freed_bytes": freed})
        return
    for f in chosen:
        click.echo(f"{'deleted' if yes else 'would delete'}  {f.path}  ({f.files} files, {f.bytes:,} bytes)")
    total = sum(f.bytes for f in chosen)
    if yes:
        click.echo(f"freed {freed:,} bytes in {len(chosen)} folder(s)")
    else:
        click.echo(f"dry run: {len(chosen)} folder(s), {total:,} bytes; pass --yes to delete them")


def register(cli: click.Group) -> None:
    cli.add_command(quarantine_group)
