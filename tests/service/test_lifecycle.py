"""The Information Store service's life: one per home, a clean stop on SIGTERM and SIGINT (every store in Clean
Shutdown), a killed one replaced at once (soft recovery, nothing committed lost), and the CLI that mounts and
dismounts through it and prints the same status and events with it as without it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from shadowstore import config as cfg
from shadowstore.engine.dbfile import read_header_copies
from shadowstore.io.fs import OsFileSystem
from shadowstore.service.client import ServiceClient
from shadowstore.service.homefiles import service_info_path
from shadowstore.service.server import MAX_SOCKET_PATH
from shadowstore.service.wire import FRAMES, message_frames, parse_messages
from tests.service.running import Service, running_service, shadowstore

SG = "First Storage Group"
PUBLIC = f"{SG}/Public Folder Store"
MESSAGE = b"From: a@example.com\r\nSubject: before the kill\r\n\r\ncommitted, so it must survive\r\n"


def store_states(home: str) -> dict[str, str]:
    """Each configured store's state, read from its header."""
    fs = OsFileSystem()
    states = {}
    for sg in cfg.load(fs, home).storage_groups:
        resolved = sg.resolved(home)
        for store in resolved.stores:
            states[store.name] = read_header_copies(fs, resolved.store_path(store)).header.state_name
    return states


def event_ids(home: str) -> list[int]:
    done = shadowstore(home, "events", "--json")
    assert done.returncode == 0, done.stderr
    return [event["event_id"] for event in json.loads(done.stdout)]


# --- one service per home ----------------------------------------------------------------------------------------


def test_a_second_serve_on_the_same_home_is_refused_naming_the_first(service: Service) -> None:
    second = shadowstore(service.home, "serve", timeout=20)
    assert second.returncode == 5, second.stdout + second.stderr
    assert "Traceback" not in second.stderr
    first_line = second.stderr.splitlines()[0]
    assert first_line.startswith(f"error: the server home {service.home} is already owned by another process")
    assert f"pid {service.process.pid}" in first_line

    assert service.process.poll() is None
    with ServiceClient(socket=service.socket) as fresh:  # why fresh: a kept-alive connection outlives its socket file
        assert fresh.get("/v1/health")["pid"] == service.process.pid
    assert json.loads(Path(service_info_path(service.home)).read_text())["pid"] == service.process.pid
    assert os.path.exists(service.socket)
    assert f"mounted by the Information Store service (pid {service.process.pid})" in service.cli("status").stdout


# --- stopping ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_service_with_every_store_in_clean_shutdown(home_dir: str, signum: int) -> None:
    with running_service(home_dir) as service:
        assert set(store_states(home_dir).values()) == {"Dirty Shutdown"}  # mounted: the stop has work to do
        service.client.post("/v1/backup-sessions", {"sg": SG, "kind": "full", "owner": "test_lifecycle"})
        output = service.stop(signum)
    assert service.process.returncode == 0, output
    assert "Stopped; every store is in Clean Shutdown." in output
    assert "Traceback" not in output
    assert store_states(home_dir) == {"Mailbox Store": "Clean Shutdown", "Public Folder Store": "Clean Shutdown"}
    assert not os.path.exists(service_info_path(home_dir))
    assert not os.path.exists(service.socket)
    ids = event_ids(home_dir)
    assert ids.count(1060) == 1  # started once
    assert ids[-1] == 1061  # stopped, after everything else
    assert 226 in ids[ids.index(1060) :]  # the backup session was ended, not left running


