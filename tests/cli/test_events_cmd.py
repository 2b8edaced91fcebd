"""``shadowstore events``: the event log in the event viewer's layout, filtered, and as JSON."""

from __future__ import annotations

import os

import pytest

from shadowstore.home import ServerHome
from tests.cli.clirun import run, run_json


@pytest.fixture
def home_dir(tmp_path: os.PathLike[str]) -> str:
    path = os.path.join(tmp_path, "home")
    home = ServerHome.init(path, log_file_size=64 * 1024)
    sg = home.storage_group()
    sg.mount()
    sg.dismount()
    return path


def test_events_print_one_field_a_line(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--home", home_dir, "events", "--id", "1000")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Event Type:\tInformation"
    assert lines[1] == "Event Source:\tShadowStore"
    assert lines[3] == "Event ID:\t1000"
    assert any(line.startswith("Date:\t\t") for line in lines)
    assert "Storage group First Storage Group is mounted (Mailbox Store, Public Folder Store)." in out


def test_events_filter_by_source_id_and_since(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, everything = run_json(capsys, "--home", home_dir, "events", "--json")
    assert code == 0
    ids = [e["event_id"] for e in everything]
    assert ids[:3] == [1002, 1002, 1000]
    code, mounted = run_json(capsys, "--home", home_dir, "events", "--source", "shadowstore", "--id", "1003", "--json")
    assert [e["params"]["store"] for e in mounted] == ["Mailbox Store", "Public Folder Store"]
    code, none = run_json(capsys, "--home", home_dir, "events", "--since", "2999-01-01T00:00:00", "--json")
    assert none == []
    code, recent = run_json(capsys, "--home", home_dir, "events", "--since", "1h", "--limit", "1", "--json")
    assert [e["event_id"] for e in recent] == [1001]


def test_ese_events_start_with_the_process_and_storage_group(
    tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]
) -> None:
    home = ServerHome.init(os.path.join(tmp_path, "home"), log_file_size=64 * 1024)
    home.events.emit(302, sg="First Storage Group")
    code, data = run_json(capsys, "--home", home.path, "events", "--source", "ESE", "--json")
    assert code == 0
    assert data[-1]["description"] == (
        f"Information Store ({os.getpid()}) First Storage Group: "
        "The database engine has successfully completed recovery steps."
    )
    assert data[-1]["category"] == "Logging/Recovery"


def test_bad_since_is_a_usage_error(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--home", home_dir, "events", "--since", "yesterday-ish")
    assert code == 3
    assert "is not a time" in err


def test_a_negative_limit_is_refused(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--home", home_dir, "events", "--limit", "-1")
    assert code == 3
    assert "Invalid value for '--limit': -1 is not in the range x>=0" in err
    code, none = run_json(capsys, "--home", home_dir, "events", "--limit", "0", "--json")
    assert (code, none) == (0, [])


def test_an_age_before_the_calendar_begins_is_refused_not_a_crash(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "--home", home_dir, "events", "--since", "99999999999999999d")
    assert code == 3
    assert "--since '99999999999999999d' is not a time\n" in err
    assert "hint: give an ISO 8601 time like 2026-11-25T08:00:00 (UTC unless it says) or an age like 30m" in err
