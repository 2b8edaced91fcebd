"""Shadow-copy backups through the service, whose store writer lives in it: a snapshot while a streaming backup
runs on the same storage group is refused with -2403 (events 2002 and 9611, writer [9] Failed, retryable) while
the streaming backup completes and a snapshot of another group succeeds at once (DESIGN §11 scenario 4); a
requestor killed with SIGKILL while the writers are frozen cannot hold them: they thaw by the deadline, commits
resume and the next job succeeds (scenario 3)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from shadowstore.service.client import ServiceClient
from shadowstore.service.remotemail import RemoteMail
from tests.service.running import Service, running_service, shadowstore

SG, SG2 = "First Storage Group", "Second Storage Group"
ROOT = str(Path(__file__).resolve().parents[2])


def _child(*args: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
    )
    assert child.stdout is not None
    return child


def _snapshot(service: Service, sg: str, target: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return service.cli("backup", "run", "--sg", sg, "--kind", "full", "--method", "snapshot", "--provider", "copy",
                       "--to", target, "--json", check=check)  # fmt: skip


def test_a_snapshot_during_a_streaming_backup_is_refused_and_the_streaming_backup_completes(
    home_dir: str, tmp_path: Path
) -> None:
    assert shadowstore(home_dir, "sg", "create", SG2).returncode == 0
    assert shadowstore(home_dir, "store", "create", SG2, "Archive Store").returncode == 0
    target = str(tmp_path / "backups")
    with running_service(home_dir) as service:
        streaming = _child("tests.service.stalled_backup", home_dir, target, "full", "4")
        assert streaming.stdout is not None
        assert streaming.stdout.readline().startswith("copying ")

        refused = _snapshot(service, SG, target, check=False)
        assert refused.returncode == 20, refused.stdout + refused.stderr
        document = json.loads(refused.stdout)
        assert document["code"] == -2403, document
        assert "Traceback" not in refused.stderr
        assert service.client.get("/v1/events", event_id=2002)
        assert service.client.get("/v1/events", event_id=9611)
        writers = service.cli("vss", "writers").stdout
        assert "State: [9] Failed" in writers
        assert "Last error: Retryable error" in writers

        other = json.loads(_snapshot(service, SG2, target).stdout)  # another group: at once
        assert other["failed"] == []
        assert other["backups"][0]["sg"] == SG2

        assert streaming.wait(60) == 0, streaming.stdout.read()
        after = json.loads(_snapshot(service, SG, target).stdout)  # right after the streaming backup
        assert after["failed"] == []
        assert "State: [1] Stable" in service.cli("vss", "writers").stdout
        kinds = [s["kind"] for s in json.loads(service.cli("backup", "list", "--to", target, "--json").stdout)]
        assert sorted(kinds) == ["full", "full", "full"]


def test_a_requestor_killed_while_the_writers_are_frozen_cannot_hold_them(home_dir: str, tmp_path: Path) -> None:
    for setting, value in (("vss.freeze_seconds", "2"), ("service.session_lease_seconds", "3")):
        assert shadowstore(home_dir, "config", "set", setting, value).returncode == 0
    with running_service(home_dir) as service:
        mail = RemoteMail(service.client)
        mail.create_mailbox("alice")
        requestor = _child("tests.service.frozen_requestor", home_dir, SG)
        assert requestor.stdout is not None
        assert requestor.stdout.readline().strip() == "frozen"

        delivered: list[float] = []
        started = time.monotonic()

        def deliver() -> None:
            with ServiceClient(socket=service.socket) as client:
                RemoteMail(client).add("alice", "INBOX", [b"Subject: during the freeze\n\nheld, not lost\n"], [{}])
            delivered.append(time.monotonic() - started)

        thread = threading.Thread(target=deliver)
        thread.start()
        time.sleep(0.3)
        assert not delivered, "a commit must wait while the storage group is frozen"
        requestor.send_signal(signal.SIGKILL)
        requestor.wait()
        thread.join(30)
        assert delivered, "the delivery must finish once the freeze deadline thawed the group"
        assert delivered[0] < 2.0 + 3.0
        assert service.client.get("/v1/events", event_id=2004)

        time.sleep(3.5)  # why: the job's lease (3 s) lapses, and the service ends the job
        done = json.loads(_snapshot(service, SG, str(tmp_path / "backups")).stdout)
        assert done["failed"] == []
        assert [m["messages"] for m in mail.mailboxes()] == [1]
    leftovers = Path(home_dir, SG, ".shadowstore-snapshots")
    assert not leftovers.exists() or not any(leftovers.iterdir()), "every shadow copy was removed"


def test_a_provider_that_hangs_past_the_freeze_deadline_through_the_service(home_dir: str, tmp_path: Path) -> None:
    """Scenario 5: the provider (in the backup program) hangs; the service's writer thaws by itself at the
    deadline (event 2004), commits resume, the job fails with -2402, and the next job runs."""
    assert shadowstore(home_dir, "config", "set", "vss.freeze_seconds", "1").returncode == 0
    target = str(tmp_path / "backups")
    with running_service(home_dir) as service:
        mail = RemoteMail(service.client)
        mail.create_mailbox("bob")
        result: list[subprocess.CompletedProcess[str]] = []
        hung = threading.Thread(
            target=lambda: result.append(
                service.cli(
                    "backup",
                    "run",
                    "--sg",
                    SG,
                    "--kind",
                    "full",
                    "--method",
                    "snapshot",
                    "--provider",
                    "copy",
                    "--to",
                    target,
                    "--json",
                    check=False,
                )
            )
        )
        service.env["SHADOWSTORE_PAUSE_AT"] = "vss.provider.before_commit"
        hung.start()
        time.sleep(0.5)
        started = time.monotonic()
        mail.add("bob", "INBOX", [b"Subject: while the provider hangs\n\nheld at most until the deadline\n"], [{}])
        waited = time.monotonic() - started
        assert waited < 1.0 + 2.0, f"a commit waited {waited:.1f} s: the deadline must thaw the storage group"
        hung.join(60)
        del service.env["SHADOWSTORE_PAUSE_AT"]
        failed = result[0]
        assert failed.returncode == 20, failed.stdout + failed.stderr
        assert json.loads(failed.stdout)["code"] == -2402
        assert service.client.get("/v1/events", event_id=2004)
        assert "Last error: Timed out" in service.cli("vss", "writers").stdout

        done = json.loads(_snapshot(service, SG, target).stdout)
        assert done["failed"] == []
        assert [m["messages"] for m in mail.mailboxes()] == [1]


def _hook_config(home_dir: str, log: Path, paths: list[str]) -> None:
    """A [[vss.hook]] whose commands write 'pause PID' and 'resume PID' to ``log``, PID being the process that
    ran them (the parent of the shell)."""
    from shadowstore.config import load, save
    from shadowstore.io.fs import OsFileSystem

    fs = OsFileSystem()
    config = load(fs, home_dir)
    note = "sh -c 'echo {} $PPID >> " + str(log) + "'"
    config.settings["vss"] = {
        **config.settings.get("vss", {}),
        "hook": [{"name": "filter", "pre_freeze": note.format("pause"), "post_thaw": note.format("resume"),
                  "timeout": 10, "paths": paths}],
    }  # fmt: skip
    save(fs, home_dir, config)


def test_the_command_hooks_run_in_the_service_and_their_files_are_in_the_snapshot(
    home_dir: str, tmp_path: Path
) -> None:
    log = tmp_path / "hook.log"
    state = tmp_path / "filter.state"
    state.write_bytes(b"the filter's own file\n")
    _hook_config(home_dir, log, [str(state)])
    target = str(tmp_path / "backups")
    with running_service(home_dir) as service:
        writers = service.cli("vss", "writers").stdout
        assert "Writer name: 'ShadowStore Command Hook Writer (filter)'" in writers
        done = json.loads(_snapshot(service, SG, target).stdout)
        assert done["failed"] == []
        pid = str(service.process.pid)
        assert log.read_text().split() == ["pause", pid, "resume", pid], "the hooks ran in the service, in order"
        assert service.cli("vss", "writers").stdout.count("State: [1] Stable") == 2


def test_a_requestor_killed_while_frozen_cannot_leave_a_hooked_application_paused(
    home_dir: str, tmp_path: Path
) -> None:
    """The hooks live in the service, so the post-thaw command runs when the freeze deadline passes although
    the backup program that froze them is gone (the job itself ends when its lease lapses, as the test above
    shows for the store writer)."""
    log = tmp_path / "hook.log"
    _hook_config(home_dir, log, [])
    for setting, value in (("vss.freeze_seconds", "2"), ("service.session_lease_seconds", "30")):
        assert shadowstore(home_dir, "config", "set", setting, value).returncode == 0
    with running_service(home_dir) as service:
        requestor = _child("tests.service.frozen_requestor", home_dir, SG)
        assert requestor.stdout is not None
        assert requestor.stdout.readline().strip() == "frozen"
        assert log.read_text().split()[:1] == ["pause"]
        requestor.send_signal(signal.SIGKILL)
        requestor.wait()
        killed = time.monotonic()
        while "resume" not in log.read_text() and time.monotonic() - killed < 10:
            time.sleep(0.1)
        assert log.read_text().split() == ["pause", str(service.process.pid), "resume", str(service.process.pid)]
        assert time.monotonic() - killed < 2.0 + 1.5, "resumed by the freeze deadline, not the 30 s lease"
