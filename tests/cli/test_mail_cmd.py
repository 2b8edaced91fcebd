"""``shadowstore mail import|export|list|generate|check`` end to end, with --json, and their refusals."""

from __future__ import annotations

import json
import mailbox
import os
from pathlib import Path
from typing import Any

import pytest

from shadowstore.cli import mail_cmd
from shadowstore.cli.mail_cmd import compare
from shadowstore.errors import StorageGroupOfflineError
from shadowstore.home import ServerHome
from shadowstore.mail.backend import DirectMail
from tests.cli.clirun import run, run_json

FROM_LINE = b"From sender@example.com Mon Jan  1 00:00:00 2024\n"
MESSAGES = [
    b"Subject: first\nFrom: Ann <ann@example.com>\nDate: Mon, 01 Jan 2024 10:00:00 +0000\n\nhello\n",
    b"Subject: quoted\n\n>From the start of a line\n",
    b"Subject: crlf\r\n\r\nbody\r\n",
    b"Subject: caf\xe9\n\n\x00\xff binary\n",
    b"",
    b"no header, last, no newline",
]


@pytest.fixture
def home_dir(tmp_path: Path) -> str:
    path = str(tmp_path / "home")
    ServerHome.init(path, log_file_size=64 * 1024)
    return path


@pytest.fixture
def source_mbox(tmp_path: Path) -> Path:
    path = tmp_path / "in.mbox"
    path.write_bytes(b"".join(FROM_LINE + raw + b"\n" for raw in MESSAGES[:-1]) + FROM_LINE + MESSAGES[-1])
    return path


def mbox_messages(path: Path) -> list[bytes]:
    box = mailbox.mbox(str(path), create=False)
    try:
        return [box.get_bytes(key) for key in box.iterkeys()]
    finally:
        box.close()


def maildir_messages(path: Path) -> dict[str, bytes]:
    box = mailbox.Maildir(str(path), factory=None, create=False)
    return {box._lookup(k): box.get_bytes(k) for k in box.iterkeys()}  # type: ignore[attr-defined]