def test_a_store_the_service_could_not_mount_is_named_at_its_stop_not_called_clean(
    home_dir: str, tmp_path: Path
) -> None:
    with running_service(home_dir) as first:
        first.client.post("/v1/mailboxes", {"name": "alice"})
        first.stop(signal.SIGKILL)
    log_dir, aside = os.path.join(home_dir, SG), tmp_path / "logs aside"
    aside.mkdir()
    logs = [name for name in os.listdir(log_dir) if name.endswith(".log")]
    for name in logs:  # the logs the stores need are gone: the next service cannot mount them
        os.rename(os.path.join(log_dir, name), aside / name)

    with running_service(home_dir) as second:
        output = second.stop()
    assert second.process.returncode == 1, output
    assert f"warning: {SG} was not mounted" in output
    assert "every store is in Clean Shutdown" not in output
    for store in ("Mailbox Store", "Public Folder Store"):
        assert f"warning: stopped, but {SG}/{store} is in Dirty Shutdown (Log Required: 1-" in output
    assert "Its next mount must replay those logs: keep them." in output
    assert set(store_states(home_dir).values()) == {"Dirty Shutdown"}

    for name in logs:
        os.rename(aside / name, os.path.join(log_dir, name))
    with running_service(home_dir) as third:
        assert third.client.get("/v1/mailboxes")[0]["name"] == "alice"
        output = third.stop()
    assert third.process.returncode == 0, output
    assert "Stopped; every store is in Clean Shutdown." in output


def test_a_killed_service_is_replaced_at_once_and_keeps_what_was_committed(home_dir: str) -> None:
    with running_service(home_dir) as first:
        first.client.post("/v1/mailboxes", {"name": "alice"})
        body = b"".join(message_frames([({"flags": "S"}, MESSAGE)]))
        answer = first.client.request(
            "POST", "/v1/mailboxes/alice/folders/INBOX/messages", content=body, headers={"content-type": FRAMES}
        )
        assert answer.json() == {"uids": [1]}
        first.stop(signal.SIGKILL)
    assert first.process.returncode == -signal.SIGKILL
    assert os.path.exists(first.socket)  # left behind: the next start must replace both
    assert json.loads(Path(service_info_path(home_dir)).read_text())["pid"] == first.process.pid
    assert set(store_states(home_dir).values()) == {"Dirty Shutdown"}
    recoveries = event_ids(home_dir).count(302)

    with running_service(home_dir) as second:
        assert json.loads(Path(service_info_path(home_dir)).read_text())["pid"] == second.process.pid
        status = second.client.get("/v1/status")
        assert status["storage_groups"][0]["mounted"] is True
        assert len(second.client.get("/v1/events", event_id=302)) > recoveries  # soft recovery ran
        read = second.client.request("GET", "/v1/mailboxes/alice/messages")
        [(props, raw)] = parse_messages(read.content)
        assert raw == MESSAGE
        assert (props["folder"], props["uid"], props["flags"]) == ("INBOX", 1, "S")
    assert set(store_states(home_dir).values()) == {"Clean Shutdown"}


# --- mount and dismount ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["mount", "dismount"])
@pytest.mark.parametrize("target", [SG, PUBLIC])
def test_mount_and_dismount_without_the_service_say_how_to_start_it(home_dir: str, command: str, target: str) -> None:
    done = shadowstore(home_dir, command, target)
    assert done.returncode == 7, done.stdout + done.stderr
    error, hint = done.stderr.splitlines()
    assert error == f"error: {command} {target!r} needs the Information Store service, and none runs for {home_dir}"
    assert hint.startswith(f"hint: start it with 'shadowstore serve --home {home_dir}'")


def sg_line(service: Service) -> str:
    return next(line for line in service.cli("status").stdout.splitlines() if line.startswith(SG))


def public_line(service: Service) -> str:
    return next(line for line in service.cli("status").stdout.splitlines() if "- Public Folder Store" in line)


