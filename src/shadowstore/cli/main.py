"""The ``shadowstore`` command: one group, one module per command group, one place that maps errors to exit
codes (0 ok, 1 warning, 2 error, 3-99 specific errors; see shadowstore.errors.ExitCode)."""

from __future__ import annotations

import json
import sys
import traceback

import click

from shadowstore.cli import (
    backup_checks_cmd,
    backup_cmd,
    config_cmd,
    eseutil_cmd,
    events_cmd,
    home_cmd,
    restore_cmd,
    sg_cmd,
    workload_cmd,
)
from shadowstore.cli.common import CliContext
from shadowstore.errors import ExitCode, ShadowStoreError
from shadowstore.home import default_home


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False),
    default=None,
    help="Server home directory [default: $SHADOWSTORE_HOME, else ~/.local/share/shadowstore].",
)
@click.version_option(package_name="shadowstore")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """ShadowStore: storage groups, transaction logs and backups that cannot wedge."""
    ctx.obj = CliContext(home or default_home())


for module in (
    home_cmd,
    sg_cmd,
    backup_cmd,
    backup_checks_cmd,
    restore_cmd,
    config_cmd,
    events_cmd,
    eseutil_cmd,
    workload_cmd,
):
    module.register(cli)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises, except SystemExit from Python itself)."""
    try:
        result = cli.main(args=argv, prog_name="shadowstore", standalone_mode=False)
        code = int(result) if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        code = ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = ExitCode.USAGE
    except ShadowStoreError as exc:
        code = _report(exc)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = ExitCode.INTERRUPTED
    except BrokenPipeError:
        code = ExitCode.OK
    except Exception:  # a bug: say so plainly, with the traceback for the report
        traceback.print_exc()
        click.echo("error: unexpected failure (a bug in ShadowStore); the traceback above says where", err=True)
        code = ExitCode.ERROR
    return int(code)


def _report(exc: ShadowStoreError) -> int:
    context = CliContext.last
    if context is not None and context.json:
        click.echo(json.dumps(exc.to_dict(), indent=2))
    else:
        click.echo(f"error: {exc}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
    return int(exc.exit_code)


def entry() -> None:
    sys.exit(main())
