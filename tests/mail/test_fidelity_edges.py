"""Edges of the promise "an exported message is byte-identical to the imported one; malformed messages are stored as
they are, never altered or dropped": Maildir names the reader accepts, folders that would merge, a Maildir that
changes during an import, and what ``mail check`` did not compare.

What "byte-identical" means for an mbox (formats.py): the message is what the stdlib reader gives between a
From_ line and the blank line before the next one; an export is identical when that reader gives the same bytes
and the same From_ line back. The file itself may differ where the reader cannot tell two files apart (a blank
line before a From_ line, or none, gives the same message)."""

from __future__ import annotations

import mailbox
import os
import stat
from pathlib import Path

import pytest

from shadowstore.errors import NotFoundError
from shadowstore.home import ServerHome
from shadowstore.mail import formats
from shadowstore.mail.formats import export_maildir, open_source, read_source
from shadowstore.mail.schema import MessageRecord
from tests.cli.clirun import run, run_json


@pytest.fixture
def home_dir(tmp_path: Path) -> str:
    path = str(tmp_path / "home")
    ServerHome.init(path, log_file_size=64 * 1024)
    return path


def make_maildir(path: Path, files: dict[str, bytes]) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (path / name).write_bytes(data)


def stdlib_maildir(path: Path) -> dict[str, bytes]:
    """subdir/name -> bytes of every message, as the stdlib reader gives them."""
    box = mailbox.Maildir(str(path), factory=None, create=False)
    return {box._lookup(k): box.get_bytes(k) for k in box.iterkeys()}  # type: ignore[attr-defined]


def one_message_mailbox(capsys: pytest.CaptureFixture[str], home_dir: str, tmp_path: Path) -> None:
    """Mailbox "m" holding one message, imported from an mbox, to export."""
    source = tmp_path / "in.mbox"
    source.write_bytes(b"From a\nSubject: x\n\n")
    assert run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(source))[0] == 0


# --- Maildir file names -------------------------------------------------------------------------------------------


def test_a_maildir_message_named_with_a_leading_dot_keeps_its_name_and_flags(tmp_path: Path) -> None:
    # the stdlib reader (and so the import) takes a dot file in cur/ as a message: its export must keep the
    # subdir and the flags in its name, as for any other message, not move it to new/ unseen
    source = tmp_path / "Maildir"
    make_maildir(source, {"cur/.17.M1.host:2,RS": b"Subject: dot\n\nbody\n", "cur/18.M2.host:2,S": b"x\n"})
    records = [
        MessageRecord(folder, uid, raw, props)
        for uid, (folder, raw, props) in enumerate(read_source(open_source(str(source))), start=1)
    ]
    export_maildir(records, str(tmp_path / "out"))
    assert stdlib_maildir(tmp_path / "out") == stdlib_maildir(source)


def test_names_a_file_system_cannot_hold_are_still_replaced(tmp_path: Path) -> None:
    # what stays refused: names that are no file name in a Maildir's cur/ or new/
    for bad in (".", "..", "a/b", "", "x" * 256):
        records = [MessageRecord("INBOX", 7, b"m\n", {"maildir": {"subdir": "cur", "name": bad}})]
        out = tmp_path / f"out{len(bad)}{bad.count('/')}"
        export_maildir(records, str(out))
        assert list(stdlib_maildir(out).values()) == [b"m\n"]
        assert list(stdlib_maildir(out)) == ["new/0.U7.shadowstore"]


# --- folders that would merge -------------------------------------------------------------------------------------


def test_a_maildir_subfolder_named_as_the_top_folder_is_refused_not_merged(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a Maildir++ subfolder ".INBOX" would land in the folder INBOX with the top folder's messages, and an export
    # would give them back as one folder: refused before anything is stored, with the way out in the hint
    source = tmp_path / "Maildir"
    make_maildir(source, {"new/1.top.host": b"Subject: top\n\n"})
    make_maildir(source / ".INBOX", {"new/2.sub.host": b"Subject: sub\n\n"})
    code, _out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(source))
    assert code == 3, err
    assert ("subfolder .INBOX" in err, "--folder" in err, "Traceback" in err) == (True, True, False)
    assert run_json(capsys, "--home", home_dir, "mail", "list", "--json")[1] == []
    code, _out, err = run(
        capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", "--folder", "Sent", str(source)
    )
    assert code == 0, err
    code, listed = run_json(capsys, "--home", home_dir, "mail", "list", "--mailbox", "m", "--json")
    assert sorted((m["folder"], m["subject"]) for m in listed) == [("INBOX", "sub"), ("Sent", "top")]


# --- a Maildir that changes during the import ---------------------------------------------------------------------


def test_a_maildir_message_removed_during_the_import_is_a_clear_error(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a mail program expunges a message while the import reads the Maildir: an error naming the file and saying
    # what was stored, not "unexpected failure ... (a bug in ShadowStore)" with exit code 2
    source = tmp_path / "Maildir"
    make_maildir(source, {f"new/{i:03d}.M.host": f"Subject: {i}\n\n".encode() for i in range(100)})
    reader = formats.read_maildir

    def expunging(path: str, fs: object = None) -> object:
        for n, item in enumerate(reader(path)):
            if n == 70:
                (source / "new" / "080.M.host").unlink()
            yield item

    monkeypatch.setattr(formats, "read_maildir", expunging)
    code, _out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(source))
    assert code == int(NotFoundError.exit_code), err
    assert ("080.M.host" in err, "the 64 message(s) before it are stored" in err) == (True, True)
    code, boxes = run_json(capsys, "--home", home_dir, "mail", "list", "--json")
    assert [(b["name"], b["messages"]) for b in boxes] == [("m", 64)]


