"""``shadowstore vss writers``: the shadow-copy writers and their states, as ``vssadmin list writers`` prints
them."""

from __future__ import annotations

from typing import Any

import click

from shadowstore.cli.common import CliContext, json_option, pass_ctx, print_json
from shadowstore.vss.hookwriter import hook_writers
from shadowstore.vss.storewriter import StoreWriter


@click.group("vss")
def vss_group() -> None:
    """The shadow-copy framework: writers (and, with the service, their states after the last job)."""


@vss_group.command("writers")
@json_option
@pass_ctx
def writers(ctx: CliContext, as_json: bool) -> None:
    """List the writers: name, id, instance id, state and last error. With the service, the writers it hosts
    (the store writer and the command hooks) in their states after its last job; without it the writers live
    in the backup program, so they are shown as a new job finds them."""
    service = ctx.service()
    if service is not None:
        found: list[dict[str, Any]] = list(service.get("/v1/vss/writers"))
    else:
        home = ctx.open_home()
        found = [StoreWriter(home).status(), *(writer.status() for writer in hook_writers(home.config.settings))]
    if as_json:
        print_json(found)
        return
    for writer in found:
        click.echo(f"Writer name: '{writer['name']}'")
        click.echo(f"   Writer Id: {{{writer['writer_id']}}}")
        click.echo(f"   Writer Instance Id: {{{writer['instance_id']}}}")
        click.echo(f"   State: [{writer['state']}] {writer['state_name']}")
        click.echo(f"   Last error: {writer['last_error']}")
        click.echo("")


def register(cli: click.Group) -> None:
    cli.add_command(vss_group)
