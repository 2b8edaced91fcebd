"""The mailbox layer through the service, and DESIGN §11 scenario 7 through it: a restore to a point in time
across a full and incremental backups, into the Recovery Storage Group, with the mail byte-identical."""

from __future__ import annotations

import datetime as dt
import json
import mailbox
import os
import subprocess
import sys
import time
from pathlib import Path

from shadowstore.mail.generate import generate_messages
from tests.service.running import running_service, shadowstore_command

SG, RSG = "First Storage Group", "Recovery Storage Group"
EDGE_CASES = [
    b"Subject: first\nFrom: Ann <ann@example.com>\nDate: Mon, 01 Jan 2024 10:00:00 +0000\n\nhello\n",
    b"Subject: a From line\n\nFrom here on, a body line that mbox would quote\n",
    b"Subject: crlf\r\n\r\nbody\r\n",
    b"Subject: caf\xe9\n\n\x00\xff binary\n",
    b"",
    b"no header and no final newline",
    b"Subject: =?broken\nX-Header-Without-Colon\n\n",
]


def _maildir(path: Path, raws: list[bytes]) -> Path:
    box = mailbox.Maildir(str(path), create=True)
    for raw in raws:
        box.add(raw)
    box.close()
    return path


def _maildir_bytes(path: Path) -> list[bytes]:
    box = mailbox.Maildir(str(path), factory=None, create=False)
    return sorted(box.get_bytes(key) for key in box.iterkeys())


def _json(service: object, *args: str) -> dict[str, object]:
    return json.loads(service.cli(*args, "--json").stdout)  # type: ignore[attr-defined]


def test_point_in_time_restore_through_the_service_keeps_mail_byte_identical(home_dir: str, tmp_path: Path) -> None:
    target = str(tmp_path / "backups")
    first = _maildir(tmp_path / "first", EDGE_CASES)
    second = _maildir(tmp_path / "second", list(generate_messages(11, 12)))
    third = _maildir(tmp_path / "third", list(generate_messages(12, 5)))
    with running_service(home_dir) as service:
        service.cli("mail", "import", "--mailbox", "alice", str(first))
        service.cli("backup", "run", "--sg", SG, "--kind", "full", "--to", target)
        service.cli("mail", "import", "--mailbox", "alice", "--folder", "Later", str(second))
        service.cli("backup", "run", "--sg", SG, "--kind", "incremental", "--to", target)
        time.sleep(0.05)
        point = dt.datetime.now(dt.UTC).isoformat()
        time.sleep(0.05)
        service.cli("mail", "import", "--mailbox", "alice", "--folder", "Latest", str(third))
        service.cli("backup", "run", "--sg", SG, "--kind", "incremental", "--to", target)

        service.cli("restore", "run", "--from", target, "--into-recovery-group", "--until", point)
        listed = _json(service, "mail", "list", "--sg", RSG)
        assert [(m["name"], m["messages"]) for m in listed] == [("alice", len(EDGE_CASES) + 12)]  # type: ignore[index]
        for folder, source in (("INBOX", first), ("Later", second)):
            out = tmp_path / f"restored-{folder}"
            service.cli("mail", "export", "--sg", RSG, "--mailbox", "alice", "--folder", folder,
                        "--format", "maildir", str(out))  # fmt: skip
            assert _maildir_bytes(out) == _maildir_bytes(source), folder
        latest = service.cli("mail", "list", "--sg", RSG, "--mailbox", "alice", "--folder", "Latest", check=False)
        assert latest.returncode == 4, latest.stdout  # why: it was delivered after the point restored to

        # the live store still has everything, the latest folder included
        live = {m["name"]: m for m in _json(service, "mail", "list")}  # type: ignore[union-attr]
        assert live["alice"]["messages"] == len(EDGE_CASES) + 17  # type: ignore[index]
        through_service = service.cli("mail", "list", "--mailbox", "alice").stdout
    # the same command without the service: the same answer
    import subprocess

    direct = subprocess.run(
        shadowstore_command("--home", home_dir, "mail", "list", "--mailbox", "alice"),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert direct.stdout == through_service


def test_mail_commands_say_what_is_wrong_through_the_service(home_dir: str, tmp_path: Path) -> None:
    with running_service(home_dir) as service:
        missing = service.cli("mail", "export", "--mailbox", "nobody", "--format", "mbox", str(tmp_path / "x"),
                              check=False)  # fmt: skip
        assert missing.returncode == 4, missing.stderr
        assert "nobody" in missing.stderr
        assert "Traceback" not in missing.stderr
        not_there = service.cli("mail", "list", "--sg", "No Such Group", check=False)
        assert not_there.returncode == 4
        assert "No Such Group" in not_there.stderr
        assert os.path.exists(service.socket)


ENGINE_PROBE = (
    "import atexit, sys; "
    "loaded = lambda: 'shadowstore.engine.storagegroup' in sys.modules; "
    "atexit.register(lambda: print('engine loaded:', loaded(), file=sys.stderr)); "
    "from shadowstore.cli.main import entry; entry()"
)


def _mail_list(home: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENGINE_PROBE, "--home", home, "mail", "list"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_mail_command_the_service_answers_does_not_load_the_engine(home_dir: str) -> None:
    # why it matters: loading the engine was about half of such a command's time (docs/performance.md)
    with running_service(home_dir) as service:
        service.cli("mail", "import", "--mailbox", "alice", "--quiet", str(_maildir_of_one(home_dir)))
        through = _mail_list(home_dir)
    assert through.returncode == 0, through.stderr
    assert "alice" in through.stdout
    assert "engine loaded: False" in through.stderr
    direct = _mail_list(home_dir)  # the same command with no service opens the home itself
    assert direct.returncode == 0, direct.stderr
    assert "alice" in direct.stdout
    assert "engine loaded: True" in direct.stderr


def _maildir_of_one(home: str) -> Path:
    return _maildir(Path(home).parent / "one-message", [b"Subject: hello\r\n\r\nbody\r\n"])
