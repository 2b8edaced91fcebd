"""``shadowstore doctor [--fix] [--to TARGET] [--dry-run] [--json]``: find what is wrong with a server home
(tools/doctor.py) and apply the support article's cure (tools/doctorfix.py), through the Information Store
service when it runs."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

import click

from shadowstore.backup.report import BackupReport
from shadowstore.backup.run import Progress
from shadowstore.backup.target import Target
from shadowstore.cli.backup_cmd import resolve_target
from shadowstore.cli.common import CliContext, byte_bars, json_option, pass_ctx, print_json
from shadowstore.errors import ExitCode, NoBackupError
from shadowstore.home import ServerHome
from shadowstore.service.client import ServiceClient, segment
from shadowstore.service.remotebackup import back_up_remote
from shadowstore.tools.doctor import ERROR, INFO, WARNING, Diagnosis, Finding, diagnose, owner_gone
from shadowstore.tools.doctorfix import Control, CureResult, DirectControl, cure, doctor_owner
from shadowstore.tools.doctorplan import CurePlan, pending_journals, plan_cure, refusal


@click.command("doctor")
@click.option("--fix", is_flag=True, help="Apply the cure: Clean Shutdown, logs set aside, remount, full backup.")
@click.option("--to", help="Target of the cure's full backup [default: backup.target of the configuration].")
@click.option("--dry-run", is_flag=True, help="Print the findings and the steps --fix would take; change nothing.")
@json_option
@pass_ctx
def doctor(ctx: CliContext, fix: bool, to: str | None, dry_run: bool, as_json: bool) -> int:
    """Inspect the server home: stores not in Clean Shutdown and the logs they need, missing, foreign and
    out-of-sequence logs, a checkpoint that does not match, backup sessions whose owner is gone, leftovers of
    killed jobs, a storage group move that did not finish. Each finding says what is wrong, where, and what to
    do. Exit 0 when healthy, 1 with warnings, 2 with errors.

    With --fix, cure each storage group that needs it the way the Microsoft support article prescribes, as
    one logged, resumable procedure that deletes nothing: dismount, soft recovery to Clean Shutdown, every log
    and the checkpoint into a dated quarantine folder, mount, a new full backup. A store whose logs are missing
    is never made clean without them: doctor stops and says how to get them back or restore; an unfinished
    storage group move stops it too, with the command that finishes the move. Killed, the same command finishes
    the job.

    With --json the output is one document: the findings (with --fix or --dry-run also the plan, and what was
    cured and found after). When --fix refuses a storage group it is the refusal's error document (error, code,
    exit_code, message, hint), carrying those members too."""
    home = ctx.open_home()
    service = ctx.service()
    target = resolve_target(home, to)
    diagnosis = _diagnose(home, service, target)
    if not (fix or dry_run):
        _show(diagnosis, as_json)
        return _exit_code(diagnosis)
    journals = pending_journals(home)
    plan = plan_cure(diagnosis, journals, service=service is not None, target=target.url)
    if dry_run or not plan.steps:
        _show(diagnosis, as_json, plan=plan, dry_run=dry_run)
        return _end(plan, _json(diagnosis, plan, dry_run) if as_json else None, _exit_code(diagnosis))
    if not as_json:
        _print_findings(diagnosis)
        _print_plan(plan, "The cure:")
    with byte_bars(enabled=not as_json) as bar:
        control = _control(home, service, target, plan, lambda f, done, size, _total: bar(f, done, size))
        results = cure(home, plan, journals, control, target=target.url, on_step=_progress(plan, as_json))
    after = _diagnose(ServerHome.open(home.path), service, target)
    if not as_json:
        _print_results(results, after)
        return _end(plan, None, _exit_code(after))
    cured = {"cured": [_result_json(r) for r in results], "after": _findings(after)}
    return _end(plan, {**_json(diagnosis, plan), **cured}, _exit_code(after))


def register(cli: click.Group) -> None:
    cli.add_command(doctor)


# --- finding -----------------------------------------------------------------------------------------------


def _diagnose(home: ServerHome, service: ServiceClient | None, target: Target) -> Diagnosis:
    sessions = service.get("/v1/backup-sessions") if service is not None else None
    return diagnose(home, sessions=sessions, target=target)


def _exit_code(diagnosis: Diagnosis) -> int:
    severities = {f.severity for f in diagnosis.findings}
    if ERROR in severities:
        return int(ExitCode.ERROR)
    return int(ExitCode.WARNING if WARNING in severities else ExitCode.OK)


def _end(plan: CurePlan, document: dict[str, object] | None, exit_code: int) -> int:
    """The end of ``--fix`` or ``--dry-run`` once the others were cured: the error of the first storage group
    the cure refused, if any, or ``exit_code``. As text, the refusal is raised (main() shows it below the report
    printed already). With ``--json`` (``document``, the report) one document is printed: the report, or the
    refusal's error document carrying the report's members (why one: a script reads stdout as one JSON value),
    and the refusal's exit code is returned."""
    error = refusal(plan)
    if document is None:
        if error is not None:
            raise error
        return exit_code
    if error is None:
        print_json(document)
        return exit_code
    refused = error.to_dict()
    print_json({**refused, **{k: v for k, v in document.items() if k not in refused}})
    return int(error.exit_code)


