"""What the routes share: the host the application serves."""

from __future__ import annotations

from fastapi import Request

from shadowstore.service.host import InformationStore


def host_of(request: Request) -> InformationStore:
    host: InformationStore = request.app.state.host
    return host
