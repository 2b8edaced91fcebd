"""``shadowstore backup run|status|abort|list|show|verify|prune``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal
from urllib.parse import quote

import click

from shadowstore.backup import catalog
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.pace import AUTO, READ_SECONDS, AdaptivePace, Pace, pace_of, pace_target, parse_max_rate
from shadowstore.backup.report import BackupReport
from shadowstore.backup.run import BackupOutcome, Progress, back_up, default_owner
from shadowstore.backup.sessions import request_abort, running_sessions
from shadowstore.backup.setfiles import DEFAULT_ZSTD_LEVEL
from shadowstore.backup.snapshotrun import back_up_snapshot, freeze_seconds
from shadowstore.backup.target import Target, open_target
from shadowstore.backup.targetcheck import check_readable
from shadowstore.cli.common import CliContext, byte_bars, json_option, pass_ctx, print_json, table
from shadowstore.config import CONFIG_NAME, RECOVERY_SG
from shadowstore.errors import ExitCode, InvalidParameterError, ShadowStoreError
from shadowstore.home import ServerHome
from shadowstore.service.client import ServiceClient
from shadowstore.service.remotebackup import back_up_remote
from shadowstore.service.remotewriter import RemoteStoreWriter
from shadowstore.service.sharedwaits import open_shared
from shadowstore.vss.hookwriter import hook_writers


def resolve_target(home: ServerHome, to: str | None) -> Target:
    """``--to`` (a relative path is taken from the current directory), else ``backup.target`` of the home's
    configuration (a relative path there is inside the home)."""
    if to is not None:
        if not to.strip():
            # why refuse: an empty path would be the current directory, where nobody looks for backups
            raise InvalidParameterError("--to is empty", hint="give a directory or an s3://bucket/prefix URL")
        return open_target(_lasting(to, "--to") if "://" in to else os.path.abspath(to))
    return configured_target(home, str(home.config.settings.get("backup", {}).get("target", "backups")))


def _lasting(url: str, where: str) -> str:
    """``url``, refused when it names a target that ends with this program: a ``memory://`` target lives in one
    process's memory, so a backup there from the command line is gone when the command exits, and a full or
    incremental one would still have truncated the logs it copied."""
    if url.split("://", 1)[0].lower() == "memory":
        raise InvalidParameterError(
            f"{where} {url!r}: a memory:// target is gone when this command exits, with the backup in it",
            hint="give a directory or an s3://bucket/prefix URL",
        )
    return url


def readable_target(home: ServerHome, to: str | None, option: str = "--to") -> Target:
    """The target to read backup sets from (``resolve_target``), checked to exist: raises TargetNotFoundError
    (exit code 24) for a folder that does not exist or is a file, or an S3 bucket that does not exist, naming
    ``option`` or the setting it came from. The configured target inside the home is the exception while it
    does not exist: the first backup creates it, and until then it holds no sets."""
    target = resolve_target(home, to)
    if to is None and isinstance(target, LocalTarget) and not os.path.lexists(target.url):
        inside = os.path.relpath(target.url, home.path)
        if not inside.startswith(".."):
            return target
    check_readable(target, where=option if to is not None else f"backup.target in {CONFIG_NAME}")
    return target


def configured_target(home: ServerHome, url: str) -> Target:
    """The target a ``backup.target`` setting of ``url`` names: a relative path is inside the home."""
    if "://" not in url and not url.startswith("/"):
        url = os.path.join(home.path, url)
    return open_target(_lasting(url, f"backup.target in {CONFIG_NAME}"))


def configured_rate(home: ServerHome, option: str | None, method: str) -> float | Literal["auto"] | None:
    """Bytes per second the copy may take (``--max-rate``, else ``backup.max_rate``), None for no limit, or
    ``auto``: what a shadow copy does by default. It holds nothing while it is copied, so it can yield to
    commits; a streaming backup holds its session (no shadow copy of the group meanwhile) and goes at full speed."""
    if option is not None:
        return parse_max_rate(option, "--max-rate")
    value = home.config.settings.get("backup", {}).get("max_rate")
    if value is None:
        return AUTO if method == "snapshot" else None
    return parse_max_rate(value, "backup.max_rate")


def commit_waits(ctx: CliContext, home: ServerHome) -> Callable[[], list[int]]:
    """What an adaptive pace reads: the waits of the service's commits when it runs (mapped when the service
    shares them, service/sharedwaits.py; else one request per reading), otherwise this process's."""
    service = ctx.service()
    if service is None:
        return home.flush_waits.reading
    path = service.health().get("flush_waits")
    mapped = open_shared(path) if isinstance(path, str) else None
    return mapped or (lambda: _requested_waits(service))