# --- fixing ------------------------------------------------------------------------------------------------


class ServiceControl:
    """The cure's calls to the Information Store service that owns the home (tools/doctorfix.py ``Control``)."""

    via = "through the Information Store service"

    def __init__(
        self,
        client: ServiceClient,
        home: ServerHome,
        target: Target,
        report: Callable[[], BackupReport],
        progress: Progress,
    ) -> None:
        self.client = client
        self.home = home
        self.target = target
        self.report = report
        self.progress = progress

    def _path(self, sg: str, action: str) -> str:
        return f"/v1/storage-groups/{segment(sg)}/{action}"

    def dismount(self, sg: str) -> str:
        self.client.post(self._path(sg, "dismount"))
        return "dismounted by the Information Store service: every store in Clean Shutdown"

    def mount(self, sg: str) -> str:
        status = self.client.post(self._path(sg, "mount"))
        mounted = [s["name"] for s in status.get("stores", []) if s.get("mounted")]
        return f"mounted by the Information Store service ({', '.join(mounted) or 'no store'})"

    def _sessions(self, sg: str) -> list[dict[str, Any]]:
        return [s for s in self.client.get("/v1/backup-sessions") if s.get("sg") == sg]

    def end_orphaned_sessions(self, sg: str) -> list[str]:
        gone = [str(s.get("owner")) for s in self._sessions(sg) if owner_gone(str(s.get("owner", "")))]
        if gone:
            with suppress(NoBackupError):  # why: its lease may have lapsed meanwhile; ended either way
                self.client.post(self._path(sg, "backup/abort"))
        return gone

    def has_session(self, sg: str) -> bool:
        return bool(self._sessions(sg))

    def full_backup(self, sg: str) -> str:
        outcome = back_up_remote(
            self.client,
            self.home,
            sg,
            "full",
            self.target,
            owner=doctor_owner(),
            report=self.report(),
            progress=self.progress,
        )
        return outcome.backup_id


def _control(
    home: ServerHome, service: ServiceClient | None, target: Target, plan: CurePlan, progress: Progress
) -> Control:
    reports: list[BackupReport] = []

    def report() -> BackupReport:  # why lazily: a cure without a backup step writes no backup report
        if not reports:
            reports.append(BackupReport(home.fs, home.path))
            reports[0].started(target.url, "full", [s.sg for s in plan.steps if s.step == "backup"])
        return reports[0]

    if service is not None:
        return ServiceControl(service, home, target, report, progress)
    return DirectControl(home, target, report, progress)


def _progress(plan: CurePlan, quiet: bool) -> Callable[[str, str, str, str], None]:
    """Each step as it starts and ends, on stderr (stdout keeps the summary or the JSON document)."""
    positions = {
        (s.sg, s.step): (i, len(plan.steps_of(s.sg)))
        for s in plan.steps
        for i in [plan.steps_of(s.sg).index(s.step) + 1]
    }

    def show(sg: str, step: str, state: str, text: str) -> None:
        if quiet:
            return
        i, n = positions.get((sg, step), (0, 0))
        if state == "start":
            click.echo(f"[{sg}] step {i}/{n} {step} ...", err=True)
        else:
            click.echo(f"[{sg}] step {i}/{n} {step}: {text}", err=True)

    return show


