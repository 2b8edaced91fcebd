"""Opening and creating a server home (home.py): what a path may be."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowstore.errors import InvalidParameterError
from shadowstore.home import ServerHome


def test_an_empty_home_path_is_refused_not_taken_for_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOWSTORE_HOME", str(tmp_path / "default"))
    for make in (ServerHome.init, ServerHome.open):
        with pytest.raises(InvalidParameterError, match="the server home's path is empty"):
            make("")
    assert not (tmp_path / "default").exists()
