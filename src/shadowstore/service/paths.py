"""Which paths a request may name: the server home, the folders of its storage groups, and its configured
backup target when that is a folder. Anything else is refused (403) before it is opened: a caller that may
reach the service (over TCP, from another machine) must not make it read files it was never meant to serve.

Paths are compared after resolving symbolic links and ``..``, so a link inside the home that points outside it
is refused too.
"""

from __future__ import annotations

import os

from shadowstore.errors import AccessDeniedError, InvalidParameterError
from shadowstore.home import ServerHome


def allowed_roots(home: ServerHome) -> list[str]:
    roots = [home.path]
    for sg in home.config.storage_groups:
        resolved = sg.resolved(home.path)
        roots += [resolved.log_dir, resolved.system_dir, resolved.data_dir]
    target = str(home.config.settings.get("backup", {}).get("target", "backups"))
    if "://" not in target:
        roots.append(target if target.startswith("/") else os.path.join(home.path, target))
    return sorted({os.path.realpath(r) for r in roots})


def confine(home: ServerHome, path: str) -> str:
    """``path`` resolved, when it lies inside one of the allowed roots; AccessDeniedError otherwise."""
    if not path or "\x00" in path:
        raise InvalidParameterError("the path is empty or holds a NUL byte")
    if not path.startswith("/"):
        raise InvalidParameterError(f"{path!r} is not an absolute path; the service resolves no relative paths")
    real = os.path.realpath(path)
    roots = allowed_roots(home)
    if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots):
        raise AccessDeniedError(
            f"{path} is outside the server home and its storage groups' folders; the service serves no other files",
            hint=f"name a file under {', '.join(roots)}",
        )
    return real
