"""ShadowStore: storage groups, shared transaction logs, checkpoints and backups that cannot wedge.

The entry point is :class:`ServerHome`; see README.md and docs/architecture.md.
"""

from shadowstore.errors import ShadowStoreError
from shadowstore.home import ServerHome, default_home

__all__ = ["ServerHome", "ShadowStoreError", "default_home"]
