"""``shadowstore restore plan|run``."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from shadowstore.backup import catalog
from shadowstore.cli.backup_cmd import resolve_target
from shadowstore.cli.common import CliContext, json_option, pass_ctx, print_json
from shadowstore.errors import InvalidParameterError, NoRestorableBackupError, NotFoundError, RestoreError
from shadowstore.home import ServerHome
from shadowstore.restore.discard import Discard, in_place_discards, live_logs, quarantine_root
from shadowstore.restore.plan import RestorePlan, RestoreTarget, plan_restore
from shadowstore.restore.run import (
    INTO_PLACE,
    INTO_RECOVERY_GROUP,
    Progress,
    RestoreOutcome,
    finish_restore,
    run_restore,
)


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


def _plan(
    home: ServerHome, source: str | None, from_home: str | None, sg: str | None, target: RestoreTarget, live: bool
) -> RestorePlan:
    """The plan from the sets of this home, or of ``from_home`` when it is named."""
    where = resolve_target(home, source)
    owner = from_home or home.home_id
    if from_home is not None and from_home != home.home_id and live:
        raise InvalidParameterError(
            f"--roll-forward-live continues with this home's live logs, which are not of home {from_home}'s stream"
        )
    sets = catalog.list_sets(where, sg, home=owner, unfinished_writes=False)
    if not sets:
        others = [h for h in catalog.homes_in(where) if h != owner]
        if others:
            raise NoRestorableBackupError(
                f"{where.url} holds no backup of {f'{sg!r} of ' if sg else ''}home {owner}; it holds backups of "
                f"home{'s' if len(others) > 1 else ''} {', '.join(others)}",
                hint=f"to restore another home's backup into the recovery storage group: --from-home {others[0]} "
                "--into-recovery-group",
            )
    return plan_restore(sets, target, sg=sg, roll_forward_live=live)


def _plan_for(
    home: ServerHome,
    source: str | None,
    from_home: str | None,
    sg: str | None,
    target: RestoreTarget,
    live: bool,
    in_place: bool,
    stop_at_backup: bool,
) -> tuple[RestorePlan, Discard | None, str | None]:
    """The plan, and for a restore in place what it would discard and why the live logs cannot prevent it.

    In place, the plan rolls forward through the live logs that continue the backups' stream unless told to
    stop (--stop-at-backup, --until, --until-gen): ESE's hard recovery keeps what the logs hold, and so does
    this. When the live logs cannot continue the backups, the plan stops at the backups and says so."""
    if stop_at_backup and live:
        raise InvalidParameterError("--stop-at-backup and --roll-forward-live contradict each other: choose one")
    own = from_home is None or from_home == home.home_id
    plan = _plan(home, source, from_home, sg, target, live or (in_place and own and not stop_at_backup))
    if not in_place:
        return plan, None, None
    try:
        config = home.config.find(plan.sg).resolved(home.path)
    except NotFoundError:
        return plan, None, None  # the restore itself refuses, naming the recovery storage group
    why = live_logs(home.fs, config).continues(plan) if plan.live_from is not None else None
    if why is not None and not live:
        plan = _plan(home, source, from_home, sg, target, False)
    return plan, in_place_discards(home.fs, config, plan, quarantine_root(config)), why


def _refuse_discard(plan: RestorePlan, discard: Discard, why: str | None) -> RestoreError:
    reason = f" ({why})" if why else ""
    return RestoreError(
        f"restoring {plan.sg!r} in place {plan.target.describe()} would discard committed data{reason}: "
        f"{discard.describe()}",
        hint="to restore anyway, add --stop-at-backup (or --until / --until-gen): nothing is deleted, the live "
        "files go to the quarantine folder; or restore into the recovery storage group first to look",
    )


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
    is_flag=True,
    help="Continue with the live storage group's newer logs after the backups (the default in place).",
)
_stop_at_backup = click.option(
    "--stop-at-backup",
    is_flag=True,
    help="In place: stop at the end of the backups, discarding newer transactions of the live logs.",
)


@restore_group.command("plan")
@_from
@_from_home
@_sg
@_until
@_until_gen
@_live
@_stop_at_backup
@click.option("--in-place", is_flag=True, help="Plan a restore in place: also say what it would discard.")
@json_option
@pass_ctx
def plan_cmd(
    ctx: CliContext,
    source: str | None,
    from_home: str | None,
    sg: str | None,
    until: str | None,
    until_gen: int | None,
    roll_forward_live: bool,
    stop_at_backup: bool,
    in_place: bool,
    as_json: bool,
) -> None:
    """Show which backup sets and logs a restore would use and, with --in-place, what it would discard
    (nothing is changed: this is the dry run)."""
    home = ctx.open_home()
    target = _target_of(until, until_gen)
    plan, discard, why = _plan_for(
        home, source, from_home, sg, target, roll_forward_live, in_place, stop_at_backup
    )  # fmt: skip
    explicit = stop_at_backup or until is not None or until_gen is not None
    if as_json:
        print_json(plan.to_dict() | {"discards": discard.to_dict() if discard else None})
        return
    for line in plan.describe():
        click.echo(line)
    if discard is not None:
        click.echo(f"In place, this restore would discard: {discard.describe()}.")
        if why:
            click.echo(f"The live logs cannot carry it further: {why}.")
        if not explicit:
            click.echo("'restore run --in-place --yes' refuses that unless you add --stop-at-backup.")
    elif in_place:
        click.echo("In place, this restore discards no committed transaction.")


@restore_group.command("run")
@_from
@_from_home
@_sg
@_until
@_until_gen
@_live
@_stop_at_backup
@click.option("--into-recovery-group", is_flag=True, help='Restore into "Recovery Storage Group" (log base R00).')
@click.option("--in-place", is_flag=True, help="Replace the storage group's own stores (they must be dismounted).")
@click.option("--yes", is_flag=True, help="Confirm --in-place: the current store files go to the quarantine folder.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@json_option
@pass_ctx
def run_cmd(
    ctx: CliContext,
    source: str | None,
    from_home: str | None,
    sg: str | None,
    until: str | None,
    until_gen: int | None,
    roll_forward_live: bool,
    stop_at_backup: bool,
    into_recovery_group: bool,
    in_place: bool,
    yes: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Restore: copy the planned files (every hash checked), replay the logs to the target, leave the stores
    in Clean Shutdown. Running the same command again after an interruption finishes the restore."""
    if into_recovery_group == in_place:
        raise InvalidParameterError("choose where to restore: --into-recovery-group or --in-place --yes")
    if in_place and not yes:
        raise InvalidParameterError(
            "--in-place replaces the storage group's stores (the current files are kept in its quarantine "
            "folder); add --yes to confirm"
        )
    home = ctx.open_home()
    plan, discard, why = _plan_for(
        home, source, from_home, sg, _target_of(until, until_gen), roll_forward_live, in_place, stop_at_backup
    )
    if discard is not None:
        if not (stop_at_backup or until is not None or until_gen is not None):
            raise _refuse_discard(plan, discard, why)
        click.echo(f"warning: this restore discards {discard.describe()}", err=True)
    target = resolve_target(home, source)
    into = INTO_PLACE if in_place else INTO_RECOVERY_GROUP
    for why in plan.ignored:
        click.echo(f"warning: not used: {why}", err=True)
    if plan.home != home.home_id:
        click.echo(
            f"note: restoring backups of home {plan.home}, not of this home ({home.home_id})"
            + (": its data replaces this home's stores" if in_place else ""),
            err=True,
        )
    with _progress(enabled=not (quiet or as_json) and sys.stderr.isatty()) as progress:
        outcome = run_restore(home, target, plan, into=into, progress=progress, other_home=from_home)
    if as_json:
        discards = discard.to_dict() if discard else None
        print_json({"plan": plan.to_dict(), "discards": discards, "restore": outcome.to_dict()})
    elif not quiet:
        _summary(outcome)


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
