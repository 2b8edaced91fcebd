"""``make demo``: the main job end to end on a small default, and the demo's care for folders it did not make."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from shadowstore.tools import demo


def test_the_demo_backs_up_after_logs_were_deleted_by_hand_and_restores_every_transaction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "demo-home")
    assert demo.main(["--home", home, "--txns", "400"]) == 0
    out = capsys.readouterr().out
    assert "400 transactions committed durably" in out
    deleted = re.search(r"\$ rm (.*)    # (\d+) files", out)
    assert deleted is not None
    count = int(deleted.group(2))
    assert count >= 1, "the workload must leave archived logs for the administrator to delete"
    assert f"{count} log file(s) to truncate were already missing, which is not an error (event 227)" in out
    assert "ok: transactions 1..400 of seed 7 are present and intact" in out
    assert "ok: transactions 1..100 of seed 8 are present and intact" in out
    assert ": OK" in out  # the incremental set verified
    full = out[out.index("Previous Full Backup:") :]
    assert not full.splitlines()[1].strip().startswith("Log Gen: 0-0"), "the full backup stamped the header"
    assert os.path.exists(os.path.join(home, "Recovery Storage Group", "priv1.edb"))
    # run again: the demo's own home is replaced
    assert demo.main(["--home", home, "--txns", "50"]) == 0


def test_the_demo_never_replaces_a_folder_it_did_not_make(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "mail.edb").write_bytes(b"keep me")
    assert demo.main(["--home", str(tmp_path / "precious")]) == 3
    assert "was not made by the demo" in capsys.readouterr().err
    assert (tmp_path / "precious" / "mail.edb").read_bytes() == b"keep me"
