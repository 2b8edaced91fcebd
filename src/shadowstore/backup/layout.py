"""Where a backup set lives in a target, and whose it is.

A target may be shared by many server homes, and every home calls its first storage group "First Storage
Group". So every set is filed under the home that took it::

    <home id>/<storage group>/<backup id>/<file>
    mail01-3f2a9c1b/First Storage Group/20261125T084500.000000Z-full-3f2a9c/priv1.edb.zst

The home id (``config.new_home_id``) is made when the home is made and never changes; the set's manifest
repeats it and names the log stream (the log signature) the set belongs to. A set belongs to exactly one home
and one stream: the catalog, prune, the incremental chain and restore never mix them. A stream changes only
when a restore in place starts a new one; a home's sets of an older stream stay restorable on their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shadowstore.config import validate_home_id
from shadowstore.errors import InvalidParameterError

BACKUP_ID = re.compile(r"\d{8}T\d{6}\.\d{6}Z-(full|copy|incremental|differential)-[0-9a-f]{6,}")


@dataclass(frozen=True)
class SetPath:
    """A file name inside a target split into the set it belongs to and its name in the set."""

    home: str
    sg: str
    backup_id: str
    name: str

    @property
    def folder(self) -> str:
        return set_folder(self.home, self.sg, self.backup_id)


def set_folder(home: str, sg: str, backup_id: str) -> str:
    """The folder of a backup set inside its target."""
    return f"{home}/{sg}/{backup_id}"


def home_prefix(home: str | None, sg: str | None) -> str:
    """The listing prefix of one home's sets (of one storage group when ``sg`` is given)."""
    if home is None:
        return ""
    return f"{home}/{sg}/" if sg else f"{home}/"


def parse_set_path(name: str) -> SetPath | None:
    """The set a target file name belongs to; None for names that are no file of a set (anything a person or
    another program put into the target is left alone)."""
    parts = name.split("/")
    if len(parts) != 4 or not BACKUP_ID.fullmatch(parts[2]):
        return None
    try:
        validate_home_id(parts[0])
    except InvalidParameterError:  # why: a name that is not a home id is simply not ours
        return None
    return SetPath(*parts)


def stream_id(log_signature: dict[str, Any]) -> str:
    """A short, readable name of a log stream for listings: its signature's random number in hex."""
    random = log_signature.get("random")
    return f"{random:08x}" if isinstance(random, int) else "?"
