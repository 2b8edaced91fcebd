"""What ``shadowstore doctor`` reports: findings, and the facts of each storage group a cure is planned from.

A :class:`Finding` has a severity: ``error`` (something doctor --fix cannot cure and will not hide: a store whose
logs are missing, a store file that is gone, a restore or a storage group move left unfinished), ``warning``
(what the cure of tools/doctorfix.py mends: a store in Dirty Shutdown, a gap in the logs, a foreign or
out-of-sequence log, a checkpoint that does not match, a backup session whose owner is gone) and ``info`` (worth
knowing, blocks nothing: a lock file a killed process left, an incomplete backup set in the target whose lease is
dead, which ``backup prune`` removes). A home is healthy when it has no error and no warning. ``code`` is stable,
for scripts (docs/operations.md lists them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from shadowstore.config import SgConfig

ERROR, WARNING, INFO = "error", "warning", "info"

# What the cure (tools/doctorfix.py) mends: the whole cure, or only clearing what a dead backup left.
CURED = frozenset(
    {
        "store-dirty",
        "log-gap",
        "log-foreign",
        "log-out-of-sequence",
        "log-misnamed",
        "log-damaged",
        "log-current-missing",
        "checkpoint-missing",
        "checkpoint-damaged",
        "checkpoint-foreign",
        "checkpoint-mismatch",
        "cure-unfinished",  # an earlier doctor --fix, which the next one finishes from its journal
    }
)
CLEARED = frozenset({"session-stale", "abort-request-stale", "session-orphaned"})
# What stops the cure of its storage group: doctor never makes a store clean without the logs it needs.
# why an unfinished move stops it, and is not finished by the cure: where the storage group goes is the choice of
# whoever started the move (finishing it may fill the disk it was leaving, or a disk just mounted elsewhere), and
# the cure's own steps would set logs aside and start a new stream in folders the move is leaving; so the finding
# names the command, and the cure waits for it.
BLOCKING = frozenset(
    {
        "store-unrecoverable",
        "store-missing",
        "store-damaged",
        "store-state",
        "config-mismatch",
        "restore-unfinished",
        "move-unfinished",
        "move-journal-damaged",
    }
)


@dataclass(frozen=True)
class Finding:
    """One thing found: how bad, a stable code for scripts, what is wrong, where, and what to do."""

    severity: str
    code: str
    what: str
    where: str
    hint: str
    sg: str | None = None

    @property
    def fixable(self) -> bool:
        """Whether ``doctor --fix`` cures it."""
        return self.code in CURED or self.code in CLEARED

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "fixable": self.fixable}


@dataclass
class StoreFacts:
    name: str
    path: str
    state: str  # the header's state name, or "Missing" / "Damaged"
    dirty: bool = False
    replays: tuple[int, int] | None = None  # generations soft recovery replays for it


@dataclass
class GroupFacts:
    """One storage group as doctor found it."""

    name: str
    config: SgConfig  # resolved
    holder: str | None  # who has it mounted (its lock's holder), None when nobody
    current_gen: int | None = None
    stores: list[StoreFacts] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.code in BLOCKING]

    @property
    def cure(self) -> str | None:
        """ "full" when the article's cure applies, "clear" when only a dead backup's leftovers need clearing."""
        codes = {f.code for f in self.findings}
        if codes & CURED:
            return "full"
        return "clear" if codes & CLEARED else None

    def add(self, severity: str, code: str, what: str, where: str, hint: str) -> None:
        self.findings.append(Finding(severity, code, what, where, hint, self.name))


@dataclass
class Diagnosis:
    home: str
    groups: list[GroupFacts]
    other: list[Finding] = field(default_factory=list)  # not of one storage group (the backup target)

    @property
    def findings(self) -> list[Finding]:
        return [f for g in self.groups for f in g.findings] + self.other

    @property
    def healthy(self) -> bool:
        return not any(f.severity in (ERROR, WARNING) for f in self.findings)

    def group(self, name: str) -> GroupFacts:
        return next(g for g in self.groups if g.name == name)
