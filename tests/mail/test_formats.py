"""mbox and Maildir: every message comes back byte for byte through the store, whatever it holds; exports never
overwrite, and an mbox export refuses (or, when asked, quotes) what an mbox cannot hold exactly."""

from __future__ import annotations

import mailbox
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowstore.errors import InvalidParameterError, NotFoundError, ShadowStoreError
from shadowstore.home import ServerHome
from shadowstore.mail.backend import DirectMail
from shadowstore.mail.formats import (
    MAILDIR,
    MBOX,
    export_maildir,
    export_mbox,
    mbox_problem,
    open_source,
    quote_for_mbox,
    read_source,
)
from shadowstore.mail.mailstore import MailStore
from shadowstore.mail.schema import MessageRecord
from tests.conftest import examples

FROM_LINE = b"From sender@example.com Mon Jan  1 00:00:00 2024"
# Messages an mbox can hold exactly (none has a line starting "From "), each ending in a line break.
TRICKY = {
    "plain": b"Subject: hi\nFrom: a@example.com\n\nbody\n",
    "quoted_from": b"Subject: q\n\n>From the start\n>>From deeper\n >From indented\nFrom: is a header-like line\n",
    "crlf": b"Subject: crlf\r\nFrom: a@example.com\r\n\r\nline one\r\nline two\r\n\r\n",
    "eight_bit": b"Subject: caf\xe9 \xff\xfe\n\n\x80\x81 junk \xc3\x28\n",
    "binary": bytes(b for b in range(256) if b != 0x0A) + b"\n\x00\x00\n",
    "malformed_headers": b"Subject without colon\n: empty name\nX-Bad: =?utf-8?b?###?=\n\tcontinuation\n\nbody\n",
    "no_headers": b"just a body line, no header at all\n",
    "empty": b"",
    "blank_lines": b"\n\n\n",
    "trailing_blank": b"Subject: t\n\nbody\n\n",
}
NO_NEWLINE = b"Subject: last\n\nthe last message has no line break at the end"


def write_mbox(path: Path, messages: list[bytes], *, last: bytes | None = None, from_line: bytes = FROM_LINE) -> None:
    """An mbox as mail programs write it: From_ line, message, blank line; ``last`` at the very end as it is."""
    data = b"".join(from_line + b"\n" + raw + b"\n" for raw in messages)
    if last is not None:
        data += from_line + b"\n" + last
    path.write_bytes(data)


def stdlib_mbox(path: Path | str) -> list[tuple[bytes, bytes]]:
    """(From_ line, message) as the stdlib reader gives them: the definition of "the message"."""
    box = mailbox.mbox(str(path), create=False)
    try:
        return [(box.get_bytes(k, from_=True).split(b"\n", 1)[0], box.get_bytes(k)) for k in box.iterkeys()]
    finally:
        box.close()


def stdlib_maildir(path: Path | str) -> dict[str, bytes]:
    """Relative file path (subdir/name) -> bytes of every message, as the stdlib reader gives them."""
    box = mailbox.Maildir(str(path), factory=None, create=False)
    return {box._lookup(k): box.get_bytes(k) for k in box.iterkeys()}  # type: ignore[attr-defined]


def make_maildir(path: Path, files: dict[str, bytes]) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (path / name).write_bytes(data)


def import_into(mail: MailStore, mailbox_name: str, path: Path, folder: str = "INBOX") -> int:
    mail.create_mailbox(mailbox_name)
    count = 0
    for name, raw, props in read_source(open_source(str(path)), folder):
        mail.add_messages(mailbox_name, name, [(raw, props)])
        count += 1
    return count


@pytest.fixture
def home_parent(home: ServerHome) -> Path:
    return Path(home.path).parent


@pytest.fixture
def mail(home: ServerHome) -> MailStore:
    sg = home.storage_group()
    sg.mount()
    return MailStore(sg.store("Mailbox Store"))


# --- mbox ---------------------------------------------------------------------------------------------------------


def test_mbox_round_trip_is_byte_identical(mail: MailStore, tmp_path: Path) -> None:
    source = tmp_path / "in.mbox"
    write_mbox(source, list(TRICKY.values()), last=NO_NEWLINE)
    original = stdlib_mbox(source)
    assert [raw for _, raw in original] == [*TRICKY.values(), NO_NEWLINE]  # the test builds what it means to
    assert import_into(mail, "alice", source) == len(original)
    result = export_mbox(mail.messages("alice"), str(tmp_path / "out.mbox"))
    assert (result.messages, result.altered) == (len(original), [])
    assert stdlib_mbox(tmp_path / "out.mbox") == original
    assert (tmp_path / "out.mbox").read_bytes() == source.read_bytes()


