"""``shadowstore eseutil /mh|/ml|/mk|/k|/g|/r PATH`` (also the ``eseutil`` console script, ``entry``): dump a
database header, log files or a checkpoint file in eseutil's layout, and check or recover.

Each path is read by content (tools/esekind.py): our own files through shadowstore.tools.eseutil, laid out by
cli/eseutil_layout.py; real Windows ESE files through tools/esereal.py, laid out by cli/eseutil_real.py; /k /g /r
of our stores by cli/eseutil_checks.py. A file that is neither is refused with one line. The layout follows
eseutil's labels (research/ese.md §3.2 and §4) or is one JSON object (``--json``); the exit code is 0 when
everything is valid, 1 when a damaged copy of a shadowed header was survived, else the exit code of the first error
found. For a log set the whole dump is printed before that error is raised, so every ERROR line is seen.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from shadowstore.cli.common import json_option, print_json
from shadowstore.cli.eseutil_checks import CHECK_MODES, Mode
from shadowstore.cli.eseutil_layout import (
    checkpoint_json,
    checkpoint_lines,
    database_json,
    database_lines,
    exit_code,
    logset_json,
    logset_lines,
    report_json,
)
from shadowstore.cli.eseutil_real import REAL_MODES
from shadowstore.errors import InvalidParameterError, ShadowStoreError
from shadowstore.service.client import URL_VARIABLE
from shadowstore.service.wire import raise_from_body
from shadowstore.tools.esekind import is_real_ese
from shadowstore.tools.eseutil import Report, dump_checkpoint, dump_database, dump_logs, refuse_special

# --- the command ---------------------------------------------------------------------------------------------

MODES: dict[str, Mode] = {
    "mh": (dump_database, database_lines, database_json),
    "ml": (dump_logs, logset_lines, logset_json),
    "mk": (dump_checkpoint, checkpoint_lines, checkpoint_json),
    **CHECK_MODES,  # /k /g /r of our own files
}


MODE_KEYS = ("mh", "ml", "mk", "k", "g", "r")
INITIATING = {"k": "CHECKSUM", "g": "INTEGRITY", "r": "RECOVERY"}  # else FILE DUMP
USAGE = "use /mh DBFILE, /ml LOGFILE|LOGDIR|DIR/E00, /mk CHKFILE, /k DBFILE, /g DBFILE or /r (or -mh, -ml, ...)"


def pick_mode(key: str, path: str) -> Mode:
    """The dump, renderer and JSON renderer of eseutil ``/key`` for ``path``: the real ESE ones when it names real
    ESE files, else ours. Raises InvalidParameterError for a file that is neither (for /ml, /mk) or of another
    kind than the mode reads, and for a mode that is not available for what ``path`` is."""
    if is_real_ese(path, key):
        if key not in REAL_MODES:
            raise InvalidParameterError(
                f"eseutil /{key} is not supported on real Windows ESE files ({path}); /mh, /ml, /mk and /k read them",
                file=path,
            )
        return REAL_MODES[key]
    return MODES[key]


class EseutilCommand(click.Command):
    """Accepts eseutil's dash spellings (-mh, -ml, -mk, -k, -g, -r) for the mode, which click would read as options."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        dashed = {f"-{key}" for key in MODE_KEYS}
        args = [f"/{arg[1:]}" if arg.lower() in dashed else arg for arg in args]
        return super().parse_args(ctx, args)


