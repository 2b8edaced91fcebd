"""``shadowstore backup verify`` and ``shadowstore backup prune``, added to the ``backup`` group."""

from __future__ import annotations

import re

import click

from shadowstore.backup import catalog
from shadowstore.backup.layout import set_folder
from shadowstore.backup.prune import PruneDecision, apply_prune, plan_prune
from shadowstore.backup.target import Target
from shadowstore.backup.verified import read_verification, record_verification
from shadowstore.backup.verify import VerifyReport, verify_set
from shadowstore.cli.backup_cmd import readable_target
from shadowstore.cli.common import CliContext, byte_bars, json_option, pass_ctx, print_json
from shadowstore.errors import BackupSetError, BackupTargetError, ExitCode, InvalidParameterError
from shadowstore.format.common import now_us

AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_AGE = 100 * 365 * 86400  # seconds; why: an age beyond a century is a typo (and 1e999 would be infinite)


@click.command("verify")
@click.argument("backup_id")
@click.option("--to", help="Backup target [default: backup.target].")
@click.option("--home-id", "home_id", help="The home the set belongs to (needed only if several have this id).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--no-record", is_flag=True, help="Write nothing into the target (by default verified.json is written).")
@json_option
@pass_ctx
def verify(
    ctx: CliContext, backup_id: str, to: str | None, home_id: str | None, quiet: bool, no_record: bool, as_json: bool
) -> int:
    """Re-hash every file of a backup set, check every database page and the log chain, and (unless
    --no-record) record the outcome in the set as verified.json, which 'backup prune --verified-within' reads.

    Exit code 0 when the set is sound; otherwise 22, naming the first problem (--json: the whole report).
    """
    target = readable_target(ctx.open_home(), to)
    with byte_bars(enabled=not (quiet or as_json)) as bar:
        report = verify_set(target, backup_id, home=home_id, progress=bar)
    if not no_record and report.home:
        _record(target, report)
    if as_json:
        print_json(report.to_dict())
        return int(ExitCode.OK if report.ok else BackupSetError.exit_code)
    for line in _summary(report):
        click.echo(line)
    if not report.ok:
        first = report.errors[0]
        raise BackupSetError(
            f"backup set {backup_id} failed verification ({len(report.errors)} error(s)); first: {first}",
            file=first.file or "",
        )
    return int(ExitCode.OK)


def _record(target: Target, report: VerifyReport) -> None:
    """Write verified.json; a target that refuses it (read-only credentials) is worth a warning, not a failure."""
    if any(p.kind in ("incomplete", "manifest") for p in report.errors):
        return  # why: a set without a usable manifest is never used; there is nothing to vouch for
    try:
        record_verification(target, set_folder(report.home, report.sg, report.backup_id), report.ok, len(report.errors))
    except BackupTargetError as exc:
        click.echo(f"warning: the outcome could not be recorded in the set: {exc.message}", err=True)


def _summary(report: VerifyReport) -> list[str]:
    lines = [f"Backup set {report.backup_id} of {report.sg!r} ({report.kind}) in {report.target}"]
    for p in report.problems:
        lines.append(f"  {p.severity}: [{p.kind}] {p}")
    parts = [f"{report.logs} log generation{'' if report.logs == 1 else 's'}"]
    if report.pages:
        parts.insert(0, f"{report.pages:,} database pages, {report.free_pages:,} of them free")
    detail = "; ".join(parts)
    state = "OK" if report.ok else f"{len(report.errors)} error(s)"
    lines.append(f"verified {report.files} files, {report.bytes:,} bytes ({detail}): {state}")
    return lines


@click.command("prune")
@click.option("--to", required=True, help="Backup target to prune (required: pruning deletes sets).")
@click.option("--keep-full", "keep_full", type=int, required=True, help="Full backups to keep per storage group.")
@click.option("--home-id", "home_id", help="Only this home's sets ('this': this home) [default: every home's].")
@click.option("--sg", "sg_name", help="Only this storage group.")
@click.option(
    "--verified-within",
    help="Count only fulls that 'backup verify' passed within this age (seconds, or with s/m/h/d: 7d).",
)
@click.option("--yes", is_flag=True, help="Delete; without it nothing is deleted and the plan is printed.")
@json_option
@pass_ctx
def prune(
    ctx: CliContext,
    to: str,
    keep_full: int,
    home_id: str | None,
    sg_name: str | None,
    verified_within: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete old backup sets, keeping for each home and storage group the newest N whole full backups and
    every set that a kept set or a running backup builds on; sets that backups are still writing are never
    deleted. A dry run unless --yes."""
    if keep_full < 1:
        raise InvalidParameterError(f"--keep-full {keep_full}: keep at least 1 full backup")
    within = None if verified_within is None else parse_age(verified_within, "--verified-within")
    home = ctx.open_home()
    target = readable_target(home, to)
    owner = home.home_id if home_id == "this" else home_id
    sets = [s for s in catalog.list_sets(target, home=owner) if sg_name is None or s.sg == sg_name]
    proven = None if within is None else _proven(target, sets, within)
    plan = plan_prune(sets, keep_full, proven=proven)
    if not as_json:
        click.echo(f"{'Pruning' if yes else 'Dry run (nothing is deleted; pass --yes to delete)'}: {target.url}")
        for d in plan.decisions:
            click.echo(f"  {'delete' if d.delete else 'keep':<6}  {d.folder}  {d.reason}")

    def deleted(decision: PruneDecision, files: int) -> None:
        if not as_json:
            click.echo(f"deleted {decision.folder} ({files} files)")

    done = apply_prune(target, plan, on_deleted=deleted) if yes else None
    skipped = done.skipped if done else []
    if as_json:
        deleted_sets = done.deleted if done else []
        print_json(
            {"target": target.url, "dry_run": not yes, **plan.to_dict(), "deleted": deleted_sets, "skipped": skipped}
        )
        return
    for folder in skipped:
        click.echo(f"left {folder}: it changed since the plan was made (a backup is writing it)")
    verb = "deleted" if yes else "would delete"
    count = len(plan.to_delete) - len(skipped)
    click.echo(f"{verb} {count} set(s), kept {len(plan.to_keep) + len(skipped)}")


def parse_age(text: str, option: str) -> float:
    """``3600``, ``90m``, ``12h``, ``7d`` (the value of ``option``) -> seconds, more than 0 and at most
    MAX_AGE. Raises InvalidParameterError naming ``option``."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", text, re.IGNORECASE)
    seconds = float(match[1]) * AGE_UNITS[match[2].lower()] if match else 0.0
    if not 0 < seconds <= MAX_AGE:
        raise InvalidParameterError(
            f"{option} {text!r} is not an age of more than 0 seconds and at most 100 years",
            hint="give seconds, or a number with s, m, h or d: 3600, 90m, 12h, 7d",
        )
    return seconds


def _proven(target: Target, sets: list[catalog.SetInfo], within: float) -> set[str]:
    """Folders of the whole fulls whose recorded verification passed within ``within`` seconds."""
    since = now_us() - int(within * 1_000_000)
    proven = set()
    for s in sets:
        if s.kind == "full" and s.whole:
            done = read_verification(target, s.folder)
            if done is not None and done.ok and done.at_us >= since:
                proven.add(s.folder)
    return proven


def register(cli: click.Group) -> None:
    """Add ``verify`` and ``prune`` to the ``backup`` group of ``cli`` (which must be registered already)."""
    group = cli.commands["backup"]
    if not isinstance(group, click.Group):
        raise TypeError("the 'backup' command of the CLI is not a group")
    group.add_command(verify)
    group.add_command(prune)
