"""The Information Store service's state: the one process that owns a server home while it runs.

``InformationStore`` takes the home's service lock (``<home>/service.lock``, an OFD lock that dies with the
process, so a killed service never blocks the next one), opens the home, mounts what is configured to mount at
start, and hosts the components clients reach through the API: storage groups and stores (mount, dismount),
streaming backup sessions with leases (service/sessions.py), the mailbox layer with its commit batching
(service/mailhost.py), and the metrics. The shadow-copy writers will be one more component here.

``service.json`` beside the lock tells clients where the socket is; it is informational only (a client still
checks that the socket answers) and is removed at a clean stop.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any, NamedTuple

from shadowstore import config as cfg
from shadowstore.config import parse_seconds
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.engine.store import Store
from shadowstore.errors import NotFoundError, ShadowStoreError, StorageGroupBusyError
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN
from shadowstore.home import ServerHome, offline_status
from shadowstore.io.fs import FileSystem, Lock, OsFileSystem
from shadowstore.io.replace import atomic_write
from shadowstore.leftovers import add_leftovers
from shadowstore.service.homefiles import service_info_path, service_lock_path
from shadowstore.service.mailhost import MailHost
from shadowstore.service.metrics import ServiceMetrics
from shadowstore.service.sessions import SessionTable
from shadowstore.service.sharedwaits import create_shared, remove_shared, shared_waits_path
from shadowstore.service.vsshost import VssHost
from shadowstore.tools.startmount import StartReport, mount_configured, mount_group

BUSY_RETRY_SECONDS = 5.0  # how often a storage group another program held at start is tried again
DEFAULT_SESSION_LEASE = 30.0  # seconds a backup client may stay silent before its session is ended (event 215)


class InformationStore:
    """One running service. ``start`` and ``stop`` bracket its life; everything else is called by the API."""

    def __init__(
        self, home_path: str, *, fs: FileSystem | None = None, policy: MaintenancePolicy | None = None
    ) -> None:
        self.home_path = os.path.abspath(home_path)
        self.fs = fs or OsFileSystem()
        self._policy = policy
        self.home: ServerHome | None = None
        self._lock: Lock | None = None
        self._mutex = threading.RLock()  # mount, dismount and stop, one at a time
        self.started: str | None = None
        self.endpoints: dict[str, object] = {}
        self.mounted_at_start: list[str] = []
        self.start_failures: list[dict[str, object]] = []
        self.announce: Callable[[str], None] = lambda text: None  # the service's output (server.py sets it)
        self._stopping = threading.Event()
        self.shared_waits: str | None = None  # the file of the commits' waits (service/sharedwaits.py)
        self.sessions = SessionTable(self)
        self.mail = MailHost(self)
        self.metrics = ServiceMetrics(self)
        self.vss = VssHost(self)

    # --- life ------------------------------------------------------------------------------------------------

    def start(self) -> dict[str, object]:
        """Own the home and mount what is configured to mount. Raises StorageGroupBusyError (exit 5) naming
        the process that owns it, NotFoundError when there is no home there."""
        home = ServerHome.open(self.home_path, fs=self.fs, policy=self._policy)  # NotFoundError with the hint
        try:
            self._lock = self.fs.lock(service_lock_path(self.home_path), f"shadowstore serve (pid {os.getpid()})")
        except StorageGroupBusyError as exc:
            raise StorageGroupBusyError(
                f"the server home {self.home_path} is already owned by another process: {exc.message}",
                hint="stop that service first ('shadowstore status' talks to it), or serve another home with --home",
            ) from None
        self.home = home
        self._share_waits(home)
        self.started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            mounted = self._mount_at_start(home)
        except BaseException:
            self.stop()
            raise
        self.mounted_at_start = mounted
        busy = [f["sg"] for f in self.start_failures if f["store"] is None and f["error"] == "StorageGroupBusyError"]
        if busy:
            threading.Thread(target=self._mount_when_free, args=(busy,), name="mount when free", daemon=True).start()
        return {"mounted": mounted}

    def _mount_when_free(self, names: list[str]) -> None:
        """Try again, every BUSY_RETRY_SECONDS, to mount each storage group another program held at start (a
        backup program that ran on the home while no service did, say), so that it is served once that program
        ends, with nobody running 'shadowstore mount'. A group mounted or dismounted through the API meanwhile,
        or failing for another reason, is left to the administrator."""
        waiting = [str(name) for name in names]
        while waiting and not self._stopping.wait(BUSY_RETRY_SECONDS):
            with self._mutex:
                if self.home is None:
                    return
                for name in list(waiting):
                    if self._mount_if_free(self.home, name):
                        waiting.remove(name)

    def _mount_if_free(self, home: ServerHome, name: str) -> bool:
        """One try of ``_mount_when_free`` for ``name``; whether to stop trying. Requires: ``_mutex`` is held."""
        if not any(f["sg"] == name and f["store"] is None for f in self.start_failures):
            return True  # mounted through the API since
        try:
            home.forget_dismounted()  # why: the program that held it may have changed its files or folders
            sg_config = home.config.find(name)
        except ShadowStoreError:
            return True  # no longer configured, or the configuration cannot be read: the administrator's turn
        report = StartReport()
        mount_group(home, sg_config, report)
        if report.failed and isinstance(report.failed[0][2], StorageGroupBusyError):
            return False
        failed = [{"sg": sg, "store": store, **error.to_dict()} for sg, store, error in report.failed]
        self.start_failures = [f for f in self.start_failures if f["sg"] != name] + failed
        if not failed:
            self.announce(f"{name} is mounted now: the program that held it when the service started has ended")
        return True

    def _share_waits(self, home: ServerHome) -> None:
        """Keep the commits' waits where a backup program maps them (service/sharedwaits.py), before any
        storage group is made: each group counts into the home's."""
        path = shared_waits_path(home.home_id, home.path)
        shared = create_shared(path)
        if shared is not None:
            home.flush_waits = shared
            self.shared_waits = path

    def _mount_at_start(self, home: ServerHome) -> list[str]:
        """Mount what the configuration says to mount at start (tools/startmount.py). A storage group that fails
        to mount stops nothing else: its error is kept for ``status`` and the service serves the others."""
        report = mount_configured(home)
        self.start_failures = [{"sg": sg, "store": store, **error.to_dict()} for sg, store, error in report.failed]
        groups = dict.fromkeys(sg for sg, _store in report.mounted)
        return list(groups)

    def publish(self, endpoints: dict[str, object]) -> None:
        """Write ``service.json``: where clients find the service (its socket, its TCP address)."""
        self.endpoints = endpoints
        info = {"pid": os.getpid(), "started": self.started, **endpoints}
        atomic_write(self.fs, service_info_path(self.home_path), json.dumps(info, indent=2).encode())
        where = ", ".join(f"{k} {v}" for k, v in endpoints.items() if v)
        self.owned().events.emit(
            1060, detail=f"pid {os.getpid()}", mounted=", ".join(self.mounted_at_start) or "nothing", endpoints=where
        )

    def stop(self) -> list[UncleanStore]:
        """End every backup session, dismount every storage group, release the home; returns the stores that
        are not in Clean Shutdown afterwards (one a full disk or an I/O error left in Dirty Shutdown, or whose
        storage group never mounted). Safe to call twice (the second call returns nothing)."""
        self._stopping.set()
        with self._mutex:
            home = self.home
            if home is None:
                return []
            self.vss.stop()
            self.sessions.end_all("the Information Store service is stopping")
            failures: list[ShadowStoreError] = []
            for sg in home.storage_groups():
                try:
                    sg.dismount()
                except ShadowStoreError as exc:
                    failures.append(exc)
            unclean = unclean_stores(home)
            home.events.emit(1061, detail=f"pid {os.getpid()}", sync=True)
            with suppress(FileNotFoundError):
                self.fs.unlink(service_info_path(self.home_path))
            if self.shared_waits is not None:
                remove_shared(self.shared_waits)
                self.shared_waits = None
            self.home = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            if failures:
                raise failures[0]
            return unclean

    # --- storage groups and stores ---------------------------------------------------------------------------

    def owned(self) -> ServerHome:
        if self.home is None:
            raise NotFoundError("the Information Store service is stopping")
        return self.home

    def storage_group(self, name: str) -> StorageGroup:
        """The storage group ``name``; one another process added to the configuration since (a restore into
        the Recovery Storage Group) is found too. Raises NotFoundError naming the configured ones."""
        home = self.owned()
        try:
            return home.storage_group(name)
        except NotFoundError:
            home.forget(name)
            return home.storage_group(name)

    def store(self, sg_name: str, store_name: str) -> Store:
        return self.storage_group(sg_name).store(store_name)

    def mount(self, sg_name: str, store_name: str | None = None) -> dict[str, object]:
        with self._mutex:
            sg = self.storage_group(sg_name)
            if not sg.mounted:
                # why: while it was dismounted another process may have moved its folders (sg move) or changed
                # its stores; mounting the folders of before found none of its files
                self.owned().forget_dismounted()
                sg = self.storage_group(sg_name)
            if store_name is None:
                sg.mount()
            else:
                sg.store(store_name)  # NotFoundError before anything is mounted
                if not sg.mounted:
                    sg.mount()
                if not sg.store(store_name).mounted:
                    sg.mount_store(store_name)
            return sg.status()

    def dismount(self, sg_name: str, store_name: str | None = None) -> dict[str, object]:
        with self._mutex:
            sg = self.storage_group(sg_name)
            if store_name is None:
                self.sessions.end_for(sg.name, "the storage group is being dismounted")
                self.mail.forget(sg.name)
                sg.dismount()
                # why forget: another process may now restore into it; the next mount reads its files afresh
                self.owned().forget(sg.name)
                return {"name": sg.name, "mounted": False, "stores": [s.status() for s in sg.stores.values()]}
            sg.store(store_name)
            sg.dismount_store(store_name)
            return sg.status()

    def status(self) -> dict[str, Any]:
        """``shadowstore status`` as the service sees the home: each storage group as its files show it (the
        same document the CLI makes without the service), with who mounted it and which stores are mounted."""
        home = self.owned()
        # What another process changed in a dismounted group since (sg move, a restore) shows. Not while a mount
        # or dismount runs: it holds the group it is about to mount, and status must answer during a long recovery.
        if self._mutex.acquire(blocking=False):
            try:
                home.forget_dismounted()
            finally:
                self._mutex.release()
        status = home.status()
        groups = []
        for entry in status["storage_groups"]:  # type: ignore[attr-defined]
            config = home.config.find(entry["name"]).resolved(home.path)
            disk = offline_status(self.fs, config)
            # why "in": an entry read from the files (the group not mounted here) has no store state, though its
            # lock may still be held (the engine dismounting it after a full disk or an I/O error)
            live = {s["name"]: s["mounted"] for s in entry["stores"] if "mounted" in s}
            for store in disk["stores"]:  # type: ignore[attr-defined]
                store["mounted"] = live.get(store["name"], False)
            disk["mounted"] = entry["mounted"]
            disk["mounted_by"] = f"the Information Store service (pid {os.getpid()})" if entry["mounted"] else None
            disk["config_mismatches"] = entry["config_mismatches"]
            groups.append(disk)
        status["storage_groups"] = groups
        add_leftovers(home, status)  # why here: a client over TCP may have no copy of the home to read them from
        status["service"] = {
            "pid": os.getpid(),
            "started": self.started,
            **self.endpoints,
            "backup_sessions": self.sessions.describe(),
            "start_failures": self.start_failures,
        }
        return status

    def flush_waits(self) -> list[int]:
        """The waits of the home's durable commits since the service started (engine/flushwaits.py)."""
        return self.owned().flush_waits.reading()

    def settings(self) -> dict[str, Any]:
        """The home's settings as the configuration file says now ('config set' while the service runs takes
        effect at the next job or session)."""
        return dict(cfg.load(self.fs, self.home_path).settings)

    def session_lease(self) -> float:
        """``service.session_lease_seconds`` of the home's configuration, else 30 s."""
        value = self.settings().get("service", {}).get("session_lease_seconds")
        return DEFAULT_SESSION_LEASE if value is None else parse_seconds(value, "service.session_lease_seconds")


class UncleanStore(NamedTuple):
    """A store the service leaves out of Clean Shutdown when it stops."""

    sg: str
    store: str
    state: str  # its header's state ("Dirty Shutdown"), or why its header could not be read
    required: tuple[int, int] | None  # Log Required, when the header names generations

    def describe(self) -> str:
        needs = f" (Log Required: {self.required[0]}-{self.required[1]})" if self.required else ""
        return f"{self.sg}/{self.store} is in {self.state}{needs}"


def unclean_stores(home: ServerHome) -> list[UncleanStore]:
    """Every store of ``home`` whose header is not in Clean Shutdown, read from its file (for a store of a
    dismounted storage group, what a crash now would leave)."""
    found = []
    for sg in home.storage_groups():
        for store in sg.stores.values():
            try:
                header = store.read_header()
            except (ShadowStoreError, OSError) as exc:
                found.append(UncleanStore(sg.name, store.name, f"no readable state ({exc})", None))
                continue
            if header.state != STATE_CLEAN_SHUTDOWN:
                required = (header.log_required_min, header.log_required_max) if header.log_required_min else None
                found.append(UncleanStore(sg.name, store.name, header.state_name, required))
    return found