def test_mbox_keeps_crlf_from_lines_and_a_file_without_final_newline(mail: MailStore, tmp_path: Path) -> None:
    source = tmp_path / "crlf.mbox"
    source.write_bytes(b"From a@b Sat Jan  1 00:00:00 2000\r\nSubject: x\r\n\r\nbody\r\n\r\nFrom c@d\r\nno newline")
    original = stdlib_mbox(source)
    assert [raw for _, raw in original] == [b"Subject: x\r\n\r\nbody\r\n\r\n", b"no newline"]
    import_into(mail, "crlf", source)
    export_mbox(mail.messages("crlf"), str(tmp_path / "out.mbox"))
    assert stdlib_mbox(tmp_path / "out.mbox") == original


def test_import_dismount_remount_export_is_identical(home: ServerHome, tmp_path: Path) -> None:
    source = tmp_path / "in.mbox"
    write_mbox(source, list(TRICKY.values()), last=NO_NEWLINE)
    maildir = tmp_path / "Maildir"
    make_maildir(maildir, {"cur/1700000001.A.host:2,S": b"From the top\nno header\n", "new/1700000002.B.host": b"x"})
    with DirectMail(home) as backend:
        mail = backend.mail
        import_into(mail, "alice", source)
        import_into(mail, "bob", maildir)
    assert not home.storage_group().mounted
    with DirectMail(home) as backend:
        export_mbox(backend.messages("alice"), str(tmp_path / "out.mbox"))
        export_maildir(backend.messages("bob"), str(tmp_path / "out-maildir"))
    assert stdlib_mbox(tmp_path / "out.mbox") == stdlib_mbox(source)
    assert stdlib_maildir(tmp_path / "out-maildir") == stdlib_maildir(maildir)


def test_mbox_export_refuses_what_an_mbox_cannot_hold_and_writes_nothing(mail: MailStore, tmp_path: Path) -> None:
    mail.create_mailbox("alice")
    raws = [b"Subject: a\n\nFrom here on\n", b"From the first line\n", b"fine\n", b"no newline", b"last, no newline"]
    mail.add_messages("alice", "INBOX", [(r, {}) for r in raws])
    exports = tmp_path / "exports"
    exports.mkdir()
    with pytest.raises(InvalidParameterError, match="3 message\\(s\\) cannot be written") as caught:
        export_mbox(mail.messages("alice"), str(exports / "out.mbox"))
    for text in ("INBOX uid 1 (a line starts with 'From '", "INBOX uid 2", "INBOX uid 4 (it does not end"):
        assert text in caught.value.message
    assert "uid 5" not in caught.value.message  # the last message needs no line break
    assert "--format maildir" in caught.value.hint
    assert os.listdir(exports) == []  # neither the file nor a temporary one


def test_mbox_export_quotes_when_asked_and_says_which(mail: MailStore, tmp_path: Path) -> None:
    mail.create_mailbox("alice")
    raws = [b"Subject: a\n\nFrom here on\n", b"From the first line\n", b"fine\n", b"no newline", b"last"]
    mail.add_messages("alice", "INBOX", [(r, {}) for r in raws])
    result = export_mbox(mail.messages("alice"), str(tmp_path / "out.mbox"), escape_from=True)
    assert [(a["uid"], a["why"][:9]) for a in result.altered] == [(1, "a line st"), (2, "a line st"), (4, "it does n")]
    read = [raw for _, raw in stdlib_mbox(tmp_path / "out.mbox")]
    assert read == [quote_for_mbox(r, last=i == len(raws) - 1) for i, r in enumerate(raws)]
    assert read[:2] == [b"Subject: a\n\n>From here on\n", b">From the first line\n"]


def test_mbox_problem_and_quoting() -> None:
    assert mbox_problem(b"a\nFrom x\n", last=True) is not None
    assert mbox_problem(b"From x", last=True) is not None
    assert mbox_problem(b">From x\nFrom: y\nFromage\n", last=False) is None
    assert mbox_problem(b"", last=False) is None
    assert mbox_problem(b"x", last=False) is not None
    assert mbox_problem(b"x", last=True) is None
    assert quote_for_mbox(b"From a\nFrom b\n>From c", last=False) == b">From a\n>From b\n>From c\n"


# --- Maildir ------------------------------------------------------------------------------------------------------

