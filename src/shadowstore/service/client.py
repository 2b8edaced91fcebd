"""The client side of the service's API, used by the CLI when the service runs.

``find_service(home)`` answers whether a service owns the home and answers: it reads ``<home>/service.json``
for the socket, and asks ``/v1/health``. No file there, or a socket that refuses: no service, and the CLI opens
the home itself. A service that holds the home's lock but does not answer is an error (the CLI must not open a
home another process owns). ``SHADOWSTORE_URL`` (``http://host:port``) with ``SHADOWSTORE_TOKEN_FILE`` reaches
a service over TCP instead; when the command's home is on this machine too, the service must be that home's
(the same home id), or what the command does would be filed under the wrong home.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from socket import SO_RCVBUF, SO_SNDBUF, SOL_SOCKET
from typing import Any
from urllib.parse import quote

import httpx

from shadowstore.config import CONFIG_NAME, load
from shadowstore.errors import InvalidParameterError, ServiceError
from shadowstore.io.fs import OsFileSystem, read_file
from shadowstore.service.auth import read_token
from shadowstore.service.homefiles import service_info_path, service_lock_path
from shadowstore.service.wire import raise_from_body

PROBE_SECONDS = 5.0
SOCKET_BUFFER = 4 << 20  # bytes; the kernel caps it at net.core.wmem_max / rmem_max
URL_VARIABLE, TOKEN_VARIABLE = "SHADOWSTORE_URL", "SHADOWSTORE_TOKEN_FILE"
_BASE = "http://shadowstore"  # the host part of URLs sent over the Unix socket (any name does)


class ServiceClient:
    """Calls to one service. Every failure raises the ShadowStoreError the service answered (same class, same
    message), or ServiceError when the service cannot be reached."""

    def __init__(self, *, socket: str | None = None, url: str | None = None, token: str | None = None) -> None:
        self.socket = socket  # the API's Unix socket; None over TCP
        self._health: dict[str, Any] | None = None  # /v1/health as first answered (find_service's probe counts)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = httpx.Timeout(PROBE_SECONDS, read=None)  # why no read bound: a mount may recover for minutes
        if socket is not None:
            # why a big send buffer: a delivery of mail is megabytes; the default (208 KiB) makes the kernel wake
            # the service and this client back and forth several times per request
            options = [(SOL_SOCKET, SO_SNDBUF, SOCKET_BUFFER), (SOL_SOCKET, SO_RCVBUF, SOCKET_BUFFER)]
            transport = httpx.HTTPTransport(uds=socket, socket_options=options)
            self.where = f"the service on {socket}"
            self.http = httpx.Client(transport=transport, base_url=_BASE, headers=headers, timeout=timeout)
        else:
            assert url is not None
            self.where = f"the service at {url}"
            self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``, asked once per client: what the service offers beside the API (its mail socket,
        shared reads, the commits' waits) does not change while it runs."""
        if self._health is None:
            self._health = dict(self.get("/v1/health"))
        return self._health

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls -----------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        check_route(method, path)
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"{self.where} did not answer {method} {path}: {exc}") from None
        if response.status_code >= 400:
            raise_from_body(response.status_code, response.content)
        return response

    def get(self, route: str, **params: Any) -> Any:
        return self.request("GET", route, params={k: v for k, v in params.items() if v is not None}).json()

    def post(self, route: str, body: Any = None) -> Any:
        return self.request("POST", route, json=body).json()

    def delete(self, route: str, **params: Any) -> Any:
        return self.request("DELETE", route, params=params).json()

    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[bytes]:
        """The body of a streamed answer in chunks as they arrive."""
        check_route(method, path)
        try:
            with self.http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    raise_from_body(response.status_code, response.read())
                yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise ServiceError(f"{self.where} broke off {method} {path}: {exc}") from None


def segment(name: str) -> str:
    """``name`` (a storage group, store, mailbox, ...) as one segment of an API path: every character but
    letters, digits and ``-._~`` percent-encoded ('/' too), and '.' or '..' as ``%2E`` so that no client or proxy
    folds it into another route. Raises InvalidParameterError for an empty name, which would make the path of
    another route (or of none)."""
    if not name:
        raise InvalidParameterError(
            "an empty name cannot be sent to the Information Store service", hint="name it (see 'shadowstore status')"
        )
    return "%2E" * len(name) if name in (".", "..") else quote(name, safe="")


def check_route(method: str, path: str) -> None:
    """Refuse a path with an empty, '.' or '..' segment (InvalidParameterError): a name put into it without
    :func:`segment`, which would reach another route than the one meant (``..`` is folded away on the way)."""
    route = path.split("?", 1)[0]
    if any(part in ("", ".", "..") for part in route.split("/")[1:]):
        raise InvalidParameterError(
            f"{method} {route}: a name in it is empty, '.' or '..', which would change the route",
            hint="name the storage group, store or mailbox as 'shadowstore status' or 'shadowstore mail list' "
            "show them",
        )


def find_service(home: str) -> ServiceClient | None:
    """A client of the service that owns ``home`` when one answers; None when none runs. Raises ServiceError
    when one holds the home but does not answer."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        token_file = os.environ.get(TOKEN_VARIABLE)
        token = read_token(token_file) if token_file else None
        client = ServiceClient(url=url, token=token)
        _probe(client)
        try:
            _check_same_home(client, url, home)
        except InvalidParameterError:
            client.close()
            raise
        return client
    socket = socket_of(home)
    if socket is not None:
        client = ServiceClient(socket=socket)
        try:
            response = client.http.get("/v1/health", timeout=PROBE_SECONDS)
            response.raise_for_status()
            client._health = dict(response.json())
        except (httpx.HTTPError, ValueError):
            client.close()
        else:
            return client
    holder = OsFileSystem().lock_holder(service_lock_path(home))
    if holder is not None:
        raise ServiceError(
            f"the Information Store service ({holder}) owns {home} but does not answer on {socket or 'its socket'}",
            hint="wait for it to finish starting, or stop it (kill the process; nothing is lost) and start it again",
        )
    return None


def socket_of(home: str) -> str | None:
    """The socket ``service.json`` names, or None."""
    try:
        value = json.loads(read_file(OsFileSystem(), service_info_path(home))).get("socket")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _probe(client: ServiceClient) -> None:
    client.health()


def _check_same_home(client: ServiceClient, url: str, home: str) -> None:
    """Refuse (InvalidParameterError) a service reached at ``url`` that serves another home than ``home``, when
    ``home`` is a server home here. Why: a backup through it copies that home's stores but files the set under
    this home's id, so that a restore of this home would bring back the other server's data."""
    fs = OsFileSystem()
    if not home or not fs.exists(os.path.join(home, CONFIG_NAME)):
        return
    try:
        mine = load(fs, home).home_id
    except (InvalidParameterError, OSError):
        return  # why: the command itself reports a broken configuration, with its own hint
    theirs = client.health().get("home_id")
    if mine and theirs and mine != theirs:
        raise InvalidParameterError(
            f"{URL_VARIABLE}={url} is the Information Store service of home {theirs} ({client.health().get('home')} "
            f"on its machine), but this command's home, {home}, is home {mine}: backups and restores through it "
            "would mix the two homes",
            hint=f"name that home with --home on the machine that has it, or unset {URL_VARIABLE} to use this "
            "home's own service",
        )
