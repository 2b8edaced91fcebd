"""``shadowstore serve``: the Information Store service in the foreground.

Order of a start: read the token file (refused if others can read it), bind the TCP listener (a port in use is
refused before any mount), own the home (service.lock) and mount what is configured to mount, bind the Unix
socket (mode 0600 before it listens), publish ``service.json``, serve. SIGTERM or SIGINT stops the listeners,
ends backup sessions and dismounts every storage group before the process exits, saying which store is not in
Clean Shutdown (one a full disk or an I/O error left in Dirty Shutdown) and exiting 1 then. A service killed
with SIGKILL leaves a socket file and ``service.json`` behind; both are informational and the next start
replaces them (its lock proves nobody else serves the home).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from shadowstore.errors import InvalidParameterError
from shadowstore.service.app import BearerAuth, create_app
from shadowstore.service.auth import read_token
from shadowstore.service.host import InformationStore, UncleanStore
from shadowstore.service.mailsocket import MailSocket, mail_socket_path
from shadowstore.service.unixsocket import bind_unix, remove_socket

SOCKET_NAME = "service.sock"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; keep a margin


def default_socket(home: str) -> str:
    """``<home>/service.sock``, or when that path is too long for a Unix socket, a name derived from the home
    in ``$XDG_RUNTIME_DIR`` (else ``/tmp/shadowstore-<uid>``)."""
    inside = os.path.join(os.path.abspath(home), SOCKET_NAME)
    if len(inside.encode()) <= MAX_SOCKET_PATH:
        return inside
    folder = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/shadowstore-{os.getuid()}"
    digest = hashlib.sha256(os.path.abspath(home).encode()).hexdigest()[:16]
    return os.path.join(folder, f"shadowstore-{digest}.sock")


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidParameterError(f"--listen {text!r} is not HOST:PORT (for example 127.0.0.1:8470)")
    return host.strip("[]"), int(port)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to ``serve`` (two listeners share one stop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(
    home: str,
    *,
    socket_path: str | None = None,
    listen: str | None = None,
    token_file: str | None = None,
    announce: Callable[[str], None] = print,
) -> list[UncleanStore]:
    """Run the service until SIGTERM or SIGINT; returns the stores it leaves out of Clean Shutdown (each
    announced with what to do). Raises what stops it from starting (the home owned by another process, a token
    file others can read, a socket path in use), having released everything it took."""
    if listen is not None and token_file is None:
        raise InvalidParameterError("--listen needs --token-file: every TCP request must carry the token")
    token = read_token(token_file) if token_file is not None else None
    address = parse_listen(listen) if listen is not None else None
    # why before the mounts: a port in use is refused at once, not after a recovery that may take minutes
    tcp = socket.create_server(address, reuse_port=False) if address is not None else None
    host = InformationStore(home)
    host.announce = announce
    try:
        started = host.start()
    except BaseException:
        if tcp is not None:
            tcp.close()
        raise
    sockets: list[socket.socket] = []  # in the order of the servers that serve them: Unix socket, then TCP
    path = socket_path or default_socket(host.home_path)
    mail: MailSocket | None = None
    try:
        sockets.append(bind_unix(path))
        mail_path = mail_socket_path(path)
        if mail_path is not None:
            mail = MailSocket(host, mail_path)
            mail.start()
        app = create_app(host)
        servers = [_Server(_config(app))]
        endpoints: dict[str, object] = {"socket": path, "mail_socket": mail_path, "listen": None}
        if tcp is not None:
            assert token is not None
            sockets.append(tcp)
            bound = tcp.getsockname()
            endpoints["listen"] = f"{bound[0]}:{bound[1]}"
            servers.append(_Server(_config(BearerAuth(app, token))))
        host.publish(endpoints)
        mounted = ", ".join(started["mounted"]) or "nothing"  # type: ignore[arg-type]
        where = path + (f" and http://{endpoints['listen']} (bearer token)" if address else "")
        announce(f"Information Store service for {host.home_path}: pid {os.getpid()}, mounted {mounted}")
        for failure in host.start_failures:
            what = failure["sg"] if failure["store"] is None else f"{failure['sg']}/{failure['store']}"
            announce(f"warning: {what} was not mounted: {failure['message']}")
        announce(f"Listening on {where}. Stop with Ctrl-C or SIGTERM.")
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_run(servers, sockets))
        announce("Stopping: dismounting every storage group.")
    finally:
        for sock in [*sockets, *([tcp] if tcp is not None else [])]:
            sock.close()  # why tcp again: not yet in the list when the Unix socket failed; closing twice is harmless
        remove_socket(path)
        if mail is not None:
            mail.stop()  # why before host.stop(): deliveries being stored finish before the dismount
        unclean = host.stop()
    if not unclean:
        announce("Stopped; every store is in Clean Shutdown.")
    for store in unclean:
        replay = " Its next mount must replay those logs: keep them." if store.required else ""
        announce(
            f"warning: stopped, but {store.describe()}.{replay} 'shadowstore events --sg \"{store.sg}\"' says what "
            "left it so; 'shadowstore doctor' says what to do if its mount fails."
        )
    return unclean


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it is a dependency: a third less time per request than
    asyncio's own loop); asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=10)


async def _run(servers: list[_Server], sockets: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    try:
        await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in zip(servers, sockets, strict=True)))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
