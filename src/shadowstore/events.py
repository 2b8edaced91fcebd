"""The application event log.

Events have the fields of a Windows event record (type, source, category, ID, date, time, user, computer,
description) plus the storage group and structured parameters. They are stored as JSON lines in
``<home>/events/events.jsonl``, rotated at ``ROTATE_BYTES`` into ``events.1.jsonl`` ... ``events.N.jsonl``
(oldest has the highest number), and also sent to Python logging under ``shadowstore.events``.

Durability: each line is appended whole (a short write is continued, never left half done). Error and warning
events, and any event emitted with ``sync=True``, are synced before ``emit`` returns (the file's data, and its
folder when this object has not yet synced the folder for this file); informational events are not, so a crash
may lose the newest of them, and a line cut by a crash is skipped when reading. A failure to write or sync is
logged with the event's text (on ``shadowstore.eventlog``), never raised: the event log must not take the engine
down. So that the events of a full disk are still written, the folder keeps a reserve, ``events.reserve``
(``RESERVE_BYTES`` of zeros); an append that finds the disk full removes it and tries again, and it is made
again once the disk has room to spare. The engine also syncs the informational
events an administrator audits by: a backup's end (202) and the log deletion it is about to do (224, before
the first file goes), the end of recovery (302), a dismount (1001), circular-logging deletions (1030), a
checkpoint advanced for log health (1012) and a restore's end (205).

Several processes may share the log: the size check, the rotation and the append happen under an exclusive lock
on ``events.lock`` in the same folder, so no line is lost or written twice and the log rotates once when it
reaches ``ROTATE_BYTES``. Readers open every file under that lock too, so a rotation cannot make them read a file
twice or skip one. Event IDs, sources and texts come from :mod:`shadowstore.eventids`.
ESE-sourced descriptions start the way the originals do: ``Information Store (PID) First Storage Group: <text>``.
"""

from __future__ import annotations

import datetime as dt
import errno
import getpass
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from typing import Any

from shadowstore.eventids import CATALOG, EventType
from shadowstore.io.fs import FileSystem, OsFileSystem, opened
from shadowstore.io.replace import atomic_write

ROTATE_BYTES = 8 * 1024 * 1024
RESERVE_NAME = "events.reserve"  # zeros, given back to the file system when the disk is full (see _append)
RESERVE_BYTES = 256 * 1024  # a few hundred events
RESERVE_CHECK_SECONDS = 60.0
RESERVE_ROOM = 16  # the reserve is made again only where it takes at most a sixteenth of the free space
KEEP_ROTATED = 4
LOCK_NAME = "events.lock"
SYNCED_TYPES = (EventType.ERROR, EventType.WARNING)
PROCESS_NAME = "Information Store"
_log = logging.getLogger("shadowstore.events")
_problems = logging.getLogger("shadowstore.eventlog")  # the event log itself failing: always worth saying


@dataclass
class Event:
    event_id: int
    type: str
    source: str
    category: str
    time: str  # ISO 8601, UTC
    user: str
    computer: str
    description: str
    sg: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def timestamp(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.time)

    def render(self) -> str:
        """The event in the Windows event viewer layout, one field a line."""
        t = self.timestamp.astimezone(dt.UTC)
        lines = [
            f"Event Type:\t{self.type}",
            f"Event Source:\t{self.source}",
            f"Event Category:\t{self.category}",
            f"Event ID:\t{self.event_id}",
            f"Date:\t\t{t:%m/%d/%Y}",
            f"Time:\t\t{t:%H:%M:%S} UTC",
            f"User:\t\t{self.user}",
            f"Computer:\t{self.computer}",
        ]
        if self.sg:
            lines.append(f"Storage Group:\t{self.sg}")
        lines.append("Description:")
        lines.append(self.description)
        return "\n".join(lines)


