"""``shadowstore backup verify`` and ``shadowstore backup prune``, added to the ``backup`` group."""

from __future__ import annotations

import click

from shadowstore.backup import catalog
from shadowstore.backup.prune import PruneDecision, apply_prune, plan_prune
from shadowstore.backup.verify import VerifyReport, verify_set
from shadowstore.cli.backup_cmd import resolve_target
from shadowstore.cli.common import CliContext, byte_bars, json_option, pass_ctx, print_json
from shadowstore.errors import BackupSetError, ExitCode, InvalidParameterError


@click.command("verify")
@click.argument("backup_id")
@click.option("--to", help="Backup target [default: backup.target].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
@pass_ctx
def verify(ctx: CliContext, backup_id: str, to: str | None, quiet: bool, as_json: bool) -> int:
    """Re-hash every file of a backup set, check every database page and the log chain.

    Exit code 0 when the set is sound; otherwise 22, naming the first problem (--json: the whole report).
    """
    target = resolve_target(ctx.open_home(), to)
    with byte_bars(enabled=not (quiet or as_json)) as bar:
        report = verify_set(target, backup_id, progress=bar)
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
@click.option("--sg", "sg_name", help="Only this storage group.")
@click.option("--yes", is_flag=True, help="Delete; without it nothing is deleted and the plan is printed.")
@json_option
@pass_ctx
def prune(ctx: CliContext, to: str, keep_full: int, sg_name: str | None, yes: bool, as_json: bool) -> None:
    """Delete old backup sets, keeping the newest N full backups of each storage group and every set that a
    kept set builds on. A dry run unless --yes."""
    if keep_full < 1:
        raise InvalidParameterError(f"--keep-full {keep_full}: keep at least 1 full backup")
    target = resolve_target(ctx.open_home(), to)
    plan = plan_prune(catalog.list_sets(target, sg_name), keep_full)
    if not as_json:
        click.echo(f"{'Pruning' if yes else 'Dry run (nothing is deleted; pass --yes to delete)'}: {target.url}")
        for d in plan.decisions:
            click.echo(f"  {'delete' if d.delete else 'keep':<6}  {d.sg}/{d.backup_id}  {d.reason}")

    def deleted(decision: PruneDecision, files: int) -> None:
        if not as_json:
            click.echo(f"deleted {decision.folder} ({files} files)")

    done = apply_prune(target, plan, on_deleted=deleted) if yes else None
    if as_json:
        deleted_sets = done.deleted if done else []
        print_json({"target": target.url, "dry_run": not yes, **plan.to_dict(), "deleted": deleted_sets})
        return
    verb = "deleted" if yes else "would delete"
    click.echo(f"{verb} {len(plan.to_delete)} set(s), kept {len(plan.to_keep)}")


def register(cli: click.Group) -> None:
    """Add ``verify`` and ``prune`` to the ``backup`` group of ``cli`` (which must be registered already)."""
    group = cli.commands["backup"]
    if not isinstance(group, click.Group):
        raise TypeError("the 'backup' command of the CLI is not a group")
    group.add_command(verify)
    group.add_command(prune)
