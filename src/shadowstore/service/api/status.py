"""``GET /v1/status``: the home as ``shadowstore status`` shows it, and the service's own facts."""

from __future__ import annotations

import os
from importlib.metadata import version
from typing import Any

from fastapi import APIRouter, Request

from shadowstore.engine.flushwaits import split
from shadowstore.service.api.deps import host_of
from shadowstore.service.sharedread import shared_reads_work

router = APIRouter(tags=["status"])


@router.get("/v1/health", summary="Whether the service answers (cheap; clients probe with it)")
def health(request: Request) -> dict[str, Any]:
    host = host_of(request)
    return {
        "service": "shadowstore",
        "version": version("shadowstore"),
        "pid": os.getpid(),
        "home": host.home_path,
        "home_id": host.home.home_id if host.home is not None else None,  # a TCP client checks it is its home's
        "mail_socket": host.endpoints.get("mail_socket"),  # deliveries without HTTP (service/mailsocket.py)
        "mail_shared_read": shared_reads_work(),  # reads on it may ask for shared memory (service/sharedread.py)
        "flush_waits": host.shared_waits,  # the commits' waits, for a paced backup to map (service/sharedwaits.py)
    }


@router.get("/v1/status", summary="Storage groups, stores, backup sessions and the service")
def status(request: Request) -> dict[str, Any]:
    return host_of(request).status()


@router.get(
    "/v1/flush-waits",
    summary="How long durable commits waited for the log disks: a cumulative histogram a paced backup reads",
)
def flush_waits(request: Request) -> dict[str, Any]:
    """``buckets``: counts per bucket of engine/flushwaits.py (bucket i holds waits from ``lower_ns(i)``), over
    the home's storage groups since the service started; ``quiet``: the same for commits made while no backup
    ran. A backup program on this machine maps the file ``/v1/health`` names as ``flush_waits`` instead
    (service/sharedwaits.py)."""
    every, quiet = split(host_of(request).flush_waits())
    return {"buckets": every, "quiet": quiet}