# --- mail check ---------------------------------------------------------------------------------------------------


def test_check_does_not_say_ok_about_source_files_it_did_not_compare(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a dot folder without cur/ and new/ is no Maildir++ subfolder: the import names it; a check must not then
    # call the mailbox and the Maildir identical "and no others"
    source = tmp_path / "Maildir"
    make_maildir(source, {"new/17.one.host": b"one"})
    (source / ".Odd").mkdir()
    (source / ".Odd" / "17.two.host").write_bytes(b"two")
    assert run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(source))[0] == 1
    code, out, err = run(capsys, "--home", home_dir, "mail", "check", "--mailbox", "m", str(source))
    assert code == 1, out
    assert "ok:" not in out
    assert ("not compared:" in err, ".Odd" in err) == (True, True)
    code, verdict = run_json(capsys, "--home", home_dir, "mail", "check", "--mailbox", "m", str(source), "--json")
    assert (code, verdict["ok"], verdict["matched"], len(verdict["ignored"])) == (1, False, 1, 1)


def test_check_of_a_mailbox_imported_from_an_empty_mbox_is_ok(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.mbox"
    empty.write_bytes(b"")
    assert run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(empty))[0] == 0
    code, out, err = run(capsys, "--home", home_dir, "mail", "check", "--mailbox", "m", str(empty))
    assert (code, out.startswith("ok: the 0 message(s)")) == (0, True), err
    full = tmp_path / "full.mbox"
    full.write_bytes(b"From a\nSubject: x\n\n")
    code, out, err = run(capsys, "--home", home_dir, "mail", "check", "--mailbox", "m", str(full))
    assert (code, "only in the source" in out, "has no folder 'INBOX'" in out) == (1, True, True), (out, err)


# --- export targets -----------------------------------------------------------------------------------------------


def test_an_export_name_too_long_for_its_temporary_file_is_a_clear_refusal(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_message_mailbox(capsys, home_dir, tmp_path)
    for kind in ("mbox", "maildir"):
        target = tmp_path / ("x" * 250)
        code, _out, err = run(
            capsys, "--home", home_dir, "mail", "export", "--mailbox", "m", "--format", kind, str(target)
        )
        assert code == 3, err
        assert ("too long" in err, "shorter" in err, target.exists()) == (True, True, False)


def test_an_export_never_replaces_a_link_device_or_fifo_that_looks_empty(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # each of these has size 0, as an empty file has: the export's rename would replace it with a new file (as
    # root, /dev/null itself), or the link rather than write where it points
    one_message_mailbox(capsys, home_dir, tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    (tmp_path / "dirlink").symlink_to(tmp_path / "emptydir")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    targets = {
        "link": "a symbolic link",
        "dangling": "a symbolic link",
        "fifo": "a FIFO (named pipe)",
        "dirlink": "a symbolic link",
    }
    for name, kind in targets.items():
        for fmt in ("mbox", "maildir"):
            target = tmp_path / name
            code, _out, err = run(
                capsys, "--home", home_dir, "mail", "export", "--mailbox", "m", "--format", fmt, str(target)
            )
            assert (code, f"is {kind}; nothing is overwritten" in err) == (3, True), (name, fmt, err)
            assert target.is_symlink() or stat.S_ISFIFO(target.lstat().st_mode)
    assert ((tmp_path / "empty").read_bytes(), list((tmp_path / "emptydir").iterdir())) == (b"", [])


def test_a_target_name_the_file_system_refuses_is_a_clear_refusal(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_message_mailbox(capsys, home_dir, tmp_path)
    for fmt in ("mbox", "maildir"):
        code, _out, err = run(
            capsys, "--home", home_dir, "mail", "export", "--mailbox", "m", "--format", fmt, str(tmp_path / ("y" * 300))
        )
        assert (code, "File name too long" in err, "a bug" in err) == (3, True, False), err


@pytest.mark.timeout(30)  # without the check, opening the FIFO waits for a writer forever
def test_a_fifo_is_refused_as_an_mbox_source_instead_of_waiting_forever(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(tmp_path / "in.mbox")
    code, _out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(tmp_path / "in.mbox"))
    assert (code, "is a FIFO (named pipe), not an mbox file" in err) == (3, True), err


@pytest.mark.timeout(30)  # without the check, reading the FIFO as a message waits for a writer forever
def test_a_fifo_in_a_maildir_is_refused_before_anything_is_stored(
    home_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "Maildir"
    make_maildir(source, {"new/1.one.host": b"one"})
    os.mkfifo(source / "cur" / "2.two.host:2,S")
    code, _out, err = run(capsys, "--home", home_dir, "mail", "import", "--mailbox", "m", str(source))
    assert (code, "is a FIFO (named pipe), not a message file" in err) == (3, True), err
    assert run_json(capsys, "--home", home_dir, "mail", "list", "--json")[1] == []
