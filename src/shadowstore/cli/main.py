"""The ``shadowstore`` command: one group, one module per command group, one place that maps errors to exit
codes (0 ok, 1 warning, 2 error, 3-99 specific errors; see shadowstore.errors.ExitCode).

An OSError that says something about the machine (no permission, no such folder, a file where a folder must be,
a full disk, an address in use) is a refusal like any other: one line naming the path, and a hint
(``oserrors.os_refusal``). Any other exception that is not a ShadowStoreError is a bug. It is shown as one line
naming the command, the exception and its text, and a hint naming the crash file that holds the traceback
(``crash-<time>-<pid>.log`` in the server home's ``reports/`` folder, else in ``$TMPDIR``); ``SHADOWSTORE_DEBUG=1``
prints the traceback too.

With ``--json`` among the arguments every failure is one JSON document on stdout, in the shape of
``ShadowStoreError.to_dict``: ours, click's usage errors, and Ctrl-C.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import json
import logging
import os
import shlex
import sys
import tempfile
import traceback
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import click

from shadowstore.cli.common import HOME_VARIABLE, CliContext
from shadowstore.config import CONFIG_NAME, default_home
from shadowstore.errors import ExitCode, InvalidParameterError, ShadowStoreError, UnexpectedError, unexpected
from shadowstore.oserrors import os_refusal

DEBUG_VARIABLE = "SHADOWSTORE_DEBUG"  # "1": also print the traceback of an unexpected failure
# Exceptions a command raises on purpose, which main() maps itself.
_EXPECTED = (ShadowStoreError, click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)


# The modules that register each command (shadowstore.cli.<module>.register), imported when the command is first
# named: a command imports its own code only. Why: importing every command group took 0.8 s, so that every
# `shadowstore status` in a monitoring script paid for the backup, mail, eseutil and service code as well.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "init": ("home_cmd",),
    "status": ("home_cmd",),
    "sg": ("sg_cmd",),
    "store": ("sg_cmd",),
    "backup": ("backup_cmd", "backup_checks_cmd"),
    "restore": ("restore_cmd",),
    "quarantine": ("quarantine_cmd",),
    "config": ("config_cmd",),
    "events": ("events_cmd",),
    "eseutil": ("eseutil_cmd",),
    "doctor": ("doctor_cmd",),
    "workload": ("workload_cmd",),
    "serve": ("service_cmd",),
    "mount": ("service_cmd",),
    "dismount": ("service_cmd",),
    "mail": ("mail_cmd",),
    "vss": ("vss_cmd",),
}


class _LazyGroup(click.Group):
    """The root group: lists every command of COMMAND_MODULES and registers a command's modules when it is
    first looked up (then wraps what they registered, ``_naming_failures``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self.load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def load(self, name: str) -> None:
        """Register the modules of command ``name`` (once); an unknown name loads nothing."""
        for module in COMMAND_MODULES.get(name, ()):
            if module not in self._loaded:
                self._loaded.add(module)
                importlib.import_module(f"shadowstore.cli.{module}").register(self)
        if name in self.commands:
            _naming_failures(self.commands[name])

    def load_all(self) -> None:
        for name in COMMAND_MODULES:
            self.load(name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    if os.environ.get(HOME_VARIABLE) == "":
        # why not refused here: '--home DIR' after the command's name may still name the home
        ctx.obj = CliContext("", source=HOME_VARIABLE)
    else:
        ctx.obj = CliContext(default_home(), source="the default")
    if home is not None:
        ctx.obj.name_home(home)


def _naming_failures(command: click.Command) -> None:
    """Make every command below ``command`` raise an exception that is not ours as an UnexpectedError naming
    the command, raised from it, and take ``--home`` after its name as well as before. Why at each command:
    once the exception reaches main() click has left the command's context, and with it the command's name.
    A command is wrapped once, however often it is looked up."""
    if getattr(command, "_shadowstore_named", False):
        return
    command._shadowstore_named = True  # type: ignore[attr-defined]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _naming_failures(sub)
        return
    if command.callback is not None:
        command.callback = _named(command.callback)
    if command.name != "eseutil" and not any("--home" in p.opts for p in command.params):
        command.params.append(
            click.Option(
                ["--home"],
                type=click.Path(file_okay=False),
                expose_value=False,
                callback=_home_after,
                help="Server home directory (as before the command's name).",
            )
        )


def _home_after(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``shadowstore status --home DIR`` means ``shadowstore --home DIR status``."""
    if value is not None:
        ctx.ensure_object(CliContext).name_home(value)


def _reader_gone() -> click.exceptions.Exit:
    """A reader that closed the pipe (``| head``) got what it wanted: not an error. Later writes and the flush
    at exit go nowhere, so Python does not report the closed pipe either."""
    with suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return click.exceptions.Exit(0)


def _named(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except BrokenPipeError:
            raise _reader_gone() from None
        except _EXPECTED:
            raise
        except Exception as exc:
            raise _not_ours(exc, f"running '{click.get_current_context().command_path}'") from exc

    return run


def _not_ours(exc: Exception, doing: str) -> ShadowStoreError:
    """An exception that is not a ShadowStoreError as one: the refusal of an OSError that says something about
    the machine (``os_refusal``), else a bug (UnexpectedError). Raise it ``from exc``."""
    refusal = os_refusal(exc, doing) if isinstance(exc, OSError) else None
    return refusal if refusal is not None else unexpected(exc, doing)


def _quiet_events() -> None:
    """Events go to the event log (``shadowstore events`` reads it), not to the terminal: the CLI says each
    failure once, as one line and a hint. Without this, Python's last-resort handler printed every warning and
    error event on stderr beside the CLI's own line."""
    events = logging.getLogger("shadowstore.events")
    if not events.handlers:
        events.addHandler(logging.NullHandler())
        events.propagate = False


class CommandInterruptedError(ShadowStoreError):
    """The command was stopped by Ctrl-C or SIGINT (only ever reported, never raised)."""

    exit_code = ExitCode.INTERRUPTED
    default_hint = "run the command again to finish it; 'shadowstore doctor' finds what a stopped job left behind"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises, except SystemExit from Python itself)."""
    _quiet_events()
    args = sys.argv[1:] if argv is None else argv
    CliContext.last = None  # why: a failure before the root command runs must not use an earlier call's context
    try:
        result = cli.main(args=args, prog_name="shadowstore", standalone_mode=False)
        code = int(result) if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        code = _interrupted(args)
    except click.ClickException as exc:
        code = _usage_error(exc, args)
    except UnexpectedError as exc:
        code = _crashed(exc, args)
    except ShadowStoreError as exc:
        code = _report(exc, args)
    except BrokenPipeError:
        code = ExitCode.OK
    except Exception as exc:  # outside any command's own code (an option's callback, click itself)
        failure = _not_ours(exc, f"running '{shlex.join(['shadowstore', *args])}'")
        failure.__cause__ = exc
        code = _crashed(failure, args) if isinstance(failure, UnexpectedError) else _report(failure, args)
    return int(code)


def _json_asked(args: list[str]) -> bool:
    """``--json`` is among the options (not after ``--``): a failure is then a JSON document even when it came
    before click read that option (a usage error, Ctrl-C)."""
    context = CliContext.last
    options = args[: args.index("--")] if "--" in args else args
    return (context is not None and context.json) or "--json" in options


def _usage_error(exc: click.ClickException, args: list[str]) -> int:
    """Click's own refusal of the command line: its usage text on stderr, or with ``--json`` the same document
    as any other error (exit code 3 either way)."""
    if not _json_asked(args):
        exc.show()
        return int(ExitCode.USAGE)
    context = getattr(exc, "ctx", None)
    hint = f"see '{context.command_path if isinstance(context, click.Context) else 'shadowstore'} --help'"
    if isinstance(exc, click.NoSuchOption) and exc.option_name.lstrip("-").replace(".", "", 1).isdigit():
        hint += f" (a value that starts with '-' goes after '--': -- {exc.option_name})"
    return _report(InvalidParameterError(exc.format_message(), hint=hint), args)


def _interrupted(args: list[str]) -> int:
    """Ctrl-C (SIGINT): "interrupted" on stderr, or with ``--json`` an error document; exit code 99."""
    if _json_asked(args):
        return _report(CommandInterruptedError("the command was interrupted (Ctrl-C or SIGINT)"), args)
    click.echo("interrupted", err=True)
    return int(ExitCode.INTERRUPTED)


def _crashed(failure: UnexpectedError, args: list[str]) -> int:
    """Report a bug: its one line, and a hint naming the crash file that holds the traceback (also printed on
    stderr with SHADOWSTORE_DEBUG=1, or when it cannot be saved)."""
    text = "".join(traceback.format_exception(failure))  # why the UnexpectedError: its chain holds the original
    try:
        saved: str | None = _save_crash(text, args)
        where = f"the full traceback is saved in {saved}; please include it when you report the bug"
    except OSError as exc:
        saved = None
        where = f"the traceback could not be saved ({exc}); it is printed on stderr above"
    if saved is None or os.environ.get(DEBUG_VARIABLE) == "1":
        click.echo(text, err=True, nl=False)
    return _report(UnexpectedError(failure.message, hint=where, crash_file=saved), args)  # None: left out of --json


def _save_crash(text: str, args: list[str]) -> str:
    """Write ``text`` into a new crash file, created exclusively; returns its path. Raises OSError when no
    folder takes it."""
    now = dt.datetime.now(dt.UTC)
    header = f"shadowstore {shlex.join(args)}\nfailed at {now:%Y-%m-%d %H:%M:%S} UTC in pid {os.getpid()}\n\n"
    stem = f"crash-{now:%Y%m%dT%H%M%SZ}-{os.getpid()}"
    failure: OSError = FileNotFoundError("no folder for crash files")
    for folder in _crash_folders():
        for attempt in range(1, 100):  # why more than one: a process may fail twice in a second (tests do)
            path = folder / (f"{stem}.log" if attempt == 1 else f"{stem}-{attempt}.log")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError as exc:
                failure = exc
                continue
            except OSError as exc:
                failure = exc
                break
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(header + text)
            return str(path)
    raise failure


def _crash_folders() -> list[Path]:
    """Where a crash file may go, best first: the server home's ``reports/`` (if the home exists), $TMPDIR."""
    context = CliContext.last
    named = context.named_home() if context is not None else default_home()
    folders = []
    if named and (Path(named) / CONFIG_NAME).is_file():
        reports = Path(named) / "reports"
        with suppress(OSError):  # why quietly: $TMPDIR is next
            reports.mkdir(exist_ok=True)
            folders.append(reports)
    folders.append(Path(os.environ.get("TMPDIR") or tempfile.gettempdir()))
    return folders


def _report(exc: ShadowStoreError, args: list[str]) -> int:
    """Show ``exc``: one JSON document on stdout with ``--json``, else its line and hint on stderr. Returns its
    exit code. With SHADOWSTORE_DEBUG=1 a refusal made from an OSError shows the traceback too."""
    if isinstance(exc.__cause__, OSError) and os.environ.get(DEBUG_VARIABLE) == "1":
        click.echo("".join(traceback.format_exception(exc)), err=True, nl=False)
    try:
        if _json_asked(args):
            click.echo(json.dumps(exc.to_dict(), indent=2))
        else:
            click.echo(f"error: {exc}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
    except BrokenPipeError:
        _reader_gone()  # why: the exit code still says what happened
    return int(exc.exit_code)


def entry() -> None:
    sys.exit(main())
