"""``shadowstore events``: print the application event log (it needs no configuration: see home.open_event_log)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from shadowstore.cli.common import CliContext, json_option, pass_ctx, print_json
from shadowstore.config import CONFIG_NAME
from shadowstore.errors import InvalidParameterError
from shadowstore.events import Event
from shadowstore.home import open_event_log


def _parse_since(text: str | None) -> dt.datetime | None:
    """The time ``--since`` names: an ISO 8601 time (UTC unless it says), or an age before now. Raises
    InvalidParameterError for anything else, an age reaching before the year 1 among it."""
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        match_units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        if text[-1:] in match_units and text[:-1].isdigit():
            try:
                return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(text[:-1]) * match_units[text[-1]])
            except OverflowError:  # why: an age beyond the calendar's start (year 1), a typo
                pass
        raise InvalidParameterError(
            f"--since {text!r} is not a time",
            hint="give an ISO 8601 time like 2026-11-25T08:00:00 (UTC unless it says) or an age like 30m, 2h, 1d",
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@click.command()
@click.option("--source", help="Only events of this source (ESE, MSExchangeIS, ShadowStore).")
@click.option("--id", "event_id", type=int, help="Only events with this ID.")
@click.option("--since", help="Only events at or after this time (ISO 8601, UTC unless stated) or age (30m, 2h).")
@click.option("--sg", help="Only events of this storage group.")
@click.option("--limit", type=click.IntRange(min=0), help="Only the last N matching events (0: none).")
@json_option
@pass_ctx
def events(
    ctx: CliContext,
    source: str | None,
    event_id: int | None,
    since: str | None,
    sg: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Print the application event log, oldest first, in the event viewer's layout. Works when the server
    home's configuration is broken: the event log is read from <home>/events alone."""
    after = _parse_since(since)
    service = ctx.service() if _home_exists(ctx.home_path) else None
    if service is not None:
        answer = service.get(
            "/v1/events",
            source=source,
            event_id=event_id,
            since=after.isoformat() if after else None,
            sg=sg,
            limit=limit,
        )
        found = [Event.from_dict(e) for e in answer]
    else:
        found = open_event_log(ctx.home_path).query(source=source, event_id=event_id, since=after, sg=sg)
    if limit is not None:
        found = found[-limit:] if limit > 0 else []
    if as_json:
        print_json([e.to_dict() for e in found])
        return
    for index, event in enumerate(found):
        if index:
            click.echo("")
        click.echo(event.render())


def _home_exists(path: str) -> bool:
    """A folder with a configuration: only then can a service own it (the event log is read without one)."""
    return (Path(path) / CONFIG_NAME).is_file()


def register(cli: click.Group) -> None:
    cli.add_command(events)
