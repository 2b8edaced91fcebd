"""``shadowstore init`` and ``shadowstore status``."""

from __future__ import annotations

import click

from shadowstore.cli.common import SIZE, CliContext, json_option, pass_ctx, print_json
from shadowstore.config import validate_log_file_size, validate_page_size
from shadowstore.format.dbheader import DEFAULT_PAGE_SIZE
from shadowstore.format.logfile import DEFAULT_LOG_FILE_SIZE
from shadowstore.home import ServerHome


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
    """Create a server home with "First Storage Group" (E00), "Mailbox Store" and "Public Folder Store"."""
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
    for sg in home.config.storage_groups:
        click.echo(f"  {sg.name} ({sg.log_base}): {', '.join(f'{s.name} ({s.file})' for s in sg.stores)}")


@click.command()
@json_option
@pass_ctx
def status(ctx: CliContext, as_json: bool) -> None:
    """Show each storage group and store (read from disk; nothing is mounted)."""
    data = ctx.open_home().status()
    if as_json:
        print_json(data)
        return
    click.echo(f"Server home: {data['home']} (server {data['server']}, home id {data['home_id']})")
    for sg in data["storage_groups"]:  # type: ignore[attr-defined]
        mounted = "mounted by another process" if sg["mounted"] else "dismounted"
        click.echo(f"\n{sg['name']} [{sg['log_base']}] {mounted}")
        click.echo(f"  log folder:        {sg['log_dir']}")
        click.echo(f"  log generations:   {sg.get('lowest_generation')} - {sg['current_generation']}")
        click.echo(f"  checkpoint:        {sg['checkpoint']}")
        click.echo(f"  circular logging:  {'on' if sg['circular_logging'] else 'off'}")
        for store in sg["stores"]:
            required = store.get("log_required")
            req = f"  Log Required: {required[0]}-{required[1]}" if required else ""
            click.echo(f"  - {store['name']} ({store['file']}): {store['state']}{req}")
        for problem in sg.get("problems", []):
            click.echo(f"  ! {problem}")


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(status)
