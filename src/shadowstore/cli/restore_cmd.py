"""``shadowstore restore plan|run``."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import click

from shadowstore.cli.backup_cmd import readable_target
from shadowstore.cli.common import CliContext, json_option, pass_ctx, print_json
from shadowstore.errors import BackupSetError, InvalidParameterError
from shadowstore.home import ServerHome
from shadowstore.restore.abort import abort_restore
from shadowstore.restore.choose import Choice, Request, choose_plan, damaged_file, refuse_discard, verify_plan
from shadowstore.restore.journal import unfinished_restores
from shadowstore.restore.plan import RestoreTarget
from shadowstore.restore.run import (
    INTO_PLACE,
    INTO_RECOVERY_GROUP,
    RECOVERY_SG,
    Progress,
    RestoreOutcome,
    finish_restore,
    run_restore,
)

if TYPE_CHECKING:
    from shadowstore.service.client import ServiceClient

MAX_DAMAGED = 20  # files found damaged in one restore before it gives up planning around them


def parse_until(value: str) -> int:
    """An ISO 8601 time (a time without a zone is UTC, as ShadowStore prints times) -> µs since 1970."""
    text = value.strip().replace(" UTC", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameterError(
            f"--until {value!r} is not an ISO 8601 time (example: 2026-11-25T10:15:03.250000Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # why not timestamp(): it rounds through a float
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _target_of(until: str | None, until_gen: int | None) -> RestoreTarget:
    if until is not None and until_gen is not None:
        raise InvalidParameterError("give --until or --until-gen, not both")
    if until is not None:
        return RestoreTarget.at_time(parse_until(until))
    if until_gen is not None:
        if until_gen < 1:
            raise InvalidParameterError(f"--until-gen {until_gen}: generations start at 1")
        return RestoreTarget.at_generation(until_gen)
    return RestoreTarget.latest()


@click.group("restore")
def restore_group() -> None:
    """Restore backups: plan what to apply, then copy, roll the logs forward and leave the stores in Clean
    Shutdown; finish an interrupted restore."""


_from = click.option("--from", "source", help="Backup target to restore from [default: backup.target].")
_sg = click.option("--sg", help="Storage group to restore (needed when the target holds several).")
_from_home = click.option(
    "--from-home",
    help="Use the backups of another server home (its id, as 'backup list' shows it) [default: this home's].",
)
_until = click.option("--until", help="Restore the transactions committed at or before this ISO 8601 time (UTC).")
_until_gen = click.option("--until-gen", type=int, help="Restore through the end of this log generation.")
_live = click.option(
    "--roll-forward-live",
    "live",
    is_flag=True,
    help="Continue with the live storage group's newer logs after the backups (the default in place).",
)
_stop_at_backup = click.option(
    "--stop-at-backup",
    is_flag=True,
    help="In place: stop at the end of the backups, discarding newer transactions of the live logs.",
)


_skip_set = click.option(
    "--skip-set", "skip", multiple=True, help="Leave this backup set out, e.g. one known damaged (repeatable)."
)
_set = click.option("--set", "base", help="Start from this full or copy backup set.")


def _request(home: ServerHome, source: str | None, until: str | None, until_gen: int | None, **options: Any) -> Request:
    return Request(readable_target(home, source, "--from"), _target_of(until, until_gen), **options)


@restore_group.command("plan")
@_from
@_from_home
@_sg
@_until
@_until_gen
@_live
@_stop_at_backup
@_skip_set
@_set
@click.option("--in-place", is_flag=True, help="Plan a restore in place: also say what it would discard.")
@click.option("--verify", is_flag=True, help="Read and hash every file the plan uses, planning around damage.")
@json_option
@pass_ctx
def plan_cmd(
    ctx: CliContext,
    source: str | None,
    until: str | None,
    until_gen: int | None,
    verify: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Show which backup sets and logs a restore would use and, with --in-place, what it would discard
    (nothing is changed: this is the dry run). --verify also reads every file it would use."""
    home = ctx.open_home()
    unfinished = [r for r in unfinished_restores(home) if not r["running"]]
    if not as_json:
        for r in unfinished:  # why first: resuming it may be what the administrator came for
            click.echo(f"An interrupted restore into {r['sg']!r} ({r['reached']}). Resume it: {r['resume']}")
            if r["into"] == INTO_PLACE:
                click.echo(f"  or undo it: shadowstore restore abort --sg {shlex.quote(r['sg'])}")
    request = _request(home, source, until, until_gen, **options)
    choice = choose_plan(home, request)
    if verify:
        choice = verify_plan(home, request, choice)
    plan, discard = choice.plan, choice.discard
    if as_json:
        extra = {"discards": discard.to_dict() if discard else None, "verified": verify, "unfinished": unfinished}
        print_json(plan.to_dict() | extra)
        return
    for line in plan.describe():
        click.echo(line)
    if verify:
        click.echo("Every file it uses was read: each matches the SHA-256 its manifest records.")
    if discard is not None:
        click.echo(f"In place, this restore would discard: {discard.describe()}.")
        if choice.why:
            click.echo(f"The live logs cannot carry it further: {choice.why}.")
        if not request.explicit_stop:
            click.echo("'restore run --in-place --yes' refuses that unless you add --stop-at-backup.")
    elif request.in_place:
        click.echo("In place, this restore discards no committed transaction.")