MAILDIR_FILES = {
    "new/1700000000.M1P1.host": b"From the very first line, which an mbox would split\nSubject: x\n\nbody\n",
    "cur/1700000001.M2P2.host:2,FS": b"Subject: flagged\n\nFrom here the body starts\n",
    "cur/1700000002.M3P3.host:2,": b"no trailing newline",
    "cur/1700000003.M4P4.host:2,RS": b"Subject: crlf\r\n\r\nbody\r\n",
    "new/1700000004.M5P5.host": bytes(range(256)),
    "new/1700000005.M6P6.host": b"",
    "new/1700000006.M7P7.host": b"Subject: caf\xe9\n\xff\xfe malformed\n\n",
}


def test_maildir_round_trip_keeps_bytes_names_flags_and_subfolders(mail: MailStore, tmp_path: Path) -> None:
    source = tmp_path / "Maildir"
    make_maildir(source, MAILDIR_FILES)
    make_maildir(source / ".Sent", {"cur/1700000100.S1.host:2,S": b"Subject: sent\n\nbody\n"})
    (source / ".Sent" / "maildirfolder").write_bytes(b"")
    (source / ".uidvalidity").write_bytes(b"1 2\n")  # a dot file: not mail, passed over quietly
    (source / ".Junk").mkdir()  # a dot folder that is no Maildir: named, so nothing is skipped silently
    found = open_source(str(source))
    assert (found.kind, [f.name for f in found.folders]) == (MAILDIR, [None, "Sent"])
    assert found.ignored == [f"{source}/.Junk (not a Maildir++ subfolder: no cur/ and new/)"]
    assert found.size == sum(map(len, MAILDIR_FILES.values())) + 20
    import_into(mail, "alice", source)
    assert [f["name"] for f in mail.folders("alice")] == ["INBOX", "Sent"]
    flags = {r.props["maildir"]["name"]: r.props["flags"] for r in mail.messages("alice", "INBOX")}
    assert flags["1700000001.M2P2.host:2,FS"] == "FS"
    out = tmp_path / "out"
    result = export_maildir(mail.messages("alice"), str(out))
    assert (result.messages, result.folders) == (8, ["INBOX", "Sent"])
    assert stdlib_maildir(out) == stdlib_maildir(source) == {k: v for k, v in MAILDIR_FILES.items()}
    assert stdlib_maildir(out / ".Sent") == stdlib_maildir(source / ".Sent")
    assert (out / ".Sent" / "maildirfolder").exists()


def test_maildir_export_names_messages_that_came_without_a_file_name(mail: MailStore, tmp_path: Path) -> None:
    mail.create_mailbox("alice")
    same = {"maildir": {"subdir": "cur", "name": "1.dup.host:2,S"}}
    bad = {"maildir": {"subdir": "../x", "name": "../../escape"}}
    mail.add_messages("alice", "INBOX", [(b"one", {}), (b"two", same), (b"three", same), (b"four", bad)])
    export_maildir(mail.messages("alice"), str(tmp_path / "out"))
    got = {re.sub(r"^new/\d+\.", "new/<time>.", name): raw for name, raw in stdlib_maildir(tmp_path / "out").items()}
    assert got == {
        "new/<time>.U1.shadowstore": b"one",
        "cur/1.dup.host:2,S": b"two",
        "cur/1.dup.host-2:2,S": b"three",  # the same unique name twice would be one message to a reader
        "new/<time>.U4.shadowstore": b"four",  # a name that would leave its folder is not used
    }


def test_files_with_one_unique_name_are_each_a_message_with_its_own_name_and_flags(tmp_path: Path) -> None:
    source = tmp_path / "Maildir"
    make_maildir(source, {"new/1700.same.host": b"one", "cur/1700.same.host:2,S": b"two"})
    found = open_source(str(source))
    assert found.ignored == []
    read = [(raw, props["maildir"], props["flags"]) for _folder, raw, props in read_source(found)]
    assert sorted(read, key=lambda r: r[0]) == [
        (b"one", {"subdir": "new", "name": "1700.same.host"}, ""),
        (b"two", {"subdir": "cur", "name": "1700.same.host:2,S"}, "S"),
    ]
    assert found.folders[0].size == 6


