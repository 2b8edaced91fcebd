"""The bearer token of the service's TCP listener, read from a file only its owner can read.

A token file that others may read is refused before anything listens: a secret every local user can read
guards nothing, and a service that started anyway would teach its administrator that it is fine.
"""

from __future__ import annotations

import os
import stat

from shadowstore.errors import AccessDeniedError, NotFoundError

MIN_TOKEN_LENGTH = 16


def read_token(path: str) -> str:
    """The token in ``path`` (surrounding blanks removed). Raises NotFoundError for a missing file and
    AccessDeniedError for one that its group or others can read or write, or that is too short."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"token file {path} does not exist", hint=_make_one(path)) from None
    except PermissionError:
        raise AccessDeniedError(f"token file {path} cannot be read by this user") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AccessDeniedError(f"token file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise AccessDeniedError(
                f"token file {path} is readable or writable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                "a token others can read protects nothing",
                hint=f"chmod 600 {path}",
            )
        token = os.read(fd, 4096).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    if len(token) < MIN_TOKEN_LENGTH:
        raise AccessDeniedError(
            f"token file {path} holds {len(token)} characters; a token needs at least {MIN_TOKEN_LENGTH}",
            hint=_make_one(path),
        )
    return token


def _make_one(path: str) -> str:
    return f"make one with: (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > {path})"
