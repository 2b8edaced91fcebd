"""``GET /v1/events``: the application event log, filtered as ``shadowstore events`` filters it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from shadowstore.service.api.deps import host_of

router = APIRouter(tags=["events"])


@router.get("/v1/events", summary="Events, oldest first")
def events(
    request: Request,
    source: Annotated[str | None, Query(max_length=64)] = None,
    event_id: Annotated[int | None, Query(ge=0, le=65535)] = None,
    since: Annotated[dt.datetime | None, Query(description="ISO 8601; UTC unless it says otherwise")] = None,
    sg: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int | None, Query(ge=0, le=100_000, description="Only the last N matching events")] = None,
) -> list[dict[str, Any]]:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    found = host_of(request).owned().events.query(source=source, event_id=event_id, since=since, sg=sg)
    if limit is not None:
        found = found[-limit:] if limit > 0 else []
    return [e.to_dict() for e in found]
