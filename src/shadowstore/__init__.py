"""ShadowStore: storage groups, shared transaction logs, checkpoints and backups that cannot wedge.

The entry point is :class:`ServerHome`; see README.md and docs/architecture.md.

The names below load on first use (PEP 562): a program that only talks to the service (the command line when
one runs) never imports the engine, which was about half the time such a command took.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shadowstore.config import default_home
    from shadowstore.errors import ShadowStoreError
    from shadowstore.home import ServerHome

__all__ = ["ServerHome", "ShadowStoreError", "default_home"]


def __getattr__(name: str) -> Any:
    if name == "ShadowStoreError":
        from shadowstore.errors import ShadowStoreError

        return ShadowStoreError
    if name == "default_home":
        from shadowstore.config import default_home

        return default_home
    if name == "ServerHome":
        from shadowstore.home import ServerHome

        return ServerHome
    raise AttributeError(f"module 'shadowstore' has no attribute {name!r}")
