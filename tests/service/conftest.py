"""Fixtures of the service tests: a server home, and the service running on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shadowstore.home import ServerHome
from tests.service.running import Service, running_service


@pytest.fixture
def home_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    # why a short base: the socket's path must fit in 108 bytes (else it goes to $XDG_RUNTIME_DIR; tested apart)
    path = str(tmp_path_factory.mktemp("svc") / "home")
    ServerHome.init(path)
    return path


@pytest.fixture
def service(home_dir: str) -> Iterator[Service]:
    with running_service(home_dir) as running:
        yield running