def test_mount_and_dismount_through_the_service(service: Service) -> None:
    mounted = f"{SG} [E00] mounted by the Information Store service (pid {service.process.pid})"
    assert sg_line(service) == mounted

    done = service.cli("dismount", SG)
    assert done.stdout.splitlines() == [
        f"{SG}: dismounted.",
        "  - Mailbox Store: dismounted, Clean Shutdown",
        "  - Public Folder Store: dismounted, Clean Shutdown",
    ]
    assert sg_line(service) == f"{SG} [E00] dismounted"
    assert store_states(service.home) == {"Mailbox Store": "Clean Shutdown", "Public Folder Store": "Clean Shutdown"}
    assert service.cli("mount", SG).stdout.splitlines()[0] == f"{SG}: mounted."
    assert sg_line(service) == mounted

    document = json.loads(service.cli("dismount", PUBLIC, "--json").stdout)
    assert document["name"] == SG
    assert {s["name"]: s["mounted"] for s in document["stores"]} == {
        "Mailbox Store": True,
        "Public Folder Store": False,
    }
    line = public_line(service)
    assert "Clean Shutdown" in line
    assert line.endswith("(store dismounted)")
    status = json.loads(service.cli("status", "--json").stdout)
    stores = {s["name"]: s for s in status["storage_groups"][0]["stores"]}
    assert (stores["Public Folder Store"]["mounted"], stores["Mailbox Store"]["mounted"]) == (False, True)

    document = json.loads(service.cli("mount", PUBLIC, "--json").stdout)
    assert all(s["mounted"] for s in document["stores"])
    assert "(store dismounted)" not in public_line(service)


def test_a_full_backup_with_a_store_dismounted_says_which_store_it_does_not_hold(
    service: Service, tmp_path: Path
) -> None:
    target = str(tmp_path / "backups")
    service.cli("dismount", PUBLIC)
    done = service.cli("backup", "run", "--sg", SG, "--kind", "full", "--to", target)
    assert (
        "  not in this set, not mounted: Public Folder Store; mount them and take a full backup to cover them"
        in done.stdout.splitlines()
    )
    report = done.stdout.splitlines()[-1].removeprefix("report: ")
    assert "Not in this set (not mounted): Public Folder Store." in Path(report).read_text()
    document = json.loads(service.cli("backup", "run", "--sg", SG, "--kind", "copy", "--to", target, "--json").stdout)
    assert document["backups"][0]["stores_left_out"] == ["Public Folder Store"]
    service.cli("mount", PUBLIC)
    document = json.loads(service.cli("backup", "run", "--sg", SG, "--kind", "full", "--to", target, "--json").stdout)
    assert document["backups"][0]["stores_left_out"] == []


def test_a_group_moved_while_dismounted_mounts_from_its_new_folders(service: Service, tmp_path: Path) -> None:
    """``sg move`` runs beside the service on a group it dismounted; the service's next status and mount must use
    the folders the configuration names now, not those it read before (it refused the mount with -1203 and
    advised a restore from backup, with every file safe in the new folder)."""
    service.cli("mail", "generate", "--mailboxes", "2", "--messages", "5", "--seed", "3")
    before = json.loads(service.cli("mail", "list", "--json").stdout)
    service.cli("dismount", SG)
    service.cli("status")  # the service now holds the dismounted group, as it was
    new = str(tmp_path / "disk2")
    moved = shadowstore(service.home, "sg", "move", SG, "--to", new)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    group = json.loads(service.cli("status", "--json").stdout)["storage_groups"][0]
    assert group["log_dir"] == new
    assert {s["state"] for s in group["stores"]} == {"Clean Shutdown"}
    service.cli("mount", SG)
    assert sg_line(service).startswith(f"{SG} [E00] mounted by the Information Store service")
    assert json.loads(service.cli("mail", "list", "--json").stdout) == before
    assert "priv1.edb" in os.listdir(new)


def test_changing_a_group_the_service_has_mounted_says_to_dismount_it_there(service: Service, tmp_path: Path) -> None:
    """'sg move' and 'store create' work on a dismounted group only: while the service has it, the refusal names
    the service and the command that dismounts it, and following it (dismount, run again, mount) works."""
    dismount = "shadowstore dismount 'First Storage Group'"
    new = str(tmp_path / "disk2")
    for args in (("sg", "move", SG, "--to", new), ("store", "create", SG, "Archive")):
        refused = shadowstore(service.home, *args)
        assert refused.returncode == 5, refused.stderr
        error, hint = refused.stderr.splitlines()[:2]
        assert "is mounted or in use" in error
        assert f"pid {service.process.pid}" in error
        assert f"hint: dismount it first (with '{dismount}' when the Information Store service has it" in hint
    service.cli("dismount", SG)
    for args in (("sg", "move", SG, "--to", new), ("store", "create", SG, "Archive")):
        done = shadowstore(service.home, *args)
        assert done.returncode == 0, done.stderr
    service.cli("mount", SG)
    stores = json.loads(service.cli("status", "--json").stdout)["storage_groups"][0]["stores"]
    assert {s["name"]: s["mounted"] for s in stores} == {
        "Mailbox Store": True,
        "Public Folder Store": True,
        "Archive": True,
    }