class EventLog:
    """Append-only event log. Thread-safe; safe to append from several processes (see the module docstring)."""

    def __init__(self, directory: str | None, fs: FileSystem | None = None) -> None:
        self.directory = directory
        self.fs: FileSystem = fs or OsFileSystem()
        self._mutex = threading.Lock()
        self._emitted = threading.Condition(self._mutex)
        self._file_mutex = threading.Lock()  # this object's appends, one at a time (see _append)
        self._synced_entry: int | None = None  # the inode of events.jsonl whose folder entry this object synced
        self.memory: list[Event] = []  # every event this object wrote, for callers and tests
        self._reserve_checked = 0.0  # monotonic time the reserve was last looked for (0: not yet)
        if directory is not None:
            self.fs.makedirs(directory)

    @property
    def path(self) -> str | None:
        return None if self.directory is None else os.path.join(self.directory, "events.jsonl")

    def emit(self, event_id: int, *, sg: str | None = None, sync: bool = False, **params: Any) -> Event:
        """Record event ``event_id`` with its catalogue text filled from ``params``; returns the event. Error and
        warning events, and any event with ``sync``, are durable when this returns (if the disk allows)."""
        spec = CATALOG[event_id]
        text = spec.template.format(sg=sg, **params)
        if spec.source == "ESE":
            prefix = f"{PROCESS_NAME} ({os.getpid()}) " + (f"{sg}: " if sg else "")
            text = prefix + text
        event = Event(
            event_id=event_id,
            type=spec.type.value,
            source=spec.source,
            category=spec.category,
            time=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            user=_user(),
            computer=socket.gethostname(),
            description=text,
            sg=sg,
            params={k: _plain(v) for k, v in params.items()},
        )
        level = {EventType.ERROR: logging.ERROR, EventType.WARNING: logging.WARNING}.get(spec.type, logging.INFO)
        _log.log(level, "%s %d: %s", spec.source, event_id, text)
        with self._file_mutex:
            if self.path is not None:
                line = json.dumps(event.to_dict(), sort_keys=True) + "\n"
                self._append(line, sync or spec.type in SYNCED_TYPES, f"{spec.source} {event_id}: {text}")
            with self._mutex:
                self.memory.append(event)
                self._emitted.notify_all()
        return event

    def wait_for(self, event_id: int, timeout: float, *, after: int = 0) -> Event | None:
        """The first event ``event_id`` this object wrote at index >= ``after``, waiting up to ``timeout`` s."""

        def find() -> Event | None:
            return next((e for e in self.memory[after:] if e.event_id == event_id), None)

        with self._emitted:
            self._emitted.wait_for(lambda: find() is not None, timeout)
            return find()

    def _append(self, line: str, sync: bool, summary: str) -> None:
        """Append ``line``; on a full disk give the reserve back and try once more. What cannot be written is
        said on the ``shadowstore.eventlog`` logger with ``summary``, the event itself. Requires: ``_file_mutex``
        is held."""
        for retry in (False, True):
            try:
                self._append_locked(line, sync)
                break
            except OSError as exc:
                if not retry and exc.errno == errno.ENOSPC and self._give_back_reserve():
                    continue
                # why: the event log must never take the engine down; a full disk is reported by the engine itself
                _problems.warning("could not write event log %s (%s); the event: %s", self.path, exc, summary)
                return
        self._keep_reserve()

    def _append_locked(self, line: str, sync: bool) -> None:
        """The folder's lock is held across the fsyncs (when ``sync``): why, so that no other process rotates the
        file between the append and the sync of its name."""
        assert self.path is not None and self.directory is not None
        with self.fs.locked(os.path.join(self.directory, LOCK_NAME)):
            st = self.fs.stat(self.path)
            if st is not None and st.size >= ROTATE_BYTES:  # checked under the lock: one rotation per fill
                self._rotate()
                st = self.fs.stat(self.path)
            try:
                self.fs.append(self.path, line.encode(), sync=sync)
            except OSError:
                self._cut_back(st.size if st is not None else 0)
                raise
            if sync:
                self._sync_entry()

    def _cut_back(self, size: int) -> None:
        """Remove what a failed append left of its line (a full disk can take part of it), so that the next
        line does not run on from it and both fail to read back. Requires: the folder's lock is held."""
        assert self.path is not None
        with suppress(OSError):
            handle = self.fs.open(self.path)
            try:
                if handle.size() > size:
                    handle.truncate(size)
            finally:
                handle.close()

    def _give_back_reserve(self) -> bool:
        """Remove the reserve (zeros, nothing a user needs) so that its space takes the events of a full disk;
        whether there was one."""
        assert self.directory is not None
        try:
            self.fs.unlink(os.path.join(self.directory, RESERVE_NAME))
        except OSError:
            return False
        self._reserve_checked = time.monotonic()
        _problems.warning(
            "event log %s: the disk is full; its reserve of %d bytes was given back", self.path, RESERVE_BYTES
        )
        return True

    def _keep_reserve(self) -> None:
        """Make the reserve when it is missing and the disk has room to spare for it (RESERVE_ROOM times its
        size), looking at most once a RESERVE_CHECK_SECONDS."""
        assert self.directory is not None
        now = time.monotonic()
        if self._reserve_checked and now - self._reserve_checked < RESERVE_CHECK_SECONDS:
            return
        self._reserve_checked = now
        path = os.path.join(self.directory, RESERVE_NAME)
        with suppress(OSError):
            if self.fs.stat(path) is None and self.fs.free_space(self.directory) >= RESERVE_ROOM * RESERVE_BYTES:
                atomic_write(self.fs, path, bytes(RESERVE_BYTES))

    def _sync_entry(self) -> None:
        """Make the current file's name durable, once per file: it may have been made by an unsynced append."""
        assert self.path is not None and self.directory is not None
        st = self.fs.stat(self.path)
        if st is not None and st.ino != self._synced_entry:
            self.fs.fsync_dir(self.directory)
            self._synced_entry = st.ino

    def _rotate(self) -> None:
        """Requires: the folder's lock is held."""
        assert self.directory is not None and self.path is not None
        for index in range(KEEP_ROTATED, 0, -1):
            older = os.path.join(self.directory, f"events.{index}.jsonl")
            newer = self.path if index == 1 else os.path.join(self.directory, f"events.{index - 1}.jsonl")
            if self.fs.exists(newer):
                self.fs.rename(newer, older)
        self.fs.fsync_dir(self.directory)

    def read(self) -> Iterator[Event]:
        """Every stored event, oldest first (or those written by this object when it has no directory)."""
        if self.directory is None:
            yield from list(self.memory)
            return
        for content in self._contents():
            for line in content.decode("utf-8", "replace").splitlines():
                try:
                    yield Event.from_dict(json.loads(line))
                except (ValueError, TypeError):
                    continue  # a line torn by a crash while it was appended

    def _contents(self) -> list[bytes]:
        """The bytes of every file, oldest first. The files are opened under the folder's lock, so they are the
        files of one instant; an open file keeps its content across a later rotation."""
        assert self.directory is not None
        names = [f"events.{i}.jsonl" for i in range(KEEP_ROTATED, 0, -1)] + ["events.jsonl"]
        handles = []
        with ExitStack() as files:
            with ExitStack() as lock:
                # why suppress: a reader without write access to the folder still reads, unlocked (a rotation may
                # then show it a file twice)
                with suppress(OSError):
                    lock.enter_context(self.fs.locked(os.path.join(self.directory, LOCK_NAME)))
                for name in names:
                    with suppress(FileNotFoundError):
                        handles.append(files.enter_context(opened(self.fs, os.path.join(self.directory, name))))
            return [handle.pread(handle.size(), 0) for handle in handles]

    def query(
        self,
        *,
        source: str | None = None,
        event_id: int | None = None,
        since: dt.datetime | None = None,
        sg: str | None = None,
    ) -> list[Event]:
        out = []
        for event in self.read():
            if source is not None and event.source.lower() != source.lower():
                continue
            if event_id is not None and event.event_id != event_id:
                continue
            if sg is not None and event.sg != sg:
                continue
            if since is not None and event.timestamp < since:
                continue
            out.append(event)
        return out


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "N/A"


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)
