"""What the service mounts when it starts: every store configured to mount at start (``mount_at_start``, the
default), and nothing else.

    report = mount_configured(home)
    for sg, store, error in report.failed: ...   # the service reports these; nothing here prints

A storage group with at least one store to mount at start is mounted whole, and then the stores configured not
to are dismounted on their own (engine/storemount.py); a storage group with none (or no store at all) is left
dismounted. Why mount every store first rather than only the wanted ones: a mount recovers all the stores of a
storage group together. Soft recovery replays every store in Dirty Shutdown, and a store left out of it would
still need the logs from its replay start, which the checkpoint and circular logging would then pass. So a store
left dismounted at start is in Clean Shutdown, needing no log; the price is that every store file of such a
storage group must be present and readable for it to mount.

Calling it again converges on the configuration: a storage group already mounted is not mounted again, a wanted
store dismounted since is mounted again, and one configured not to mount at start is dismounted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shadowstore.errors import ShadowStoreError

if TYPE_CHECKING:
    from shadowstore.config import SgConfig
    from shadowstore.home import ServerHome


@dataclass
class StartReport:
    """What ``mount_configured`` did, as (storage group, store) pairs."""

    mounted: list[tuple[str, str]] = field(default_factory=list)  # mounted when it returned
    skipped: list[tuple[str, str]] = field(default_factory=list)  # configured not to mount at start: dismounted
    # (storage group, store or None for the whole group, the error): a storage group that failed to mount
    # leaves its stores in no other list; a store that failed to mount or dismount stays as it was
    failed: list[tuple[str, str | None, ShadowStoreError]] = field(default_factory=list)


def mount_configured(home: ServerHome) -> StartReport:
    """Mount every storage group of ``home`` that has a store to mount at start and leave dismounted each store
    configured not to (see the module documentation). A failure of one storage group or store stops no other:
    it is listed in ``failed`` (its events are in the event log), never raised."""
    report = StartReport()
    for sg_config in home.config.storage_groups:
        mount_group(home, sg_config, report)
    return report


def mount_group(home: ServerHome, sg_config: SgConfig, report: StartReport) -> None:
    """What ``mount_configured`` does for one storage group, into ``report``."""
    wanted = [s.name for s in sg_config.stores if s.mount_at_start]
    if not wanted:
        report.skipped.extend((sg_config.name, s.name) for s in sg_config.stores)
        return
    try:
        sg = home.storage_group(sg_config.name)
        sg.mount()
    except ShadowStoreError as exc:
        report.failed.append((sg_config.name, None, exc))
        return
    _settle_stores(home, sg_config, report)


def _settle_stores(home: ServerHome, sg_config: SgConfig, report: StartReport) -> None:
    """Mount the wanted stores of the mounted storage group and dismount the others."""
    sg = home.storage_group(sg_config.name)
    for store_config in sg_config.stores:
        where = (sg_config.name, store_config.name)
        try:
            if store_config.mount_at_start:
                sg.mount_store(store_config.name)
            else:
                sg.dismount_store(store_config.name)
        except ShadowStoreError as exc:
            report.failed.append((*where, exc))
            continue
        (report.mounted if store_config.mount_at_start else report.skipped).append(where)
