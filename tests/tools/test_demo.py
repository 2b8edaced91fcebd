"""``make demo``: the main job end to end on a small default, and the demo's care for folders it did not make."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from shadowstore.tools import demo


def test_the_main_job_runs_the_service_backs_up_after_logs_were_deleted_and_restores_mail_intact(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "demo-home")
    assert demo.main(["--home", home, "--mailboxes", "2", "--messages", "30"]) == 0
    out = capfd.readouterr().out
    assert "[service] Listening on" in out
    assert "mounted by the Information Store service" in out
    deleted = re.search(r"\$ rm (.*)    # (\d+) files", out)
    assert deleted is not None
    count = int(deleted.group(2))
    assert count >= 1, "the mail must leave archived logs for the administrator to delete"
    assert f"{count} log file(s) to truncate were already missing, which is not an error (event 227)" in out
    for name in ("user01", "user02"):
        assert re.search(rf"ok: the 40 message\(s\) of \S+/{name} are in mailbox '{name}', byte for byte", out), out
    header = out[out.index("$ shadowstore eseutil /mh") :]
    assert "State: Clean Shutdown" in header
    assert not header[header.index("Previous Full Backup:") :].splitlines()[1].strip().startswith("Log Gen: 0-0")
    assert "[service] Stopped; every store is in Clean Shutdown." in out
    events = re.findall(r"\[service\] event \S+ (\d+): ", out)  # the service's warnings, each shown once
    assert "1011" in events  # a log deleted by hand while mounted
    assert len(events) == len(set(events)), events
    final = out[out.rindex("$ shadowstore status") :]
    assert final.count("Clean Shutdown  Log Required: 0-0") == 4  # both groups, both stores
    assert os.path.exists(os.path.join(home, "Recovery Storage Group", "priv1.edb"))
    # run again: the demo's own home is replaced
    assert demo.main(["--home", home, "--mailboxes", "1", "--messages", "5"]) == 0


def test_the_demo_never_replaces_a_folder_it_did_not_make(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "mail.edb").write_bytes(b"keep me")
    assert demo.main(["--home", str(tmp_path / "precious")]) == 3
    assert "was not made by the demo" in capsys.readouterr().err
    assert (tmp_path / "precious" / "mail.edb").read_bytes() == b"keep me"


def test_an_export_folder_left_without_its_demo_home_is_refused_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "home-mail" / "user01").mkdir(parents=True)  # an earlier demo's, its home removed by hand
    (tmp_path / "home-mail" / "user01" / "note").write_bytes(b"keep me")
    assert demo.main(["--home", str(tmp_path / "home")]) == 3
    assert "home-mail exists" in capsys.readouterr().err
    assert (tmp_path / "home-mail" / "user01" / "note").read_bytes() == b"keep me"
    assert not (tmp_path / "home").exists()