@restore_group.command("run")
@_from
@_from_home
@_sg
@_until
@_until_gen
@_live
@_stop_at_backup
@_skip_set
@_set
@click.option("--into-recovery-group", is_flag=True, help='Restore into "Recovery Storage Group" (log base R00).')
@click.option(
    "--in-place",
    is_flag=True,
    help="Replace the storage group's own stores (a running service dismounts and remounts them).",
)
@click.option("--yes", is_flag=True, help="Confirm --in-place: the current store files go to the quarantine folder.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@json_option
@pass_ctx
def run_cmd(
    ctx: CliContext,
    source: str | None,
    until: str | None,
    until_gen: int | None,
    into_recovery_group: bool,
    yes: bool,
    quiet: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Restore: copy the planned files (every hash checked), replay the logs to the target, leave the stores
    in Clean Shutdown. A file found damaged is left out and the restore planned again around it. Running the
    same command again after an interruption finishes the restore."""
    in_place = bool(options["in_place"])
    if into_recovery_group == in_place:
        raise InvalidParameterError("choose where to restore: --into-recovery-group or --in-place --yes")
    if in_place and not yes:
        raise InvalidParameterError(
            "--in-place replaces the storage group's stores (the current files are kept in its quarantine "
            "folder); add --yes to confirm"
        )
    home = ctx.open_home()
    request = _request(home, source, until, until_gen, **options)
    into = INTO_PLACE if in_place else INTO_RECOVERY_GROUP
    service = ctx.service()
    destination: str | None = None
    with _progress(enabled=not (quiet or as_json) and sys.stderr.isatty()) as progress:
        while True:
            choice = choose_plan(home, request)
            _say_before(home, request, choice)
            if service is not None and destination is None:
                # why: the service owns what it mounted; the destination must be dismounted for the restore
                destination = choice.plan.sg if in_place else RECOVERY_SG
                _release(service, destination, quiet or as_json)
            try:
                outcome = run_restore(
                    home, request.target, choice.plan, into=into, progress=progress, other_home=request.from_home
                )
                break
            except BackupSetError as exc:
                bad = damaged_file(exc)
                if bad is None or bad in request.damaged or len(request.damaged) >= MAX_DAMAGED:
                    raise
                request.damaged.add(bad)  # nothing was placed: plan again without it
                click.echo(f"warning: {exc.message}; planning the restore again without it", err=True)
    if service is not None and destination is not None:
        service.post(f"/v1/storage-groups/{quote(destination, safe='')}/mount")
    if as_json:
        discards = choice.discard.to_dict() if choice.discard else None
        print_json({"plan": choice.plan.to_dict(), "discards": discards, "restore": outcome.to_dict()})
    elif not quiet:
        _summary(outcome)
        if service is not None:
            click.echo(f"{destination} is mounted in the Information Store service.")


def _release(service: ServiceClient, sg: str, quiet: bool) -> None:
    """Have the service dismount ``sg`` (every store Clean Shutdown) when it has it mounted."""
    status = service.get("/v1/status")
    if any(g["name"] == sg and g["mounted"] for g in status["storage_groups"]):
        service.post(f"/v1/storage-groups/{quote(sg, safe='')}/dismount")
        if not quiet:
            click.echo(f"{sg} was dismounted in the Information Store service for the restore.", err=True)


def _say_before(home: ServerHome, request: Request, choice: Choice) -> None:
    """Refuse to discard committed data without a stop option; otherwise say what is left out, and whose."""
    if choice.discard is not None:
        if not request.explicit_stop:
            raise refuse_discard(choice)
        click.echo(f"warning: this restore discards {choice.discard.describe()}", err=True)
    for why in choice.plan.ignored:
        click.echo(f"warning: not used: {why}", err=True)
    if choice.plan.home != home.home_id:
        click.echo(
            f"note: restoring backups of home {choice.plan.home}, not of this home ({home.home_id})"
            + (": its data replaces this home's stores" if request.in_place else ""),
            err=True,
        )


@restore_group.command("finish")
@click.option(
    "--sg", required=True, help='The storage group the restore went into ("Recovery Storage Group" or its own).'
)
@json_option
@pass_ctx
def finish_cmd(ctx: CliContext, sg: str, as_json: bool) -> None:
    """Finish a restore that was interrupted while putting its files in place, from its journal alone (the
    backup target is not needed); a restore interrupted before that changed nothing, and its copies are
    removed."""
    home = ctx.open_home()
    outcome = finish_restore(home, sg)
    if as_json:
        print_json({"finished": outcome is not None, "restore": outcome.to_dict() if outcome else None})
    elif outcome is None:
        click.echo(f"The interrupted restore into {sg!r} had not changed it; its copies were removed.")
    else:
        _summary(outcome)


@restore_group.command("abort")
@click.option("--sg", required=True, help="The storage group an interrupted restore in place went into.")
@json_option
@pass_ctx
def abort_cmd(ctx: CliContext, sg: str, as_json: bool) -> None:
    """Undo an interrupted restore in place: put back every file it displaced (the files it had placed go to
    an aborted-restore-<time> folder beside its quarantine) and remove its copies. The backup target is not
    needed. The storage group is then as before the restore."""
    result = abort_restore(ctx.open_home(), sg)
    if as_json:
        print_json(result)
        return
    moved = result["moved_back"]
    assert isinstance(moved, list)
    if moved:
        click.echo(f"Put back {len(moved)} file(s) the restore into {sg!r} had displaced; it is undone.")
    else:
        click.echo(f"The interrupted restore into {sg!r} had not changed it; its copies were removed.")


def _summary(o: RestoreOutcome) -> None:
    where = "in place" if o.into == INTO_PLACE else f"into {o.destination_sg!r}"
    click.echo(f"Restored {', '.join(o.stores)} of {o.source_sg!r} {where}{' (resumed)' if o.resumed else ''}.")
    first, last = o.generations
    replayed = f"generation {first}" if first == last else f"generations {first}-{last}"
    click.echo(f"Replayed {replayed} and stopped {o.stopped}; the stores are in Clean Shutdown at {o.stop}.")
    if o.last_commit:
        click.echo(f"The newest transaction restored was committed at {o.last_commit}.")
    if o.new_log_stream and o.into == INTO_PLACE:
        click.echo(f"The log stream was restarted with a new signature (the old logs are in {o.quarantine}).")
    elif o.quarantine:
        click.echo(f"The files the restore replaced are in {o.quarantine}.")
    if o.into == INTO_PLACE:
        click.echo("Take a full backup now: incremental and differential backups do not continue across a restore.")
    click.echo(f"{o.fetched_bytes:,} bytes fetched in {o.seconds:.1f} s.")


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    if not enabled:
        yield lambda what, done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskID, TextColumn

    with Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        TextColumn("{task.fields[text]}"),
        transient=True,
        console=Console(stderr=True),  # why: the summary and --json own stdout; the bar is for the terminal
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total or 1, text="")
            text = f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB" if what == "fetch" else f"{done}/{total} generations"
            bar.update(tasks[what], completed=done, total=total or 1, text=text)

        yield update


def register(cli: click.Group) -> None:
    cli.add_command(restore_group)
