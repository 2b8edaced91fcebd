"""What every command shares: the context object, JSON output, opening the home."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import click

from shadowstore.config import parse_size
from shadowstore.errors import (
    InvalidParameterError,
    ServiceError,
)

if TYPE_CHECKING:
    from shadowstore.home import ServerHome
    from shadowstore.service.client import ServiceClient


HOME_VARIABLE = "SHADOWSTORE_HOME"  # the server home when no --home is given (config.default_home)


class CliContext:
    """Per-invocation state: the server home path and whether output is JSON."""

    last: ClassVar[CliContext | None] = None

    def __init__(self, home: str, *, source: str = "--home") -> None:
        self._home = home
        self._home_source = source  # where the path came from, for the refusal of an empty one
        self.json = False
        CliContext.last = self

    @property
    def home_path(self) -> str:
        """The server home's path. Raises InvalidParameterError when it is empty (an empty $SHADOWSTORE_HOME):
        why not the default home then: a script whose variable came out empty must not act on another home."""
        if not self._home:
            raise _empty_home(self._home_source)
        return self._home

    def name_home(self, path: str) -> None:
        """Use the home ``--home`` names. Raises InvalidParameterError for an empty path (``--home ""``), which
        would otherwise name the default home, or the current folder, without a word."""
        if not path:
            raise _empty_home("--home")
        self._home, self._home_source = path, "--home"

    def named_home(self) -> str | None:
        """The server home's path, or None when it is empty (for code that must not raise: the crash report)."""
        return self._home or None

    def open_home(self) -> ServerHome:
        from shadowstore.home import ServerHome  # why here: a command the service answers needs no engine

        return ServerHome.open(self.home_path)

    def service(self) -> ServiceClient | None:
        """A client of the Information Store service when one owns this home and answers, else None (the
        command then opens the home itself). Raises ServiceError when one owns it but does not answer."""
        if not hasattr(self, "_service"):
            from shadowstore.service.client import find_service

            self._service = find_service(os.path.abspath(self.home_path))
        return self._service

    def need_service(self, doing: str) -> ServiceClient:
        """The service's client; ServiceError saying ``doing`` needs it when none runs."""
        client = self.service()
        if client is None:
            raise ServiceError(
                f"{doing} needs the Information Store service, and none runs for {self.home_path}",
                hint=f"start it with 'shadowstore serve --home {self.home_path}' (see docs/operations.md)",
            )
        return client


def _empty_home(source: str) -> InvalidParameterError:
    if source == "--home":
        return InvalidParameterError(
            "--home is empty: it names no server home",
            hint="name the server home's folder (--home /srv/shadowstore), or leave --home out for the default",
        )
    return InvalidParameterError(
        f"${HOME_VARIABLE} is set but empty: it names no server home",
        hint=f"set {HOME_VARIABLE} to the server home's folder, or unset it for the default, or pass --home DIR",
    )


pass_ctx = click.make_pass_decorator(CliContext)


def json_option(f: Any) -> Any:
    """``--json``: print machine-readable output (and errors) on stdout."""

    def set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value and isinstance(ctx.obj, CliContext):
            ctx.obj.json = True
        return value

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=set_json,
        expose_value=True,
        help="Print JSON for scripts.",
    )(f)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def table(header: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Lines of a plain-text table: each column as wide as its widest cell, columns in ``right`` aligned right
    (numbers), two spaces between columns, no trailing blanks."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]


class SizeType(click.ParamType):
    """A byte size: 8192, 64K, 1M."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except InvalidParameterError as exc:
            self.fail(exc.message, param, ctx)


SIZE = SizeType()


@contextmanager
def byte_bars(enabled: bool) -> Iterator[Callable[[str, int, int | None], None]]:
    """``update(name, done, size)`` drawing one bar per name on stderr (bytes done of the size, the rate), if
    ``enabled`` and stderr is a terminal; otherwise ``update`` does nothing. Stdout stays for the summary or
    the ``--json`` document a script reads."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda name, done, size: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
        console=Console(stderr=True),
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(name: str, done: int, size: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=size)
            bar.update(tasks[name], completed=done)

        yield update
