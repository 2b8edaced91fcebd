"""``shadowstore serve``, and ``mount`` / ``dismount``, which ask the running service."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from shadowstore.cli.common import CliContext, json_option, pass_ctx, print_json
from shadowstore.errors import ExitCode, InvalidParameterError
from shadowstore.service.client import segment


@click.command()
@click.option(
    "--socket", "socket_path", type=click.Path(dir_okay=False), help="Unix socket [default: <home>/service.sock]."
)
@click.option("--listen", metavar="HOST:PORT", help="Also listen on TCP (every request needs the bearer token).")
@click.option("--token-file", type=click.Path(dir_okay=False), help="File holding the bearer token (mode 0600).")
@pass_ctx
def serve(ctx: CliContext, socket_path: str | None, listen: str | None, token_file: str | None) -> int:
    """Run the Information Store service in the foreground: own the server home, mount its storage groups,
    answer the CLI and other clients on a Unix socket (mode 0600) and optionally TCP, until SIGTERM or Ctrl-C
    (then every store is dismounted in Clean Shutdown; exit code 1 names a store left otherwise)."""
    from shadowstore.service.server import serve as run_service

    with _warning_events_on_stderr(), _listen_refusals(listen):
        unclean = run_service(
            ctx.home_path, socket_path=socket_path, listen=listen, token_file=token_file, announce=click.echo
        )
    return int(ExitCode.WARNING if unclean else ExitCode.OK)


@contextmanager
def _listen_refusals(listen: str | None) -> Iterator[None]:
    """An address ``--listen`` cannot take as InvalidParameterError naming it. Why here: only a TCP bind
    fails so (the Unix socket's failures are ServiceErrors), and the OSError does not say which option."""
    try:
        yield
    except OSError as exc:
        if listen is None or exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            raise
        if exc.errno == errno.EADDRINUSE:
            raise InvalidParameterError(
                f"cannot listen on {listen}: another program listens there",
                hint="stop that program, or choose another port in --listen",
            ) from exc
        raise InvalidParameterError(
            f"cannot listen on {listen}: no network interface of this machine has that address",
            hint="name an address of this machine in --listen (127.0.0.1 for itself alone, 0.0.0.0 for all)",
        ) from exc


@contextmanager
def _warning_events_on_stderr() -> Iterator[None]:
    """The service's warning and error events on its output too (the journal, under systemd), one line each,
    beside the event log: an administrator reading why a store went offline need not run another command."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("event %(message)s"))
    events = logging.getLogger("shadowstore.events")
    events.addHandler(handler)
    try:
        yield
    finally:
        events.removeHandler(handler)


def _split(target: str) -> tuple[str, str | None]:
    """``SG`` or ``SG/STORE`` as the names. Raises InvalidParameterError for anything else. Why before any
    request: such a name would build the URL of another route (or of none), and the service's answer would not
    say what was wrong with the name."""
    parts = target.split("/")
    problem = _target_problem(parts)
    if problem is not None:
        raise InvalidParameterError(
            f"{target!r} is not SG or SG/STORE: it has {problem}",
            hint="name a storage group, or a storage group, '/' and one of its stores, as 'shadowstore status' "
            "lists them (e.g. 'First Storage Group/Mailbox Store')",
        )
    return parts[0], parts[1] if len(parts) == 2 else None


def _target_problem(parts: list[str]) -> str | None:
    if len(parts) > 2:
        return "more than one '/'"
    if "" in parts:
        return "an empty name"
    if any(part in (".", "..") for part in parts):
        return "'.' or '..' as a name"
    if any(ord(c) < 32 or ord(c) == 127 for part in parts for c in part):
        return "a control character"
    return None


def _path(sg: str, store: str | None, action: str) -> str:
    tail = f"/stores/{segment(store)}" if store is not None else ""
    return f"/v1/storage-groups/{segment(sg)}{tail}/{action}"


def _show(result: dict[str, Any], target: str, action: str, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    stores = result.get("stores") or []
    click.echo(f"{target}: {action}.")
    for store in stores:
        state = "mounted" if store.get("mounted") else "dismounted"
        click.echo(f"  - {store['name']}: {state}, {store.get('state') or 'state unknown'}")


def _store_command(action: str, done: str, summary: str) -> click.Command:
    """``mount`` or ``dismount SG[/STORE]``: the same call to the running service, another action."""

    @click.command(action, help=summary)
    @click.argument("target", metavar="SG[/STORE]")
    @json_option
    @pass_ctx
    def command(ctx: CliContext, target: str, as_json: bool) -> None:
        sg, store = _split(target)
        client = ctx.need_service(f"{action} {target!r}")
        _show(client.post(_path(sg, store, action)), target, done, as_json)

    return command


mount = _store_command(
    "mount",
    "mounted",
    "Mount a storage group (soft recovery first when needed) or one of its stores, in the running service.",
)
dismount = _store_command(
    "dismount",
    "dismounted",
    "Dismount a storage group or one store in the running service: each store left in Clean Shutdown.",
)


def register(cli: click.Group) -> None:
    for command in (serve, mount, dismount):
        cli.add_command(command)
