"""The files by which a home's running service is found: ``service.lock`` (held while it runs, by the lock
that dies with its process) and ``service.json`` (its socket and its other endpoints).

A module of its own so that a client finds the service without importing the service itself, or the engine.
"""

from __future__ import annotations

import os

LOCK_NAME = "service.lock"
INFO_NAME = "service.json"


def service_lock_path(home: str) -> str:
    return os.path.join(home, LOCK_NAME)


def service_info_path(home: str) -> str:
    return os.path.join(home, INFO_NAME)