def test_import_list_export_check_mbox(
    home_dir: str, source_mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, summary = run_json(
        capsys, "--home", home_dir, "mail", "import", "--mailbox", "alice", str(source_mbox), "--json"
    )
    assert code == 0
    assert (summary["messages"], summary["bytes"], summary["format"]) == (6, sum(map(len, MESSAGES)), "mbox")
    assert summary["folders"] == {"INBOX": {"messages": 6, "bytes": sum(map(len, MESSAGES))}}
    code, boxes = run_json(capsys, "--home", home_dir, "mail", "list", "--json")
    assert [(b["name"], b["messages"], b["folders"]) for b in boxes] == [("alice", 6, ["INBOX"])]
    code, listed = run_json(capsys, "--home", home_dir, "mail", "list", "--mailbox", "alice", "--json")
    assert [(m["folder"], m["uid"], m["subject"]) for m in listed][:3] == [
        ("INBOX", 1, "first"),
        ("INBOX", 2, "quoted"),
        ("INBOX", 3, "crlf"),
    ]
    assert listed[0]["from"] == "Ann <ann@example.com>"
    code, out, _ = run(capsys, "--home", home_dir, "mail", "list", "--mailbox", "alice")
    assert code == 0
    assert "2024-01-01 10:00  Ann <ann@example.com>  first" in out
    out_path = tmp_path / "out.mbox"
    code, exported = run_json(
        capsys, "--home", home_dir, "mail", "export", "--mailbox", "alice", "--format", "mbox", str(out_path), "--json"
    )
    assert (code, exported["messages"], exported["altered"]) == (0, 6, [])
    assert mbox_messages(out_path) == mbox_messages(source_mbox) == MESSAGES
    code, out, _ = run(capsys, "--home", home_dir, "mail", "check", "--mailbox", "alice", str(out_path))
    assert code == 0
    assert "ok: the 6 message(s)" in out


def test_maildir_with_subfolders_round_trips(home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "Maildir"
    files = {
        "cur/1700000001.A.host:2,S": b"From the first line\n",
        "new/1700000002.B.host": b"Subject: b\n\nbody",
        ".Sent/cur/1700000003.C.host:2,RS": b"Subject: sent\n\nFrom here\n",
    }
    for sub in ("", ".Sent/"):
        for part in ("tmp", "new", "cur"):
            (source / f"{sub}{part}").mkdir(parents=True)
    for name, data in files.items():
        (source / name).write_bytes(data)
    code, summary = run_json(capsys, "--home", home_dir, "mail", "import", "--mailbox", "bob", str(source), "--json")
    assert (code, summary["format"], list(summary["folders"])) == (0, "maildir", ["INBOX", "Sent"])
    out = tmp_path / "export"
    code, _out, err = run(
        capsys, "--home", home_dir, "mail", "export", "--mailbox", "bob", "--format", "maildir", str(out)
    )
    assert code == 0, err
    assert maildir_messages(out) == maildir_messages(source)
    assert maildir_messages(out / ".Sent") == maildir_messages(source / ".Sent")
    assert run(capsys, "--home", home_dir, "mail", "check", "--mailbox", "bob", str(out))[0] == 0
    code, _out, err = run(
        capsys, "--home", home_dir, "mail", "export", "--mailbox", "bob", "--format", "mbox", "x.mbox"
    )
    assert code == 3
    assert "has 2 folders and an mbox file holds one" in err
    assert "--folder (INBOX, Sent)" in err
    code, _out, err = run(
        capsys,
        "--home",
        home_dir,
        "mail",
        "export",
        "--mailbox",
        "bob",
        "--format",
        "mbox",
        "--folder",
        "INBOX",
        str(tmp_path / "y"),
    )
    assert code == 3
    assert "INBOX uid 1 (a line starts with 'From '" in err
    assert not os.path.exists(tmp_path / "x")
    assert not os.path.exists(tmp_path / "y")


def test_generate_is_deterministic_and_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exports = []
    for n in (1, 2):
        home = str(tmp_path / f"home{n}")
        ServerHome.init(home, log_file_size=64 * 1024)
        code, summary = run_json(
            capsys, "--home", home, "mail", "generate", "--mailboxes", "3", "--messages", "12", "--seed", "9", "--json"
        )
        assert code == 0
        assert list(summary["mailboxes"]) == ["user01", "user02", "user03"]
        assert summary["messages"] == 36
        target = tmp_path / f"user02-{n}.mbox"
        args = ["mail", "export", "--mailbox", "user02", "--format", "mbox", str(target)]
        assert run(capsys, "--home", home, *args)[0] == 0
        exports.append(target.read_bytes())
    assert exports[0] == exports[1]
    code, out, _ = run(capsys, "--home", home, "mail", "list")
    assert out.splitlines()[0].split() == ["MAILBOX", "MESSAGES", "BYTES", "FOLDERS"]
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [["user01", "12"], ["user02", "12"], ["user03", "12"]]
    code, summary = run_json(
        capsys, "--home", home, "mail", "generate", "--mailboxes", "1", "--messages", "2", "--seed", "9",
        "--mailbox-prefix", "team", "--json",
    )  # fmt: skip
    assert list(summary["mailboxes"]) == ["team01"]


def test_check_names_every_difference(
    home_dir: str, source_mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "alice", str(source_mbox))[0] == 0
    changed = tmp_path / "changed.mbox"
    changed.write_bytes(source_mbox.read_bytes().replace(b"hello", b"jello"))
    code, out, _ = run(capsys, "--home", home_dir, "mail", "check", "--mailbox", "alice", str(changed))
    assert code == 1
    assert "2 difference(s); 5 message(s) match byte for byte" in out
    assert "only in the store: INBOX uid 1" in out
    assert f"only in the source: {changed} message 1" in out
    code, report = run_json(capsys, "--home", home_dir, "mail", "check", "--mailbox", "alice", str(changed), "--json")
    assert (code, report["ok"], report["matched"], len(report["differences"])) == (1, False, 5, 2)


def test_import_batches_by_count_and_bytes(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "many.mbox"
    sizes = [100] * 150 + [3 << 20, 3 << 20, 100]
    source.write_bytes(b"".join(FROM_LINE + b"x" * (size - 1) + b"\n\n" for size in sizes))
    batches: list[int] = []

    class Recording(DirectMail):
        def add(self, mailbox: str, folder: str, raws: list[bytes], props: list[dict[str, Any]]) -> list[int]:
            batches.append(len(raws))
            return super().add(mailbox, folder, raws, props)

    monkeypatch.setattr(mail_cmd, "_backend", lambda ctx: Recording(ctx.open_home()))
    code, summary = run_json(capsys, "--home", home_dir, "mail", "import", "--mailbox", "big", str(source), "--json")
    assert (code, summary["messages"]) == (0, len(sizes))
    # 64 messages per add (one durable commit), or fewer when the next message would pass 4 MiB:
    # 22 small ones and a 3 MiB one, then the second 3 MiB one and the last small one
    assert batches == [64, 64, 23, 2]


def test_two_maildir_files_with_one_unique_name_are_both_imported(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the stdlib reader gives one message per unique name (the part before ':'); the other file is a message
    # too, and a mail program may well leave both: neither is dropped
    source = tmp_path / "Maildir"
    for part in ("tmp", "new", "cur"):
        (source / part).mkdir(parents=True)
    (source / "new" / "17.same.host").write_bytes(b"one")
    (source / "cur" / "17.same.host:2,S").write_bytes(b"two")
    code, out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(source))
    assert code == 0, err
    assert "imported 2 message(s)" in out
    code, out, err = run(capsys, "--home", home_dir, "mail", "check", "--mailbox", "m", str(source))
    assert code == 0, out + err
    assert out.startswith("ok: the 2 message(s)")
    target = tmp_path / "out"
    assert (
        run(capsys, "--home", home_dir, "mail", "export", "--mailbox", "m", "--format", "maildir", str(target))[0] == 0
    )
    exported = sorted(p.read_bytes() for sub in ("new", "cur") for p in (target / sub).iterdir())
    assert exported == [b"one", b"two"]


def test_bad_input_gets_a_clear_error_and_changes_nothing(
    home_dir: str, source_mbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "a", str(tmp_path / "nope"))
    assert (code, "does not exist" in err, "hint: name an mbox file or a Maildir folder" in err) == (4, True, True)
    note = tmp_path / "note.txt"
    note.write_bytes(b"Subject: hi\n\nbody\n")
    code, _out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "a", str(note))
    assert (code, "is not an mbox file" in err) == (3, True)
    broken = tmp_path / "broken"
    (broken / "cur").mkdir(parents=True)
    (broken / "new").write_bytes(b"a file where a folder belongs")
    code, _out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "a", str(broken))
    assert (code, f"{broken}/new is a file, not a folder" in err, "Traceback" in err) == (3, True, False)
    code, _out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "a/b", str(source_mbox))
    assert (code, "mailbox name 'a/b'" in err) == (3, True)
    code, boxes = run_json(capsys, "--home", home_dir, "mail", "list", "--json")
    assert boxes == []
    code, error = run_json(
        capsys,
        "--home",
        home_dir,
        "mail",
        "export",
        "--mailbox",
        "nobody",
        "--format",
        "mbox",
        str(tmp_path / "o"),
        "--json",
    )
    assert (code, error["error"], "mail list" in error["hint"]) == (4, "NotFoundError", True)
    code, _out, err = run(capsys, "--home", home_dir, "mail", "list", "--mailbox", "nobody")
    assert (code, "no mailbox 'nobody'" in err) == (4, True)
    assert run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "alice", str(source_mbox))[0] == 0
    taken = tmp_path / "taken.mbox"
    taken.write_bytes(b"precious")
    args = ["mail", "export", "--mailbox", "alice", "--format", "mbox", str(taken)]
    code, _out, err = run(capsys, "--home", home_dir, *args)
    assert (code, "nothing is overwritten" in err, taken.read_bytes()) == (3, True, b"precious")
    code, _out, err = run(capsys, "--home", home_dir, "mail", "list", "--folder", "INBOX")
    assert (code, "--folder needs --mailbox" in err) == (3, True)
    code, _out, err = run(
        capsys, "--home", home_dir, "mail", "generate", "--mailboxes", "0", "--messages", "1", "--seed", "1"
    )
    assert code == 3
    assert "Traceback" not in err