# --- showing -----------------------------------------------------------------------------------------------


def _findings(diagnosis: Diagnosis) -> list[dict[str, object]]:
    return [f.to_dict() for f in diagnosis.findings]


def _json(diagnosis: Diagnosis, plan: CurePlan | None = None, dry_run: bool = False) -> dict[str, object]:
    data: dict[str, object] = {"home": diagnosis.home, "healthy": diagnosis.healthy, "findings": _findings(diagnosis)}
    if plan is not None:
        data["plan"] = {
            "dry_run": dry_run,
            "steps": [{"sg": s.sg, "step": s.step, "text": s.text} for s in plan.steps],
            "resumed": plan.resumed,
            "refused": [{"sg": sg, "findings": [f.code for f in found]} for sg, found in plan.refused],
        }
    return data


def _show(diagnosis: Diagnosis, as_json: bool, *, plan: CurePlan | None = None, dry_run: bool = False) -> None:
    """The findings (and the plan) as text; with ``as_json`` the findings' document alone, without a plan
    (``_end`` prints the plan's)."""
    if as_json:
        if plan is None:
            print_json(_json(diagnosis))
        return
    _print_findings(diagnosis)
    if plan is None:
        if not diagnosis.healthy:
            fixable = any(f.fixable and f.severity != INFO for f in diagnosis.findings)
            click.echo("Run 'shadowstore doctor --fix --dry-run' to see the cure." if fixable else "")
        return
    if plan.steps:
        _print_plan(plan, "Would do (dry run, nothing changed):" if dry_run else "The cure:")
    elif not plan.refused:
        click.echo("Nothing for doctor --fix to do.")


def _print_findings(diagnosis: Diagnosis) -> None:
    if not diagnosis.findings:
        click.echo(f"{diagnosis.home}: healthy, nothing found.")
        return
    by_group: dict[str | None, list[Finding]] = {}
    for finding in diagnosis.findings:
        by_group.setdefault(finding.sg, []).append(finding)
    for sg, found in by_group.items():
        click.echo(f"{sg or 'Backup target'}:")
        for f in found:
            click.echo(f"  {f.severity} {f.code}: {f.what}")
            click.echo(f"      where: {f.where}")
            click.echo(f"      do:    {f.hint}")
    counts = {s: sum(1 for f in diagnosis.findings if f.severity == s) for s in (ERROR, WARNING, INFO)}
    summary = ", ".join(f"{n} {s}(s)" for s, n in counts.items() if n)
    click.echo(f"{summary}; " + ("healthy." if diagnosis.healthy else "not healthy."))


def _print_plan(plan: CurePlan, title: str) -> None:
    click.echo(title)
    for sg in plan.groups:
        resumed = " (finishing an interrupted cure)" if sg in plan.resumed else ""
        click.echo(f"  {sg}{resumed}:")
        for i, step in enumerate(s for s in plan.steps if s.sg == sg):
            click.echo(f"    {i + 1}. {step.step}: {step.text}")
    for sg, found in plan.refused:
        click.echo(f"  {sg}: refused, {', '.join(f.code for f in found)} (see above)")


def _print_results(results: list[CureResult], after: Diagnosis) -> None:
    for result in results:
        click.echo(f"Cured {result.sg!r}" + (" (finished an interrupted cure)" if result.resumed else "") + ".")
        for folder in result.quarantine:
            click.echo(f"  set aside in: {folder}")
        if result.backup_id:
            click.echo(f"  full backup: {result.backup_id}")
    click.echo("Now:")
    _print_findings(after)


def _result_json(result: CureResult) -> dict[str, object]:
    return {
        "sg": result.sg,
        "resumed": result.resumed,
        "steps": [{"step": s, "detail": d} for s, d in result.steps],
        "quarantine": result.quarantine,
        "backup_id": result.backup_id,
    }
