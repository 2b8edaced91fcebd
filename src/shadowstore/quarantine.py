"""The quarantine folders: where ShadowStore puts files it displaced instead of deleting them.

A restore in place keeps the stores, logs and checkpoint it replaced in ``<folder>/quarantine/restore-<time>/``
of the folder each came from (restore/run.py); other operations add folders of their own beside those. They
are kept until an administrator decides: ``shadowstore quarantine list`` shows every one with its size and age,
``status`` shows the total per storage group, and ``shadowstore quarantine purge`` deletes them, only when asked
(a dry run without --yes), optionally only those older than an age.

A storage group that moves (tools/sgmove.py) leaves its old folders' quarantines behind, with what it set aside
there itself; ``<home>/quarantine-places.json`` remembers those folders so that they are still listed and purged
with the storage group's own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from shadowstore.config import SgConfig
from shadowstore.errors import InvalidParameterError
from shadowstore.home import ServerHome
from shadowstore.io.fs import read_file
from shadowstore.io.replace import atomic_write

QUARANTINE = "quarantine"
PLACES = "quarantine-places.json"  # in the server home: quarantines of folders a storage group has left
PLACES_FORMAT = "shadowstore-quarantine-places"


@dataclass(frozen=True)
class QuarantineFolder:
    sg: str
    path: str
    files: int
    bytes: int
    modified: str  # ISO 8601 UTC of the newest file in it
    age_seconds: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def quarantine_roots(config: SgConfig) -> list[str]:
    """The quarantine folders of a storage group (resolved): one under each of its distinct folders."""
    return list(
        dict.fromkeys(os.path.join(d, QUARANTINE) for d in (config.log_dir, config.data_dir, config.system_dir))
    )


def remember_places(home: ServerHome, sg: str, roots: list[str]) -> None:
    """Add ``roots`` (quarantines of folders storage group ``sg`` is leaving) to the home's record, durably,
    before anything is set aside in them. Raises OSError, InvalidParameterError for a damaged record."""
    places = _places(home)
    known = places.setdefault(sg, [])
    added = [root for root in roots if root not in known]
    if not added:
        return
    known += added
    data = {"format": PLACES_FORMAT, "places": places}
    atomic_write(home.fs, os.path.join(home.path, PLACES), (json.dumps(data, indent=2) + "\n").encode())


def _places(home: ServerHome) -> dict[str, list[str]]:
    path = os.path.join(home.path, PLACES)
    if not home.fs.exists(path):
        return {}
    try:
        data = json.loads(read_file(home.fs, path))
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("format") != PLACES_FORMAT or not isinstance(data.get("places"), dict):
        raise InvalidParameterError(
            f"{path} is damaged: it should name the quarantine folders storage groups moved away from",
            hint="look at it; each storage group's old folders hold a quarantine/ folder with what was set aside",
        )
    return {str(sg): [str(root) for root in roots] for sg, roots in data["places"].items()}


def list_quarantine(home: ServerHome, sg: str | None = None) -> list[QuarantineFolder]:
    """Every folder in the quarantines of ``home``'s storage groups (of ``sg`` when given), those of folders
    they moved away from included, oldest first."""
    found = []
    former = _places(home)
    for config in home.config.storage_groups:
        if sg is not None and config.name != sg:
            continue
        roots = quarantine_roots(config.resolved(home.path)) + former.get(config.name, [])
        for root in dict.fromkeys(roots):
            if not home.fs.exists(root):
                continue
            for name in sorted(home.fs.listdir(root)):
                path = os.path.join(root, name)
                found.append(_describe(config.name, path))
    return sorted(found, key=lambda f: f.modified)


def total_bytes(home: ServerHome, sg: str) -> tuple[int, int]:
    """(folders, bytes) in the quarantines of storage group ``sg``."""
    folders = list_quarantine(home, sg)
    return len(folders), sum(f.bytes for f in folders)


def purge(home: ServerHome, folders: list[QuarantineFolder]) -> int:
    """Delete ``folders`` (as the administrator asked); returns the bytes freed. The parent folder is synced."""
    freed = 0
    for folder in folders:
        path = Path(folder.path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        home.fs.fsync_dir(str(path.parent))
        freed += folder.bytes
    return freed


def _describe(sg: str, path: str) -> QuarantineFolder:
    files, size, newest = 0, 0, 0.0
    for folder, _dirs, names in os.walk(path):
        for name in names:
            try:
                st = Path(folder, name).stat()
            except FileNotFoundError:
                continue
            files, size, newest = files + 1, size + st.st_size, max(newest, st.st_mtime)
    newest = newest or Path(path).stat().st_mtime
    when = dt.datetime.fromtimestamp(newest, dt.UTC)
    age = (dt.datetime.now(dt.UTC) - when).total_seconds()
    return QuarantineFolder(sg, path, files, size, when.isoformat(timespec="seconds"), age)