def test_mail_commands_leave_the_storage_group_dismounted(
    home_dir: str, source_mbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "alice", str(source_mbox))[0] == 0
    code, status = run_json(capsys, "--home", home_dir, "status", "--json")
    assert code == 0
    (store,) = [s for s in status["storage_groups"][0]["stores"] if s["name"] == "Mailbox Store"]
    assert store["state"] == "Clean Shutdown"


def test_a_failed_batch_says_what_was_stored_before_it(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "many.mbox"
    source.write_bytes(b"".join(FROM_LINE + b"message %d\n\n" % n for n in range(100)))

    class FailingSecond(DirectMail):
        def add(self, mailbox: str, folder: str, raws: list[bytes], props: list[dict[str, Any]]) -> list[int]:
            if self.mail.count(mailbox):
                raise StorageGroupOfflineError("the log disk failed")
            return super().add(mailbox, folder, raws, props)

    monkeypatch.setattr(mail_cmd, "_backend", lambda ctx: FailingSecond(ctx.open_home()))
    code, _out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(source))
    assert code == StorageGroupOfflineError.exit_code
    assert "the log disk failed (in the batch from message 65; the 64 message(s) before it are stored)" in err
    assert "hint: check the event log" in err
    with DirectMail(ServerHome.open(home_dir)) as backend:
        assert [r.raw for r in backend.messages("m")] == [b"message %d\n" % n for n in range(64)]


