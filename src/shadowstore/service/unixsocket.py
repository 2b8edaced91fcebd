"""Listening Unix sockets of the service: created with mode 0600 before anyone can connect."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from shadowstore.errors import ServiceError
from shadowstore.service.client import SOCKET_BUFFER

IOV_MAX = 1024  # pieces in one sendmsg (Linux's UIO_MAXIOV)


def bind_unix(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 before it accepts anyone. A socket file left by a killed
    service is replaced (the home's lock, held now, proves no service uses it); any other file there is an
    error."""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ServiceError(f"{path} exists and is not a socket; choose another --socket", hint="")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # why: mail arrives in requests of megabytes; accepted connections inherit these (client.py says more)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.bind(path)
        os.chmod(path, 0o600)  # why before listen: nobody can connect until then
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ServiceError(f"cannot listen on {path}: {exc.strerror}") from None
    return sock


def remove_socket(path: str) -> None:
    """Remove the socket file at ``path`` (and nothing else that may have taken its place)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


def send_pieces(sock: socket.socket, pieces: list[bytes | memoryview]) -> None:
    """Send ``pieces`` in order as one stream, with scatter-gather sends: the kernel copies each piece from
    where it is, so nothing is joined first."""
    i = 0
    while i < len(pieces):
        sent = sock.sendmsg(pieces[i : i + IOV_MAX])
        while i < len(pieces) and sent >= len(pieces[i]):
            sent -= len(pieces[i])
            i += 1
        if sent:  # a partial send (the socket has a timeout, so the kernel may take part of a piece)
            pieces = [memoryview(pieces[i])[sent:], *pieces[i + 1 :]]
            i = 0