def test_a_failed_maildir_export_leaves_nothing(mail: MailStore, tmp_path: Path) -> None:
    mail.create_mailbox("alice")
    mail.add_messages("alice", "INBOX", [(b"one", {}), (b"two", {})])

    def failing() -> Iterator[MessageRecord]:
        yield from mail.messages("alice")
        raise ShadowStoreError("the store went away")

    exports = tmp_path / "exports"
    exports.mkdir()
    with pytest.raises(ShadowStoreError, match="went away"):
        export_maildir(failing(), str(exports / "out"))
    assert os.listdir(exports) == []


# --- sources and targets ------------------------------------------------------------------------------------------


def test_sources_that_are_not_mailboxes_are_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        open_source(str(tmp_path / "missing"))
    (tmp_path / "note.txt").write_bytes(b"Subject: a single message\n\nbody\n")
    with pytest.raises(InvalidParameterError, match="not an mbox file: it does not start with a 'From ' line") as e:
        open_source(str(tmp_path / "note.txt"))
    assert "Maildir" in e.value.hint
    (tmp_path / "folder").mkdir()
    with pytest.raises(InvalidParameterError, match="not a Maildir: it has no cur/ and new/"):
        open_source(str(tmp_path / "folder"))
    (tmp_path / "empty.mbox").write_bytes(b"")
    empty = open_source(str(tmp_path / "empty.mbox"))
    assert (empty.kind, list(read_source(empty))) == (MBOX, [])


def test_exports_never_overwrite(mail: MailStore, home_parent: Path) -> None:
    tmp_path = home_parent / "exports"
    tmp_path.mkdir()
    mail.create_mailbox("alice")
    mail.add_messages("alice", "INBOX", [(b"one\n", {})])
    taken = tmp_path / "taken.mbox"
    taken.write_bytes(b"precious")
    with pytest.raises(InvalidParameterError, match="not empty"):
        export_mbox(mail.messages("alice"), str(taken))
    assert taken.read_bytes() == b"precious"
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_bytes(b"precious")
    with pytest.raises(InvalidParameterError, match="folder that is not empty"):
        export_maildir(mail.messages("alice"), str(full))
    with pytest.raises(InvalidParameterError, match="is a folder; an mbox export writes one file"):
        export_mbox(mail.messages("alice"), str(full))
    with pytest.raises(InvalidParameterError, match="is a file"):
        export_maildir(mail.messages("alice"), str(taken))
    with pytest.raises(NotFoundError, match="does not exist"):
        export_mbox(mail.messages("alice"), str(tmp_path / "no" / "such.mbox"))
    assert sorted(os.listdir(tmp_path)) == ["full", "taken.mbox"]
    assert os.listdir(full) == ["keep"]
    (tmp_path / "empty.mbox").write_bytes(b"")
    (tmp_path / "empty-dir").mkdir()
    export_mbox(mail.messages("alice"), str(tmp_path / "empty.mbox"))
    export_maildir(mail.messages("alice"), str(tmp_path / "empty-dir"))
    assert [raw for _, raw in stdlib_mbox(tmp_path / "empty.mbox")] == [b"one\n"]
    assert list(stdlib_maildir(tmp_path / "empty-dir").values()) == [b"one\n"]


# --- properties ---------------------------------------------------------------------------------------------------

CHUNKS = [b"From ", b">From ", b"From", b"\n", b"\n", b"\r\n", b"\r", b"x", b"Subject: s", b"\x00", b"\xff", b" ", b":"]


@settings(max_examples=examples(60), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(CHUNKS), max_size=60))
def test_any_mbox_file_round_trips_through_the_store(mail: MailStore, parts: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.mbox"
        source.write_bytes(b"From a\n" + b"".join(parts))
        name = f"p{len(mail.mailboxes())}"
        import_into(mail, name, source)
        export_mbox(mail.messages(name), str(Path(folder) / "out.mbox"))
        assert stdlib_mbox(Path(folder) / "out.mbox") == stdlib_mbox(source)


@settings(max_examples=examples(40), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raws=st.lists(st.lists(st.sampled_from(CHUNKS), max_size=30).map(b"".join) | st.binary(max_size=64), max_size=6))
def test_any_maildir_messages_round_trip_through_the_store(mail: MailStore, raws: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "Maildir"
        make_maildir(
            source, {f"{'cur' if i % 2 else 'new'}/17000{i}.M{i}.h{':2,S' * (i % 2)}": r for i, r in enumerate(raws)}
        )
        name = f"p{len(mail.mailboxes())}"
        import_into(mail, name, source)
        export_maildir(mail.messages(name), str(Path(folder) / "out"))
        assert stdlib_maildir(Path(folder) / "out") == stdlib_maildir(source)