def test_a_failed_generate_names_the_mailboxes_done_before_it(
    home_dir: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class FailingSecondMailbox(DirectMail):
        def create_mailbox(self, name: str) -> None:
            if name == "user02":
                raise StorageGroupOfflineError("the log disk failed")
            super().create_mailbox(name)

    monkeypatch.setattr(mail_cmd, "_backend", lambda ctx: FailingSecondMailbox(ctx.open_home()))
    args = ("--home", home_dir, "mail", "generate", "--mailboxes", "3", "--messages", "4", "--seed", "5", "--quiet")
    code, _out, err = run(capsys, *args)
    assert code == StorageGroupOfflineError.exit_code
    assert "the log disk failed (while generating user02; mailboxes done before it: user01 (4))" in err
    with DirectMail(ServerHome.open(home_dir)) as backend:
        assert [m["name"] for m in backend.mailboxes()] == ["user01"]


def test_compare_matches_in_any_order_and_names_what_is_left() -> None:
    stored = [("INBOX", "uid 1", b"a"), ("INBOX", "uid 2", b"b"), ("INBOX", "uid 3", b"b")]
    source = [("INBOX", "m1", b"b"), ("INBOX", "m2", b"a"), ("INBOX", "m3", b"c"), ("Sent", "m4", b"b")]
    matched, differences = compare(stored, source)
    assert matched == 2
    assert sorted((d.side, d.folder, d.label) for d in differences) == [
        ("source", "INBOX", "m3"),
        ("source", "Sent", "m4"),
        ("store", "INBOX", "uid 3"),
    ]


@pytest.mark.parametrize("empty", ["empty.mbox", "/dev/null", "Maildir"])
def test_an_import_that_finds_no_message_says_so(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], empty: str
) -> None:
    source = tmp_path / empty
    if empty == "empty.mbox":
        source.write_bytes(b"")
    elif empty == "Maildir":
        for part in ("tmp", "new", "cur"):
            (source / part).mkdir(parents=True)
    warning = f"warning: no message was found in {source}; nothing was imported into mailbox 'm'\n"
    code, out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(source))
    assert code == 0
    assert "imported 0 message(s)" in out
    assert err == warning
    code, out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(source), "--json")
    assert code == 0
    assert err == warning
    summary = json.loads(out)
    assert (summary["messages"], summary["warnings"]) == (0, [warning.removeprefix("warning: ").rstrip("\n")])


def test_an_import_that_finds_messages_has_no_warning(
    home_dir: str, source_mbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(source_mbox), "--json")
    assert (code, err) == (0, "")
    assert (json.loads(out)["messages"], json.loads(out)["warnings"]) == (len(MESSAGES), [])