def _requested_waits(service: ServiceClient) -> list[int]:
    # why bounded: the copy waits for each reading, and a service that stopped answering must not hold it
    answer = service.request("GET", "/v1/flush-waits", timeout=READ_SECONDS).json()
    return [int(count) for count in [*answer["buckets"], *answer["quiet"]]]


def parse_compress(value: str | None) -> int | None:
    """``zstd`` or ``zstd:LEVEL`` (1-22) -> level; None -> no compression."""
    if value is None:
        return None
    name, _, level = value.partition(":")
    if name != "zstd":
        raise InvalidParameterError(f"--compress {value!r}: only zstd is supported (zstd or zstd:LEVEL)")
    if not level:
        return DEFAULT_ZSTD_LEVEL
    if not level.isdigit() or not 1 <= int(level) <= 22:
        raise InvalidParameterError(f"--compress {value!r}: the zstd level is 1-22")
    return int(level)


@click.group("backup")
def backup_group() -> None:
    """Online streaming backups: run them, watch them, list, verify and prune backup sets."""


@backup_group.command("run")
@click.option("--sg", "sg_names", multiple=True, help="Storage group to back up (repeatable).")
@click.option("--all", "all_groups", is_flag=True, help="Back up every storage group.")
@click.option(
    "--kind", type=click.Choice(["full", "incremental", "differential", "copy"]), required=True, help="Backup kind."
)
@click.option("--to", help="Backup target: a directory, memory://... or s3://bucket/prefix [default: backup.target].")
@click.option("--compress", help="zstd or zstd:LEVEL (1-22); default: no compression.")
@click.option(
    "--method",
    type=click.Choice(["streaming", "snapshot"]),
    default="streaming",
    show_default=True,
    help="streaming: copy through a backup session; snapshot: a shadow copy (writers freeze, a provider copies).",
)
@click.option(
    "--provider",
    type=click.Choice(["auto", "btrfs", "reflink", "copy"]),
    help="With --method snapshot: which provider makes the shadow copy (auto says which it picked) [default: auto].",
)
@click.option(
    "--max-rate",
    "max_rate",
    help="Copy at most this many MB per second (decimal MB), leaving the disks to the stores; 0: no limit; auto: "
    "slow down while commits wait longer [default: backup.max_rate, else auto for snapshot, 0 for streaming].",
)
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@json_option
@pass_ctx
def run(
    ctx: CliContext,
    sg_names: tuple[str, ...],
    all_groups: bool,
    kind: str,
    to: str | None,
    compress: str | None,
    method: str,
    provider: str | None,
    max_rate: str | None,
    quiet: bool,
    as_json: bool,
) -> int:
    """Back up storage groups while they stay online; truncate logs after full and incremental backups.

    A storage group that fails stops no other; each failure is named, and the exit code is the first's."""
    home = ctx.open_home()
    if all_groups == bool(sg_names):
        raise InvalidParameterError("name the storage groups with --sg NAME, or pass --all (one of the two)")
    if provider is not None and method != "snapshot":
        raise InvalidParameterError(
            f"--provider {provider} chooses how a shadow copy is made, and this is a {method} backup",
            hint="add --method snapshot, or leave --provider out",
        )
    groups = [g.name for g in home.config.storage_groups] if all_groups else list(sg_names)
    if all_groups and RECOVERY_SG in groups:
        # why: it holds restored data to look at, not the server's own; a nightly --all must not fail on it
        groups.remove(RECOVERY_SG)
        if not as_json:
            click.echo(f"note: {RECOVERY_SG!r} is not in --all (name it with --sg to back it up)", err=True)
    for name in groups:
        home.config.find(name)
    level = parse_compress(compress)
    rate = configured_rate(home, max_rate, method)
    pace = AdaptivePace(commit_waits(ctx, home)) if isinstance(rate, str) else pace_of(rate)
    target = resolve_target(home, to)
    report = BackupReport(home.fs, home.path)
    report.started(target.url, kind, groups)
    if pace is not None:
        pace_target(target)
    outcomes: list[BackupOutcome] = []
    failures: list[tuple[str, ShadowStoreError]] = []  # why a list: with --all, one failure stops no other group
    snapshot: dict[str, object] | None = None
    with byte_bars(enabled=not (quiet or as_json)) as bar:

        def progress(file: str, done: int, size: int | None, _total: int) -> None:
            bar(file, done, size)

        if method == "snapshot":
            snapshot = _snapshot_job(
                ctx, home, groups, kind, target, provider or "auto", level, report, progress, outcomes, failures, pace
            )
        else:
            _streaming(ctx, home, groups, kind, target, level, report, progress, outcomes, failures, pace)
    if pace is not None:
        report.note(pace.describe())
    report.finished(
        sum(len(o.files) for o in outcomes), sum(o.bytes for o in outcomes), sum(o.seconds for o in outcomes)
    )
    if as_json:  # one document, failures included, so that a script can always parse stdout
        print_json(
            {
                "report": report.path,
                "target": target.url,
                "backups": [o.to_dict() for o in outcomes],
                "failed": [{"sg": name} | error.to_dict() for name, error in failures],
                **({"snapshot": snapshot} if snapshot is not None else {}),
                **({"pace": pace.to_dict()} if pace is not None else {}),
            }
        )
        return int(failures[0][1].exit_code) if failures else int(ExitCode.OK)
    if not quiet:
        if snapshot is not None:
            click.echo(
                f"shadow copy by {snapshot['provider']} ({snapshot['why']}); commits held "
                f"{snapshot['freeze_seconds']:.3f} s, provider commit {snapshot['commit_seconds']:.3f} s"
            )
        for o in outcomes:
            _summary(o)
        if pace is not None:
            click.echo(pace.describe())
        click.echo(f"report: {report.path}")
    if len(failures) == 1:
        raise failures[0][1]
    for name, error in failures:
        click.echo(f"error: {name}: {error}", err=True)
        if error.hint:
            click.echo(f"hint: {error.hint}", err=True)
    return int(failures[0][1].exit_code) if failures else int(ExitCode.OK)


