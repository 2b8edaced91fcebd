"""The service's HTTP API: one FastAPI application over an ``InformationStore``, its routes in service/api/.

Every failure is answered as ``{"error": {...}}`` (the document ``--json`` prints for the same error) with a
4xx status for what the caller can change and a 5xx only for the server's own trouble; a bug is logged with its
traceback on the service's side and answered with one line, never the traceback. Bad input (a wrong type, a
missing field, an unknown route) is a 4xx that names the field.

Over TCP every request needs the bearer token (``BearerAuth`` wraps the application for that listener only);
the Unix socket is guarded by its mode (0600), as a local socket of a system service is.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from shadowstore.errors import InvalidParameterError, NotFoundError, ShadowStoreError, unexpected
from shadowstore.service.host import InformationStore
from shadowstore.service.wire import error_body, status_of

log = logging.getLogger("shadowstore.service")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ErrorDetail(BaseModel):
    """A ShadowStoreError as ``--json`` prints it."""

    error: str
    code: int | None
    code_name: str | None
    exit_code: int
    message: str
    hint: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


_ERRORS = {
    400: "Bad input (the message names it)",
    404: "No such storage group, store, mailbox, file or route",
    409: "Not possible in the present state (a backup already running, a store not mounted, ...)",
    422: "Invalid request: the fields named are missing or of the wrong type",
    500: "A bug in ShadowStore (logged with its traceback by the service)",
}


def create_app(host: InformationStore) -> FastAPI:
    from shadowstore.service.api import backups, events, files, mail, metrics, status, stores, vss

    app = FastAPI(
        title="ShadowStore Information Store service",
        version=version("shadowstore"),
        description="Storage groups, stores, streaming backup sessions with leases, the mailbox layer, events "
        "and metrics of one server home.",
    )
    app.state.host = host
    errors = {code: {"model": ErrorBody, "description": text} for code, text in _ERRORS.items()}
    for module in (status, stores, backups, mail, events, files, vss, metrics):
        app.include_router(module.router, responses=errors)  # type: ignore[arg-type]

    @app.exception_handler(ShadowStoreError)
    async def ours(_request: Request, exc: ShadowStoreError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "the request"
            problems.append(f"{where}: {item.get('msg', 'is not valid')}")
        error = InvalidParameterError("invalid request: " + "; ".join(problems), hint="see /docs or /openapi.json")
        return JSONResponse(error_body(error), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error: ShadowStoreError
        if exc.status_code == 404:
            error = NotFoundError(f"no such API route: {request.method} {request.url.path}", hint="see /docs")
        else:
            error = InvalidParameterError(f"{request.method} {request.url.path}: {exc.detail}")
        return JSONResponse(error_body(error), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected failure in %s %s", request.method, request.url.path, exc_info=exc)
        error = unexpected(exc, f"answering {request.method} {request.url.path}")
        return JSONResponse(error_body(error), status_code=500)

    return app


class BearerAuth:
    """Refuse every request without ``Authorization: Bearer <token>`` (401), comparing in constant time."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                from shadowstore.errors import AccessDeniedError

                error = AccessDeniedError(
                    "this listener needs the service's bearer token (Authorization: Bearer <token>)",
                    hint="pass --token-file with the file the service was started with",
                )
                response = JSONResponse(
                    error_body(error), status_code=401, headers={"WWW-Authenticate": 'Bearer realm="shadowstore"'}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
