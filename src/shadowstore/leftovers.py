"""What earlier work left in a server home, which ``status`` shows beside the storage groups: the restores that
were started and not finished (restore/journal.py), and how much each storage group's quarantine folders hold
(quarantine.py). One function, so that the service's status and the command line's own say the same."""

from __future__ import annotations

from typing import Any

from shadowstore.home import ServerHome
from shadowstore.quarantine import total_bytes
from shadowstore.restore.journal import unfinished_restores


def add_leftovers(home: ServerHome, status: dict[str, Any]) -> dict[str, Any]:
    """``status`` (a ``status`` document of ``home``) with ``unfinished_restores`` and each storage group's
    ``quarantine`` (folders and bytes) added; returns it."""
    status["unfinished_restores"] = unfinished_restores(home)
    for sg in status["storage_groups"]:
        folders, size = total_bytes(home, sg["name"])
        sg["quarantine"] = {"folders": folders, "bytes": size}
    return status