def _streaming(
    ctx: CliContext,
    home: ServerHome,
    groups: list[str],
    kind: str,
    target: Target,
    level: int | None,
    report: BackupReport,
    progress: Progress,
    outcomes: list[BackupOutcome],
    failures: list[tuple[str, ShadowStoreError]],
    pace: Pace | None,
) -> None:
    """One streaming backup per group, through the service when it runs; a failure stops no other group."""
    service = ctx.service()
    for name in groups:
        try:
            if service is not None:
                outcomes.append(
                    back_up_remote(
                        service, home, name, kind, target, level=level, report=report, progress=progress, pace=pace
                    )
                )
            else:
                outcomes.append(
                    back_up(home, name, kind, target, level=level, report=report, progress=progress, pace=pace)
                )
        except ShadowStoreError as exc:
            failures.append((name, exc))


def _snapshot_job(
    ctx: CliContext,
    home: ServerHome,
    groups: list[str],
    kind: str,
    target: Target,
    provider: str,
    level: int | None,
    report: BackupReport,
    progress: Progress,
    outcomes: list[BackupOutcome],
    failures: list[tuple[str, ShadowStoreError]],
    pace: Pace | None,
) -> dict[str, object]:
    """One shadow-copy job over ``groups`` (backup/snapshotrun.py): its outcomes and failures go into the lists
    given; returns the job's facts."""
    service = ctx.service()
    remote = RemoteStoreWriter(service, default_owner()) if service is not None else None
    hooks = tuple(hook_writers(home.config.settings)) if service is None else ()  # why: the service hosts them
    run = back_up_snapshot(
        home, groups, kind, target, provider=provider, level=level, report=report, progress=progress,
        freeze_seconds=freeze_seconds(home.config.settings), store_writer=remote, writers=hooks, pace=pace,
    )  # fmt: skip
    job = run.job
    assert job is not None
    outcomes.extend(run.outcomes)
    failures.extend(run.failures)
    return {
        "provider": run.provider,
        "why": run.why,
        "snapshot_id": job.snapshot_id,
        "freeze_seconds": round(job.freeze_seconds, 6),
        "commit_seconds": round(job.commit_seconds, 6),
        "swept": run.swept,
    }


def _summary(o: BackupOutcome) -> None:
    click.echo(
        f"{o.sg}: {o.kind} backup {o.backup_id}: {len(o.files)} files, {o.bytes:,} bytes "
        f"({o.stored_bytes:,} stored) in {o.seconds:.1f} s"
    )
    if o.left_out:
        names = ", ".join(o.left_out)
        click.echo(f"  not in this set, not mounted: {names}; mount them and take a full backup to cover them")
    done = o.completion
    if done and done.truncated:
        click.echo(f"  truncated {len(done.truncated)} log file(s): generations {_gens(done.truncated)}")
    if done and done.missing:
        click.echo(
            f"  {len(done.missing)} log file(s) to truncate were already missing, which is not an error "
            f"(event 227): generations {_gens(done.missing)}"
        )


def _gens(generations: list[int]) -> str:
    """``4-9`` for a contiguous run, else the numbers (the first ten)."""
    ordered = sorted(generations)
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 1:
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(map(str, ordered[:10])) + (f" and {len(ordered) - 10} more" if len(ordered) > 10 else "")


