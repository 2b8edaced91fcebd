"""The plan of ``doctor --fix`` and its journal.

:func:`plan_cure` is pure: from a diagnosis (tools/doctor.py) and the unfinished journals, the steps the cure
takes for each storage group, and the storage groups it refuses with the findings that stop them (a store whose
logs are missing is never made clean without them). ``--dry-run`` prints it. The journal of a cure,
``<home>/doctor/<log base>.json``, records its steps and those done; it is replaced durably (temporary file,
fsync, rename, fsync of the folder: io/replace.py), so a crash leaves the old or the new record.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from shadowstore.errors import (
    ConfigMismatchError,
    DatabaseCorruptedError,
    DatabaseDirtyShutdownError,
    DatabaseNotFoundError,
    InvalidParameterError,
    RequiredLogFilesMissingError,
    RestoreInProgressError,
    ShadowStoreError,
    StorageGroupBusyError,
)
from shadowstore.format.logfile import checkpoint_name
from shadowstore.home import ServerHome
from shadowstore.io.fs import FileSystem, read_file
from shadowstore.io.replace import atomic_write
from shadowstore.tools.doctor import Diagnosis, Finding, GroupFacts

STEPS = ("dismount", "recover", "quarantine", "clear", "mount", "backup")
JOURNAL_FORMAT = "shadowstore-doctor"
DOCTOR_FOLDER = "doctor"  # in the server home: the journals
REFUSALS: dict[str, type[ShadowStoreError]] = {
    "store-unrecoverable": RequiredLogFilesMissingError,
    "store-missing": DatabaseNotFoundError,
    "store-damaged": DatabaseCorruptedError,
    "store-state": DatabaseDirtyShutdownError,
    "config-mismatch": ConfigMismatchError,
    "restore-unfinished": RestoreInProgressError,
    "move-unfinished": StorageGroupBusyError,  # as 'sg move' refuses another move of it meanwhile
    "move-journal-damaged": InvalidParameterError,
}


# --- the plan (pure) ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedStep:
    sg: str
    step: str
    text: str


@dataclass
class CurePlan:
    steps: list[PlannedStep] = field(default_factory=list)
    refused: list[tuple[str, list[Finding]]] = field(default_factory=list)  # storage group, what stops it
    resumed: list[str] = field(default_factory=list)  # storage groups whose unfinished cure is finished

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(s.sg for s in self.steps))

    def steps_of(self, sg: str) -> list[str]:
        return [s.step for s in self.steps if s.sg == sg]


def plan_cure(diagnosis: Diagnosis, journals: dict[str, dict[str, Any]], *, service: bool, target: str) -> CurePlan:
    """The steps the cure takes for each storage group of ``diagnosis`` (unfinished ``journals`` by storage group
    name come first and are finished), and the storage groups it refuses with the findings that stop them."""
    plan = CurePlan()
    for group in diagnosis.groups:
        journal = journals.get(group.name)
        if journal is not None:
            names = remaining_steps(journal)
            plan.resumed.append(group.name)
        elif group.blocking:
            plan.refused.append((group.name, group.blocking))
            continue
        elif group.cure == "full":
            names = list(STEPS)
        elif group.cure == "clear":
            names = ["clear"]
        else:
            continue
        plan.steps += [PlannedStep(group.name, n, _describe(group, n, service, target)) for n in names]
    return plan


def refusal(plan: CurePlan) -> ShadowStoreError | None:
    """The first storage group the cure refuses, as the error of the finding that stops it (its ESE code and
    exit code), or None."""
    if not plan.refused:
        return None
    sg, blocking = plan.refused[0]
    first = blocking[0]
    more = f" (and {len(blocking) - 1} more finding(s): 'shadowstore doctor' lists them)" if len(blocking) > 1 else ""
    return REFUSALS[first.code](
        f"doctor --fix does not cure {sg!r}: {first.what}{more}", hint=first.hint, file=first.where
    )


def remaining_steps(journal: dict[str, Any]) -> list[str]:
    """The steps of ``journal`` still to do; ``dismount`` again when a step that needs it dismounted is left."""
    done = set(journal["done"])
    todo = [s for s in journal["steps"] if s not in done]
    if "dismount" in journal["steps"] and {"recover", "quarantine", "clear"} & set(todo) and "dismount" not in todo:
        todo.insert(0, "dismount")
    return todo


def _describe(group: GroupFacts, step: str, service: bool, target: str) -> str:
    name = group.name
    via = "through the Information Store service" if service else "here"
    if step == "dismount":
        return (
            f"dismount {name!r} through the Information Store service"
            if service
            else (f"check that no process has {name!r} mounted")
        )
    if step == "recover":
        dirty = [f"{s.name} (replays generations {s.replays[0]}-{s.replays[1]})" for s in group.stores if s.replays]
        return "bring every store to Clean Shutdown by soft recovery" + (
            f": {', '.join(dirty)}" if dirty else " (each is in Clean Shutdown already, unless mounted now)"
        )
    if step == "quarantine":
        folders = sorted({group.config.log_dir, group.config.system_dir})
        return (
            f"move every {group.config.log_base} log, the reserve logs and {checkpoint_name(group.config.log_base)} "
            f"into quarantine/doctor-<time>/ in {', '.join(folders)} (nothing is deleted)"
        )
    if step == "clear":
        base = group.config.log_base
        left = f"{base}.backup.json, {base}.backup-abort"
        return f"set aside what a dead backup left ({left}) and end the sessions whose program is gone"
    if step == "mount":
        if service:
            return f"mount {name!r} through the Information Store service (a new log stream starts)"
        return f"mount {name!r} here once (a new log stream starts), and dismount it"
    return f"take a full backup of {name!r} to {target} {via}"


# --- the journal --------------------------------------------------------------------------------------------


def journal_path(home: str, log_base: str) -> str:
    return os.path.join(home, DOCTOR_FOLDER, f"{log_base}.json")


def pending_journals(home: ServerHome) -> dict[str, dict[str, Any]]:
    """The unfinished cures of ``home``'s storage groups, by storage group name. Raises InvalidParameterError for
    a journal that is not one (damaged: it is replaced atomically, so only a hand can damage it)."""
    found = {}
    for config in home.config.storage_groups:
        path = journal_path(home.path, config.log_base)
        if not home.fs.exists(path):
            continue
        try:
            data = json.loads(read_file(home.fs, path))
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
            raise InvalidParameterError(
                f"{path} is not a doctor journal that can be read",
                hint="look at it, and move it aside if no 'doctor --fix' is unfinished",
            )
        if data.get("phase") != "done" and data.get("sg") == config.name:
            found[config.name] = data
    return found


def save_journal(fs: FileSystem, home: str, journal: dict[str, Any]) -> None:
    path = journal_path(home, journal["log_base"])
    fs.makedirs(os.path.dirname(path))
    atomic_write(fs, path, (json.dumps(journal, indent=2) + "\n").encode())
