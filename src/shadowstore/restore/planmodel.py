"""What a restore plan is: how far it goes (RestoreTarget), and which files of which backup sets it uses
(RestorePlan). restore/plan.py makes plans; restore/run.py carries them out; both describe them with this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shadowstore.backup.catalog import SetInfo
from shadowstore.backup.manifest import DatabaseEntry, FileEntry, Manifest
from shadowstore.errors import InvalidParameterError
from shadowstore.format.common import iso_time

LATEST, AT_TIME, AT_GENERATION = "latest", "time", "generation"


@dataclass(frozen=True)
class RestoreTarget:
    """How far a restore goes: the latest state the logs hold, the transactions committed at or before a
    time (µs since 1970, UTC), or the end of a log generation."""

    kind: str
    until_us: int | None = None
    until_gen: int | None = None

    @classmethod
    def latest(cls) -> RestoreTarget:
        return cls(LATEST)

    @classmethod
    def at_time(cls, until_us: int) -> RestoreTarget:
        return cls(AT_TIME, until_us=until_us)

    @classmethod
    def at_generation(cls, until_gen: int) -> RestoreTarget:
        if until_gen < 1:
            raise InvalidParameterError(f"generation {until_gen}: generations start at 1")
        return cls(AT_GENERATION, until_gen=until_gen)

    def describe(self) -> str:
        if self.until_us is not None:
            return f"the transactions committed at or before {iso_time(self.until_us)}"
        if self.until_gen is not None:
            return f"the end of log generation {self.until_gen}"
        return "the latest state"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "until": iso_time(self.until_us) if self.until_us is not None else None,
            "until_us": self.until_us,
            "until_gen": self.until_gen,
        }


@dataclass(frozen=True)
class DatabaseSource:
    backup_id: str
    database: DatabaseEntry
    entry: FileEntry


@dataclass(frozen=True)
class LogSource:
    generation: int
    backup_id: str
    entry: FileEntry


@dataclass(frozen=True)
class RestorePlan:
    home: str  # the home whose backup sets it uses
    sg: str
    log_base: str
    log_signature: dict[str, Any]
    target: RestoreTarget
    sets: list[SetInfo]  # the path: the full (or copy) first, then what is applied on it
    databases: list[DatabaseSource]
    logs: list[LogSource]  # contiguous generations first_gen..last_gen
    first_gen: int
    last_gen: int
    live_from: int | None = None  # continue with the live log folder from this generation
    ignored: tuple[str, ...] = ()  # newer sets left out, each with why (incomplete ones)
    # the creation time of the newest log stream the target holds for this home and group: a stream the
    # restore begins is created after it (restore/place.replace_log_stream)
    newest_stream: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": self.home,
            "sg": self.sg,
            "log_base": self.log_base,
            "log_signature": self.log_signature,
            "target": self.target.to_dict(),
            "sets": [
                {"id": s.backup_id, "kind": s.kind, "first_gen": _m(s).first_gen, "last_gen": _m(s).last_gen}
                for s in self.sets
            ],
            "databases": [
                {
                    "store": d.database.store,
                    "file": d.database.file,
                    "backup_id": d.backup_id,
                    "name": d.entry.name,
                    "size": d.entry.size,
                    "replay_start_gen": d.database.replay_start_gen,
                }
                for d in self.databases
            ],
            "logs": [
                {
                    "generation": log.generation,
                    "backup_id": log.backup_id,
                    "name": log.entry.name,
                    "size": log.entry.size,
                }
                for log in self.logs
            ],
            "first_gen": self.first_gen,
            "last_gen": self.last_gen,
            "live_from": self.live_from,
            "ignored": list(self.ignored),
            "newest_stream": self.newest_stream,
            "bytes": sum(d.entry.size for d in self.databases) + sum(log.entry.size for log in self.logs),
        }

    def describe(self) -> list[str]:
        """The plan in words, one line per set, for ``restore plan``."""
        lines = [f"Restore of {self.sg!r} of home {self.home} to {self.target.describe()}:"]
        for s in self.sets:
            m = _m(s)
            what = []
            dbs = [d for d in self.databases if d.backup_id == s.backup_id]
            if dbs:
                what.append(
                    "stores "
                    + ", ".join(f"{d.database.store} ({d.database.file}, {d.entry.size:,} bytes)" for d in dbs)
                )
            gens = [log.generation for log in self.logs if log.backup_id == s.backup_id]
            if gens:
                what.append(f"logs {min(gens)}-{max(gens)}")
            if not what:
                what.append(f"nothing needed (its logs {m.first_gen}-{m.last_gen} are not needed)")
            lines.append(f"  {s.kind:<12} {s.backup_id}  {'; '.join(what)}")
        lines.append(
            f"Replay generations {self.first_gen}-{self.last_gen} from the backups"
            + (f", then the live logs from generation {self.live_from} on" if self.live_from is not None else "")
            + f"; {self.to_dict()['bytes']:,} bytes to copy."
        )
        files = len(self.databases) + len({(log.backup_id, log.entry.name) for log in self.logs})
        lines.append(f"All {files} files it needs are in the target with the sizes their manifests record.")
        lines += [f"Not used: {why}" for why in self.ignored]
        return lines


def _m(s: SetInfo) -> Manifest:
    assert s.manifest is not None, s.backup_id
    return s.manifest
