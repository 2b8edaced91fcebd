"""``shadowstore eseutil``: placeholder registration, filled in by tools/eseutil.py."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    return None
