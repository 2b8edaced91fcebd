"""Streaming backups through the service: the backup program in another process, its session kept by heartbeats
and ended when the program dies (DESIGN §11 scenario 3), shown and ended by an administrator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.service.running import Service, running_service, shadowstore_command

SG = "First Storage Group"
LEASE = 2.0


def _stalled(service: Service, target: str, kind: str = "full") -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.service.stalled_backup", service.home, target, kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.startswith("copying "), line + child.stdout.read()
    return child


def _sessions(service: Service) -> list[dict[str, object]]:
    return json.loads(service.cli("backup", "status", "--json").stdout)


def _events(service: Service, event_id: int) -> list[dict[str, object]]:
    return list(service.client.get("/v1/events", event_id=event_id))


def test_a_killed_backup_program_loses_its_session_when_its_lease_lapses(home_dir: str, tmp_path: object) -> None:
    target = os.path.join(str(tmp_path), "backups")
    with running_service(home_dir) as service:
        service.cli("config", "set", "service.session_lease_seconds", str(LEASE))
        child = _stalled(service, target)
        time.sleep(3 * LEASE)  # why: heartbeats, not luck, keep a live program's session
        running = _sessions(service)
        assert len(running) == 1, running
        assert f"pid {child.pid}" in str(running[0]["owner"])
        assert running[0]["lease_expires"]
        assert running[0]["lease_seconds"] == LEASE
        text = service.cli("backup", "status").stdout
        assert f"pid {child.pid}" in text
        assert "lease:" in text

        child.send_signal(signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + LEASE + 5
        while time.monotonic() < deadline and _sessions(service):
            time.sleep(0.1)
        assert _sessions(service) == []
        aborted = _events(service, 215)
        assert aborted
        assert "lapsed" in str(aborted[-1]["description"])

        done = service.cli("backup", "run", "--sg", SG, "--kind", "full", "--to", target, "--json")
        outcome = json.loads(done.stdout)
        assert outcome["failed"] == []
        assert outcome["backups"][0]["kind"] == "full"
        sets = json.loads(service.cli("backup", "list", "--to", target, "--json").stdout)
        assert sorted(s["state"] for s in sets) == ["complete", "incomplete"], sets


def test_a_backup_begun_after_its_predecessor_was_killed_ends_that_session_at_once(
    home_dir: str, tmp_path: object
) -> None:
    target = os.path.join(str(tmp_path), "backups")
    with running_service(home_dir) as service:  # the default lease: 30 s
        child = _stalled(service, target)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert len(_sessions(service)) == 1  # the lease has not lapsed
        done = service.cli("backup", "run", "--sg", SG, "--kind", "full", "--to", target, "--json", check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["backups"][0]["kind"] == "full"
        ended = str(_events(service, 215)[-1]["description"])
        assert f"its program is gone (shadowstore backup run (pid {child.pid} on" in ended


def test_an_administrator_ends_a_running_session(home_dir: str, tmp_path: object) -> None:
    target = os.path.join(str(tmp_path), "backups")
    with running_service(home_dir) as service:
        child = _stalled(service, target)
        ended = service.cli("backup", "abort", "--sg", SG)
        assert "was ended" in ended.stdout
        assert _sessions(service) == []
        assert "administrator" in str(_events(service, 215)[-1]["description"])
        child.send_signal(signal.SIGKILL)  # why: its progress callback sleeps; the session is already gone
        child.wait()
        service.cli("backup", "run", "--sg", SG, "--kind", "full", "--to", target)
        metrics = service.client.request("GET", "/metrics").text
        for result in ("aborted", "completed"):
            assert f'shadowstore_backups_total{{kind="full",result="{result}",sg="{SG}"}} 1.0' in metrics


def test_a_paced_backup_program_stops_soon_after_its_session_is_aborted(home_dir: str, tmp_path: object) -> None:
    # why this rate: a store and a 1 MiB log at 20 kB/s take a minute, and one wait of the pace is many seconds
    target = os.path.join(str(tmp_path), "backups")
    with running_service(home_dir) as service:
        args = ("--home", home_dir, "backup", "run", "--sg", SG, "--kind", "copy", "--to", target, "--max-rate", "0.02")
        child = subprocess.Popen(shadowstore_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not _sessions(service) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _sessions(service), "the paced backup did not begin"
        time.sleep(1)  # why: the copy is inside a wait of its pace now
        assert child.poll() is None
        assert "was ended" in service.cli("backup", "abort", "--sg", SG).stdout
        try:
            _out, err = child.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise AssertionError("the backup program went on copying after its session was aborted") from None
        assert child.returncode == 20, err
        assert "aborted" in err


def test_a_second_backup_while_one_runs_is_refused_naming_the_first(home_dir: str, tmp_path: object) -> None:
    target = os.path.join(str(tmp_path), "backups")
    with running_service(home_dir) as service:
        child = _stalled(service, target)
        try:
            refused = service.cli("backup", "run", "--sg", SG, "--kind", "full", "--to", target, check=False)
            assert refused.returncode == 5, refused.stderr  # BUSY
            assert "-505" in refused.stderr
            assert f"pid {child.pid}" in refused.stderr
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()


def test_backups_through_the_service_and_directly_make_the_same_sets(home_dir: str, tmp_path: object) -> None:
    target = os.path.join(str(tmp_path), "backups")
    with running_service(home_dir) as service:
        first = json.loads(service.cli("backup", "run", "--sg", SG, "--kind", "full", "--to", target, "--json").stdout)
        second = json.loads(
            service.cli("backup", "run", "--sg", SG, "--kind", "incremental", "--to", target, "--json").stdout
        )
        assert first["backups"][0]["truncated"] == [] or isinstance(first["backups"][0]["truncated"], list)
        assert second["backups"][0]["first_gen"] == first["backups"][0]["last_gen"] + 1
        service.cli("backup", "verify", "--to", target, first["backups"][0]["id"])
        metrics = service.client.request("GET", "/metrics").text
        assert f'shadowstore_last_backup_timestamp_seconds{{kind="incremental",sg="{SG}"}}' in metrics
        assert f'shadowstore_backup_duration_seconds_count{{kind="full",sg="{SG}"}} 1.0' in metrics
    direct = subprocess.run(
        [sys.executable, "-c", "from shadowstore.cli.main import entry; entry()", "--home", home_dir, "backup", "run",
         "--sg", SG, "--kind", "incremental", "--to", target, "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    third = json.loads(direct.stdout)["backups"][0]
    assert third["first_gen"] == second["backups"][0]["last_gen"] + 1
    sets = json.loads(
        subprocess.run(
            [sys.executable, "-c", "from shadowstore.cli.main import entry; entry()", "--home", home_dir, "backup",
             "list", "--to", target, "--json"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert [s["state"] for s in sets] == ["complete"] * 3
    assert len({s["stream"] for s in sets}) == 1
