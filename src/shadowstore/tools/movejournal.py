"""The journal of ``shadowstore sg move`` (tools/sgmove.py): ``<home>/moves/<log base>.json``, replaced
atomically at each step of a move, so that a run cut short anywhere is finished by running the same command
again. It records the folders the move goes from and to, when it started (which names the quarantine folders),
its phase, every file it may have made in the new folders, and what each source was when it was copied.
``doctor`` reads it to report a move left unfinished (tools/doctormoves.py).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

from shadowstore.config import SgConfig
from shadowstore.engine.movepath import ROLES, Folders
from shadowstore.errors import DiskFullError, DiskIOError, InvalidParameterError, ShadowStoreError
from shadowstore.home import ServerHome
from shadowstore.io.fs import read_file
from shadowstore.io.replace import atomic_write

JOURNAL_FORMAT = "shadowstore-move"
MOVES_FOLDER = "moves"  # in the server home: where the journals are
T = TypeVar("T")


def journal_path(home: ServerHome, log_base: str) -> str:
    return os.path.join(home.path, MOVES_FOLDER, f"{log_base}.json")


def new_journal(sg_config: SgConfig, old: Folders, new: Folders) -> dict[str, Any]:
    return {
        "format": JOURNAL_FORMAT,
        "sg": sg_config.name,
        "log_base": sg_config.log_base,
        "from": old._asdict(),
        "to": new._asdict(),
        "started": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ"),  # names the quarantine folders
        "phase": "copy",
        "targets": [],  # every file this move may have made in the new folders (saved before it copies one)
        "copied": {},  # target -> {role, source, size, ino, mtime_ns} of the source when it was copied
    }


def pending_journal(home: ServerHome, log_base: str) -> dict[str, Any] | None:
    """The journal of this storage group's unfinished move, or None (no journal, or its move is done); reads
    only. Raises InvalidParameterError for a file that is not a move journal (damaged), OSError to read it."""
    path = journal_path(home, log_base)
    if not home.fs.exists(path):
        return None
    try:
        data = json.loads(read_file(home.fs, path))
    except ValueError:
        raise InvalidParameterError(
            f"the move journal {path} is damaged", hint="look at it, and move it aside if no move is unfinished"
        ) from None
    if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
        raise InvalidParameterError(f"{path} is not a ShadowStore move journal")
    return None if data.get("phase") == "done" else data


def journal_folders(journal: dict[str, Any], side: str) -> Folders:
    return Folders(**{r: str(journal[side][r]) for r in ROLES})


def save_journal(home: ServerHome, journal: dict[str, Any]) -> None:
    path = journal_path(home, journal["log_base"])
    disk(lambda: home.fs.makedirs(os.path.dirname(path)), f"making {os.path.dirname(path)}")
    disk(lambda: atomic_write(home.fs, path, (json.dumps(journal, indent=2) + "\n").encode()), f"saving {path}")


def disk(call: Callable[[], T], doing: str) -> T:
    """``call()``, its OSError as DiskFullError or DiskIOError naming what was being done; a move interrupted so
    is finished by running it again."""
    try:
        return call()
    except ShadowStoreError:
        raise
    except OSError as exc:
        hint = "free space there, then run the same command again to finish the move"
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"no space left while {doing}", hint=hint) from exc
        raise DiskIOError(
            f"I/O error while {doing}: {exc.strerror or exc}",
            hint="check the disk, then run the same command again to finish the move",
        ) from exc