@click.command("eseutil", cls=EseutilCommand)
@click.argument("mode", metavar="/mh|/ml|/mk|/k|/g|/r")
@click.argument("path")
@json_option
def eseutil(mode: str, path: str, as_json: bool) -> int:
    """Dump or check ShadowStore files and real Windows ESE files as eseutil does: /mh DBFILE (database header),
    /ml LOGFILE|LOGDIR|DIR/E00 (log files and the continuity of the log set), /mk CHKFILE (checkpoint file),
    /k DBFILE (checksums), /g DBFILE (integrity), /r (soft recovery). -mh, -ml, ... work too. Files are read by
    their content: ours, or real ESE files from Windows (read-only, see docs/eseutil.md).

    Exit code 0 when everything is valid, 1 when one copy of a header is damaged (the other is shown), else
    the code of the first error (3 a file that is not of the kind asked for, or neither ours nor ESE, 10 missing
    logs, 11 damaged or foreign logs, 12 damaged database header, ...).
    """
    key = mode.lower()
    if key[:1] != "/" or key[1:] not in MODE_KEYS:
        raise click.BadParameter(f"{mode!r}: {USAGE}", param_hint="MODE")
    key = key[1:]
    started = time.monotonic()
    if not as_json:
        click.echo(f"Initiating {INITIATING.get(key, 'FILE DUMP')} mode...")
    if key == "mh" and os.environ.get(URL_VARIABLE) and not _local_ese_file(path):
        return _remote_header(path, started, as_json)
    try:
        _refuse_special_files(key, path)
        dump, render, to_json = pick_mode(key, path)
        report: Report = dump(path)
    except ShadowStoreError as exc:
        if not as_json:
            click.echo(f"\n{terminated(exc, started)}")
        raise
    if as_json:
        print_json(report_json(report, to_json(report)))
        return exit_code(report)
    click.echo("\n".join(render(report)))
    if report.errors:
        click.echo(f"\n{terminated(report.errors[0], started)}")
        report.raise_first_error()
    click.echo(f"\nOperation completed successfully in {time.monotonic() - started:.1f} seconds.")
    return exit_code(report)


SET_SUFFIXES = (".log", ".jtx", ".chk", ".jcp")  # what /ml reads in a folder: logs and the checkpoint


def _refuse_special_files(key: str, path: str) -> None:
    """Refuse a FIFO, socket or device before anything opens it: opening a FIFO waits for a writer forever.
    For /ml of a folder (or DIR/E00) the log and checkpoint names in that folder are checked too, since every
    one of them is opened to tell ours from real ESE logs. /r takes a base name, not a file."""
    if key == "r":
        return
    refuse_special(path, "file")
    named = Path(path)
    if key != "ml" or (named.exists() and not named.is_dir()):
        return
    folder, base = (named, "") if named.is_dir() else (named.parent, named.name)
    try:
        names = [entry.name for entry in folder.iterdir()]
    except OSError:
        return  # the dump says what is wrong with the folder
    for name in names:
        if name.lower().startswith(base.lower()) and name.lower().endswith(SET_SUFFIXES):
            refuse_special(os.path.join(folder, name), "log or checkpoint file")


def _local_ese_file(path: str) -> bool:
    """Whether ``path`` is a real ESE file here (of any kind: a wrong one is refused here too), read locally even
    when $SHADOWSTORE_URL names a service: that service reads our own stores."""
    try:
        return is_real_ese(path, "mh")
    except ShadowStoreError:
        return True


def _remote_header(path: str, started: float, as_json: bool) -> int:
    """/mh through the service named by $SHADOWSTORE_URL (a store on another machine): the same output."""
    from shadowstore.service.client import find_service

    client = find_service("")
    assert client is not None
    try:
        answer = client.get("/v1/files/header", path=os.path.abspath(path))
    except ShadowStoreError as exc:
        if not as_json:
            click.echo(f"\n{terminated(exc, started)}")
        raise
    if as_json:
        print_json(answer["json"])
        return int(answer["exit_code"])
    click.echo("\n".join(answer["lines"]))
    if answer["errors"]:
        try:
            raise_from_body(409, json.dumps({"error": answer["errors"][0]}).encode())
        except ShadowStoreError as exc:
            click.echo(f"\n{terminated(exc, started)}")
            raise
    click.echo(f"\nOperation completed successfully in {time.monotonic() - started:.1f} seconds.")
    return int(answer["exit_code"])


def terminated(exc: ShadowStoreError, started: float) -> str:
    code = f"{exc.code} ({exc.code_name})" if exc.code else f"({type(exc).__name__})"
    return f"Operation terminated with error {code} after {time.monotonic() - started:.1f} seconds."


def register(cli: click.Group) -> None:
    cli.add_command(eseutil)


def entry() -> None:
    """The ``eseutil`` console script: ``eseutil /mh FILE`` runs ``shadowstore eseutil /mh FILE`` through
    cli/main.py's main(), so errors, hints and exit codes are the same."""
    from shadowstore.cli.main import main  # why here: cli/main.py imports this module

    sys.exit(main(["eseutil", *sys.argv[1:]]))


if __name__ == "__main__":
    entry()