@backup_group.command("status")
@json_option
@pass_ctx
def status(ctx: CliContext, as_json: bool) -> None:
    """Show running backup sessions (owner, kind, start, lease, bytes so far)."""
    service = ctx.service()
    if service is not None:
        sessions = [{**s, "alive": True} for s in service.get("/v1/backup-sessions")]
    else:
        sessions = running_sessions(ctx.open_home())
    if as_json:
        print_json(sessions)
        return
    if not sessions:
        click.echo("No backup session is running.")
    for s in sessions:
        state = "running" if s["alive"] else "STALE (its owner is gone; nothing holds the storage group)"
        click.echo(f"{s['sg']}: {s['kind']} backup, {state}")
        click.echo(f"  owner:   {s['owner']}")
        click.echo(f"  started: {s['started']}    lease: {s['lease_expires'] or 'none (ends with its process)'}")
        click.echo(f"  bytes:   {s['bytes']:,}")


@backup_group.command("abort")
@click.option("--sg", "sg_name", required=True, help="Storage group whose backup session to end.")
@json_option
@pass_ctx
def abort(ctx: CliContext, sg_name: str, as_json: bool) -> None:
    """End the backup session of a storage group (the owner stops within a second; event 215)."""
    service = ctx.service()
    if service is not None:
        result = service.post(f"/v1/storage-groups/{quote(sg_name, safe='')}/backup/abort")
    else:
        result = request_abort(ctx.open_home(), sg_name)
    if as_json:
        print_json(result)
    else:
        click.echo(result["message"])


@backup_group.command("list")
@click.option("--to", help="Backup target [default: backup.target].")
@click.option("--home-id", "home_id", help="Only the sets of this home id ('this': this home) [default: every home].")
@click.option("--sg", "sg_name", help="Only this storage group.")
@json_option
@pass_ctx
def list_sets(ctx: CliContext, to: str | None, home_id: str | None, sg_name: str | None, as_json: bool) -> None:
    """List the backup sets in a target by home and storage group, oldest first, with each set's state:
    complete, damaged (a file missing or resized), running, incomplete or unreadable. Only complete sets are
    used."""
    home = ctx.open_home()
    target = readable_target(home, to)
    owner = home.home_id if home_id == "this" else home_id
    sets = [s for s in catalog.list_sets(target, home=owner) if sg_name is None or s.sg == sg_name]
    if as_json:
        print_json([s.to_dict() for s in sets])
        return
    if not sets:
        click.echo(f"no backup sets in {target.url}" + (f" for {sg_name!r}" if sg_name else ""))
        return
    rows = []
    for s in sets:
        d = s.to_dict()
        logs = f"{d['first_gen']}-{d['last_gen']}" if s.complete else "-"
        size = f"{d['bytes']:,}" if s.complete else "-"
        note = "" if s.whole else s.why_not_usable()
        mine = " (this home)" if s.home == home.home_id else ""
        rows.append([s.home + mine, s.sg, s.backup_id, s.kind, s.stream or "-", logs, size, s.state, note])
    header = ["HOME", "STORAGE GROUP", "ID", "KIND", "STREAM", "LOGS", "BYTES", "STATE", ""]
    for line in table(header, rows, right=frozenset({6})):
        click.echo(line)


@backup_group.command("show")
@click.argument("backup_id")
@click.option("--to", help="Backup target [default: backup.target].")
@click.option("--home-id", "home_id", help="The home the set belongs to (needed only if several have this id).")
@json_option
@pass_ctx
def show(ctx: CliContext, backup_id: str, to: str | None, home_id: str | None, as_json: bool) -> None:
    """Show one backup set: its manifest, or why it is incomplete."""
    home = ctx.open_home()
    info = catalog.find_set(readable_target(home, to), backup_id, home=home_id)
    if as_json:
        from dataclasses import asdict

        print_json({**info.to_dict(), "manifest": asdict(info.manifest) if info.manifest else None})
        return
    d = info.to_dict()
    click.echo(f"Backup set {info.backup_id} of {info.sg!r}, home {info.home}: {info.kind}, {info.state}")
    if not info.whole:
        click.echo(f"  {info.why_not_usable()}")
    if info.manifest is None:
        return
    m = info.manifest
    click.echo(f"  server {m.server}, log stream {info.stream} ({m.log_base})")
    click.echo(f"  started {m.started}, ended {m.ended}, based on {m.based_on or '-'}")
    click.echo(
        f"  logs {m.first_gen}-{m.last_gen}, {d['files']} files, {d['bytes']:,} bytes ({d['stored_bytes']:,} stored)"
    )
    for f in m.files:
        click.echo(f"  {f.role:<4} {f.name:<22} {f.size:>14,}  sha256 {f.sha256[:16]}...")


def register(cli: click.Group) -> None:
    cli.add_command(backup_group)