def test_a_command_that_opens_the_stores_itself_says_to_have_the_service_dismount_them(service: Service) -> None:
    """'store tables' and 'workload run' read and write the stores in their own process: while the service has
    the group they are refused, and the hint's steps (dismount there, run again, mount) work."""
    commands = (("store", "tables", SG, "Mailbox Store"), ("workload", "run", "--txns", "5", "--seed", "4"))
    for args in commands:
        refused = shadowstore(service.home, *args)
        assert refused.returncode == 5, refused.stderr
        error, hint = refused.stderr.splitlines()[:2]
        assert f"pid {service.process.pid}" in error
        assert "have it dismount the group ('shadowstore dismount 'First Storage Group'')" in hint
        assert "then 'shadowstore mount 'First Storage Group''" in hint
    service.cli("dismount", SG)
    for args in commands:
        done = shadowstore(service.home, *args)
        assert done.returncode == 0, done.stderr
    service.cli("mount", SG)


# --- the same output with and without the service ----------------------------------------------------------------


def test_status_and_events_read_the_same_with_and_without_the_service(home_dir: str) -> None:
    with running_service(home_dir) as service:
        service.cli("dismount", SG)
        served_text = service.cli("status").stdout
        served = json.loads(service.cli("status", "--json").stdout)
        served_events = json.loads(service.cli("events", "--limit", "5", "--json").stdout)
    assert shadowstore(home_dir, "status").stdout == served_text
    assert f"{SG} [E00] dismounted" in served_text
    # the service's document says more: who mounted each group, and which stores are mounted
    for sg in served["storage_groups"]:
        assert sg.pop("mounted_by") is None
        assert [store.pop("mounted") for store in sg["stores"]] == [False, False]
    assert json.loads(shadowstore(home_dir, "status", "--json").stdout) == served

    events = json.loads(shadowstore(home_dir, "events", "--json").stdout)
    stopped = max(i for i, e in enumerate(events) if e["event_id"] == 1061)  # what the stop added comes after
    assert len(served_events) == 5
    assert served_events == events[:stopped][-5:]
    assert json.loads(shadowstore(home_dir, "events", "--limit", "5", "--json").stdout) == events[-5:]


# --- where the socket goes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["xdg", "tmp"])
def test_a_home_too_long_for_a_socket_path_gets_one_elsewhere(
    tmp_path_factory: pytest.TempPathFactory, runtime: str
) -> None:
    from shadowstore.home import ServerHome

    base = tmp_path_factory.mktemp("long")
    home = str(base / ("a-rather-long-folder-name-" * 4) / "home")
    ServerHome.init(home)
    assert len(os.path.join(home, "service.sock").encode()) > MAX_SOCKET_PATH
    folder = str(tmp_path_factory.mktemp("xdg")) if runtime == "xdg" else f"/tmp/shadowstore-{os.getuid()}"
    with running_service(home, env={"XDG_RUNTIME_DIR": folder if runtime == "xdg" else ""}) as service:
        assert os.path.dirname(service.socket) == folder
        assert len(service.socket.encode()) <= MAX_SOCKET_PATH
        assert os.path.exists(service.socket)
        elsewhere = {"XDG_RUNTIME_DIR": "/nonexistent"}  # the CLI finds it through service.json alone
        done = shadowstore(home, "dismount", SG, env=elsewhere)
        assert done.returncode == 0, done.stderr
        assert f"{SG} [E00] dismounted" in shadowstore(home, "status", env=elsewhere).stdout
        assert shadowstore(home, "mount", SG, env=elsewhere).returncode == 0
        assert f"mounted by the Information Store service (pid {service.process.pid})" in service.cli("status").stdout
    assert not os.path.exists(service.socket)
