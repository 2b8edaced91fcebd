"""A ``shadowstore sg move`` that did not finish, as doctor judges it from the move's journal
(tools/movejournal.py): which side of the switch the storage group is on, how far the copy got, and the command
that finishes it. A journal that cannot be read is a finding of its own.

``doctor --fix`` does not finish a move, and cures nothing else of its storage group until the move is finished
(tools/doctorfindings.py ``BLOCKING`` says why).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from shadowstore.engine.movepath import ROLE_NAMES, ROLES, Folders
from shadowstore.errors import DiskIOError, InvalidParameterError, ShadowStoreError
from shadowstore.home import ServerHome
from shadowstore.tools.doctorfindings import ERROR, GroupFacts
from shadowstore.tools.movejournal import journal_path, pending_journal

UNREADABLE_HINT = (
    "look at it: if no move of this storage group is unfinished, move it out of the moves folder (nothing else "
    "reads it); until then 'shadowstore sg move' refuses to move the storage group"
)


@dataclass(frozen=True)
class UnfinishedMove:
    """What the journal of an unfinished move says, its folders resolved."""

    old: Folders
    new: Folders
    copied: int  # files copied and recorded
    planned: int  # files the move copies (the targets it recorded before its first copy)
    sources_left: int  # copied files still in the old folders (not yet set aside)


def check_move(home: ServerHome, group: GroupFacts) -> None:
    """Add a finding to ``group`` for its unfinished move, or for its move journal that cannot be read."""
    path = journal_path(home, group.config.log_base)
    try:
        move = _read_move(home, group.config.log_base)
    except ShadowStoreError as exc:
        group.add(ERROR, "move-journal-damaged", exc.message, path, exc.hint or UNREADABLE_HINT)
        return
    if move is None:
        return
    name = group.name
    command = f"shadowstore --home {shlex.quote(home.path)} sg move {shlex.quote(name)} --resume"
    moving = f"a move of {name!r} ({_moving(move.old, move.new)}) is unfinished"
    current = Folders.of(group.config).resolved(home.path)
    if current not in (move.old, move.new):
        group.add(
            ERROR,
            "move-unfinished",
            f"{moving}, and the configuration names neither the folders it started from nor those it goes to: it "
            "was changed by hand since",
            path,
            f"put the journal's 'from' or 'to' folders back in the configuration and finish it with: {command}; "
            "or, if the storage group stays where the configuration says, move the journal out of the moves folder",
        )
        return
    if current == move.old:
        side = (
            "before the switch: the configuration still names the old folders, which the storage group mounts "
            f"from; the journal records {move.copied} of its {move.planned} files copied"
        )
    else:
        side = (
            f"after the switch: the configuration names the new folders already, which hold all its files "
            f"({move.copied} copied); {move.sources_left} old file(s) are still in the old folders, not yet set aside"
        )
    holder = f"; {group.holder} has the storage group locked now" if group.holder is not None else ""
    group.add(
        ERROR,
        "move-unfinished",
        f"{moving}, {side}{holder}",
        path,
        f"finish it with: {command} (it refuses while the storage group is mounted); doctor --fix leaves {name!r} "
        "alone until then",
    )


def _read_move(home: ServerHome, log_base: str) -> UnfinishedMove | None:
    """The unfinished move of the storage group with ``log_base``, or None; reads only. Raises ShadowStoreError
    (InvalidParameterError, DiskIOError) naming the journal when it cannot be read or lacks what a move records."""
    path = journal_path(home, log_base)
    try:
        journal = pending_journal(home, log_base)
        if journal is None:
            return None
        copied = dict(journal["copied"])
        return UnfinishedMove(
            _folders(journal["from"], home),
            _folders(journal["to"], home),
            len(copied),
            len(journal["targets"]),
            sum(home.fs.exists(str(e["source"])) for e in copied.values()),
        )
    except OSError as exc:
        raise DiskIOError(f"the move journal {path} cannot be read: {exc}", hint=UNREADABLE_HINT) from exc
    except (KeyError, TypeError, ValueError) as exc:  # why: valid JSON, of the format, edited by a hand
        raise InvalidParameterError(
            f"the move journal {path} is damaged: it lacks what a move records ({type(exc).__name__}: {exc})",
            hint=UNREADABLE_HINT,
        ) from exc


def _folders(side: dict[str, Any], home: ServerHome) -> Folders:
    return Folders(**{r: str(side[r]) for r in ROLES}).resolved(home.path)


def _moving(old: Folders, new: Folders) -> str:
    """What moves where, each pair of folders once: ``log and system folders /a -> /b; data folder /c -> /d``."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for role, a, b in zip(ROLES, old, new, strict=True):
        if a != b:
            pairs.setdefault((a, b), []).append(ROLE_NAMES[role].removesuffix(" folder"))
    return "; ".join(
        f"{_listed(names)} folder{'s' if len(names) > 1 else ''} {a} -> {b}" for (a, b), names in pairs.items()
    )


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
