"""MailStore: mailboxes, folders and messages in a store; one durable commit per add; snapshots for reading."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowstore.engine.store import Store
from shadowstore.errors import DatabaseCorruptedError, InvalidParameterError, NotFoundError, NotMountedError
from shadowstore.home import ServerHome
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from shadowstore.mail import schema
from shadowstore.mail.backend import DirectMail
from shadowstore.mail.mailstore import MailStore, prepare_items
from shadowstore.mail.schema import StoredMessage
from tests.conftest import examples, fault_home, reopen

STORE = "Mailbox Store"


@pytest.fixture
def store(home: ServerHome) -> Store:
    sg = home.storage_group()
    sg.mount()
    return sg.store(STORE)


@pytest.fixture
def mail(store: Store) -> MailStore:
    return MailStore(store)


def message(n: int, size: int = 0) -> bytes:
    body = b"".join(b"line %d of message %d\n" % (i, n) for i in range(max(1, size // 24)))
    return (
        b"From: Sender %d <s%d@example.com>\nSubject: message %d\nMessage-ID: <%d@example.com>\n\n"
        % (
            n,
            n,
            n,
            n,
        )
        + body
    )


def test_create_mailbox_is_idempotent(mail: MailStore) -> None:
    first = mail.create_mailbox("alice")
    mail.add_messages("alice", "INBOX", [(message(1), {})])
    again = mail.create_mailbox("alice")
    assert again == first
    bob = mail.create_mailbox("bob")
    assert bob["id"] == first["id"] + 1
    assert (first["sg"], first["store"]) == ("First Storage Group", STORE)
    assert [m["name"] for m in mail.mailboxes()] == ["alice", "bob"]


def test_messages_come_back_exactly_with_consecutive_uids(mail: MailStore) -> None:
    mail.create_mailbox("alice")
    raws = [message(n, size=n * 700) for n in range(1, 40)]  # some above the inline size: stored as blobs
    assert mail.add_messages("alice", "INBOX", [(r, {}) for r in raws[:30]]) == list(range(1, 31))
    assert mail.add_messages("alice", "INBOX", [(r, {}) for r in raws[30:]]) == list(range(31, 40))
    assert mail.add_messages("alice", "Sent", [(b"", {})]) == [1]
    records = list(mail.messages("alice"))
    assert [(r.folder, r.uid) for r in records] == [*(("INBOX", u) for u in range(1, 40)), ("Sent", 1)]
    assert [r.raw for r in records] == [*raws, b""]
    assert [r.raw for r in mail.messages("alice", "Sent")] == [b""]
    assert mail.get("alice", "INBOX", 7).raw == raws[6]
    assert mail.count("alice") == 40
    assert mail.count("alice", "INBOX") == 39
    assert mail.totals("alice") == (40, sum(map(len, raws)))
    assert mail.totals("alice", "Sent") == (1, 0)
    listed = list(mail.messages("alice", "INBOX", raw=False))
    assert all(r.raw == b"" for r in listed)
    assert [r.props["subject"] for r in listed[:2]] == ["message 1", "message 2"]
    (box,) = mail.mailboxes()
    assert (box["messages"], box["bytes"], box["folders"]) == (40, sum(map(len, raws)), ["INBOX", "Sent"])
    folders = mail.folders("alice")
    assert [(f["name"], f["messages"], f["next_uid"]) for f in folders] == [("INBOX", 39, 40), ("Sent", 1, 2)]


def test_properties_are_parsed_and_the_computed_ones_win(mail: MailStore) -> None:
    mail.create_mailbox("alice")
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.com>\nTo: alice@example.com\n"
        b"Subject: =?utf-8?b?w6lsw6h2ZQ==?=\n  folded\nDate: Mon, 04 Mar 2024 22:11:10 +0100\n"
        b"Message-ID: <abc@example.com>\n\nbody\n"
    )
    extra = {"size": 1, "sha256": "forged", "mbox_from": "From j@example.com Mon Mar  4 21:11:10 2024", "received": 5}
    (uid,) = mail.add_messages("alice", "INBOX", [(raw, extra)])
    props = mail.get("alice", "INBOX", uid).props
    assert props["size"] == len(raw)
    assert props["sha256"] == hashlib.sha256(raw).hexdigest()
    assert props["from"] == "Jürgen <j@example.com>"
    assert props["subject"] == "élève folded"
    assert props["date_ts"] == 1709586670.0
    assert props["message_id"] == "<abc@example.com>"
    assert props["mbox_from"] == extra["mbox_from"]
    assert props["received"] == 5.0


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01\x02 binary \xff\xfe",
        b"no header at all\n",
        b"Subject: caf\xe9 \xff\nFrom: \x80\x81\n\nbody",
        b"Subject: =?bogus?q?a=ZZ?= =?utf-8?b?###?=\nDate: not a date\n\n",
        b"Date: Mon, 99 Foo 99999 99:99:99 +9999\n\n",
        b": no name\n\tcontinued\nSubject\n\n",
        b"Subject: \xed\xa0\x80 surrogate bytes\n\n",
    ],
)
def test_properties_of_malformed_messages_never_fail(mail: MailStore, raw: bytes) -> None:
    mail.create_mailbox("junk")
    (uid,) = mail.add_messages("junk", "INBOX", [(raw, {})])
    record = mail.get("junk", "INBOX", uid)
    assert record.raw == raw
    assert record.props["size"] == len(raw)


@settings(max_examples=examples(200))
@given(raw=st.binary(max_size=400) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_property_parsing_never_raises(raw: bytes) -> None:
    props = schema.message_props(b"Subject: " + raw + b"\n\n" + raw, {}, 0.0)
    schema.encode_record(props, "props")
    assert props["size"] == len(raw) * 2 + 11
    assert all(v is None or isinstance(v, str) for k, v in props.items() if k in ("subject", "from", "date"))


def test_unknown_mailbox_and_folder_are_not_found_never_key_error(mail: MailStore) -> None:
    with pytest.raises(NotFoundError, match="has no mailbox 'nobody' \\(it has none\\)") as caught:
        mail.add_messages("nobody", "INBOX", [(b"x", {})])
    assert "mail import" in caught.value.hint
    mail.create_mailbox("alice")
    mail.add_messages("alice", "INBOX", [(b"x", {})])
    calls = [
        lambda: mail.messages("nobody"),
        lambda: mail.folders("nobody"),
        lambda: mail.count("nobody"),
        lambda: mail.get("nobody", "INBOX", 1),
        lambda: mail.mailbox("nobody"),
    ]
    for call in calls:
        with pytest.raises(NotFoundError, match="it has: alice"):
            call()
    with pytest.raises(NotFoundError, match="has no folder 'Sent' \\(it has: INBOX\\)"):
        mail.messages("alice", "Sent")
    with pytest.raises(NotFoundError, match="no message with uid 2"):
        mail.get("alice", "INBOX", 2)
    for uid in (0, -1, 2**32, "1"):
        with pytest.raises(InvalidParameterError, match="a uid is a number"):
            mail.get("alice", "INBOX", uid)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="no mailbox"):
        mail.messages("\udcff lone surrogate")


@pytest.mark.parametrize("name", ["", " edge", "a/b", ".hidden", "tab\there", "x" * 201, 7])
def test_bad_names_are_refused(mail: MailStore, name: object) -> None:
    with pytest.raises(InvalidParameterError, match="name"):
        mail.create_mailbox(name)  # type: ignore[arg-type]
    mail.create_mailbox("ok")
    with pytest.raises(InvalidParameterError, match="name"):
        mail.add_messages("ok", name, [(b"x", {})])  # type: ignore[arg-type]


def test_one_add_is_one_durable_commit(mail: MailStore, store: Store) -> None:
    mail.create_mailbox("alice")
    for count in (1, 64, 300):
        before = store.head.dbtime  # type: ignore[union-attr]
        mail.add_messages("alice", "INBOX", [(message(n, 300), {}) for n in range(count)])
        assert store.head.dbtime == before + 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("text, not bytes", "is str, not bytes"),
        ((b"raw", ["not", "a", "mapping"]), "not a mapping"),
        ((b"raw", {"when": object()}), "cannot be stored"),
        ((b"raw", {"nan": float("nan")}), "cannot be stored"),
    ],
)
def test_a_bad_item_stores_nothing_of_its_call(mail: MailStore, store: Store, bad: object, error: str) -> None:
    mail.create_mailbox("alice")
    mail.add_messages("alice", "INBOX", [(message(n), {}) for n in range(5)])
    before = store.head.dbtime  # type: ignore[union-attr]
    item = bad if isinstance(bad, tuple) else (bad, {})
    with pytest.raises(InvalidParameterError, match=error) as caught:
        mail.add_messages("alice", "INBOX", [(message(6), {}), (message(7), {}), item])  # type: ignore[list-item]
    assert "message 3 of 3" in caught.value.message
    assert store.head.dbtime == before  # type: ignore[union-attr]
    assert mail.count("alice") == 5
    assert mail.add_messages("alice", "INBOX", [(message(6), {})]) == [6]


def test_items_staged_in_a_transaction_that_aborts_are_all_gone(mail: MailStore, store: Store) -> None:
    mail.create_mailbox("alice")
    staged: list[int] = []

    def stage_then_fail() -> None:
        with store.transaction() as tx:
            staged.extend(mail.add_in(tx, "alice", "INBOX", prepare_items([(message(n), {}) for n in range(10)], 0.0)))
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        stage_then_fail()
    assert staged == list(range(1, 11))
    assert mail.count("alice") == 0
    assert mail.folders("alice") == []


def test_two_callers_in_one_transaction_get_distinct_uids(mail: MailStore, store: Store) -> None:
    mail.create_mailbox("alice")
    with store.transaction() as tx:
        first = mail.add_in(tx, "alice", "INBOX", prepare_items([(b"a", {}), (b"b", {})], 0.0))
        second = mail.add_in(tx, "alice", "INBOX", prepare_items([(b"c", {})], 0.0))
    assert (first, second) == ([1, 2], [3])
    assert [r.raw for r in mail.messages("alice")] == [b"a", b"b", b"c"]


def test_an_oversized_message_is_refused_before_anything_is_written(mail: MailStore) -> None:
    mail.create_mailbox("alice")
    huge = bytes(256 * 1024 * 1024 + 1)
    with pytest.raises(InvalidParameterError, match="at most 268,435,456 bytes") as caught:
        mail.add_messages("alice", "INBOX", [(b"small", {}), (huge, {})])
    assert "nothing of this batch was stored" in caught.value.hint
    assert mail.count("alice") == 0


def test_a_listing_reads_one_snapshot_while_messages_arrive(mail: MailStore) -> None:
    mail.create_mailbox("alice")
    mail.add_messages("alice", "INBOX", [(message(n), {}) for n in range(3)])
    reading = mail.messages("alice")
    assert next(reading).uid == 1
    mail.add_messages("alice", "INBOX", [(message(n), {}) for n in range(3, 6)])
    mail.add_messages("alice", "Later", [(b"x", {})])
    assert [r.uid for r in reading] == [2, 3]
    assert mail.count("alice") == 7


MODES = [("drop", 0), ("tear", 1), ("tear", 2)]


@pytest.mark.parametrize(("mode", "seed"), MODES)
@pytest.mark.parametrize(("point", "after"), [("log.flush.after_write", 2), ("log.roll.after_new_header", 0)])
def test_crash_during_the_commit_of_an_add_keeps_all_or_none(point: str, after: int, mode: str, seed: int) -> None:
    """Cut where per-message commits would already have made earlier messages of the batch durable: after the
    third log write of the batch, or at the first log roll it causes."""
    fs = FaultFileSystem(seed=seed)
    home = fault_home(fs)  # 64 KiB logs: the batch below spans several of them
    sg = home.storage_group()
    sg.mount()
    mail = MailStore(sg.store(STORE))
    mail.create_mailbox("alice")
    acknowledged = [message(n, 500) for n in range(3)]
    mail.add_messages("alice", "INBOX", [(r, {}) for r in acknowledged])
    batch = [message(n, 6000) for n in range(3, 33)]
    fs.arm_crash(point, after=after)
    with pytest.raises(SimulatedCrash):
        mail.add_messages("alice", "INBOX", [(r, {}) for r in batch])
    recovered = reopen(fs.crash(mode, seed))
    group = recovered.storage_group()
    group.mount()
    raws = [r.raw for r in MailStore(group.store(STORE)).messages("alice")]
    assert raws in (acknowledged, acknowledged + batch), f"{len(raws)} messages after recovery"
    group.dismount()


def test_direct_mail_dismounts_only_what_it_mounted(home: ServerHome) -> None:
    sg = home.storage_group()
    backend = DirectMail(home)
    assert sg.mounted
    backend.create_mailbox("alice")
    assert backend.add("alice", "INBOX", [b"one", b"two"], [{}, {"flags": "S"}]) == [1, 2]
    with pytest.raises(InvalidParameterError, match="2 messages came with 1 property records"):
        backend.add("alice", "INBOX", [b"one", b"two"], [{}])
    backend.close()
    assert not sg.mounted
    with pytest.raises(NotMountedError):
        list(backend.messages("alice"))
    sg.mount()
    with DirectMail(home) as again:
        assert [(r.raw, r.props.get("flags")) for r in again.messages("alice")] == [(b"one", None), (b"two", "S")]
    assert sg.mounted  # it was mounted before: left mounted


def test_direct_mail_with_an_unknown_store_leaves_nothing_mounted(home: ServerHome) -> None:
    with pytest.raises(NotFoundError, match="Nowhere"):
        DirectMail(home, store="Nowhere")
    assert not home.storage_group().mounted


def test_stored_messages_are_the_messages_as_the_store_holds_them(mail: MailStore, store: Store) -> None:
    mail.create_mailbox("alice")
    raws = [message(0), message(1, size=40_000), b"", message(3, size=200_000)]  # inline and long values
    mail.add_messages("alice", "INBOX", [(raw, {"n": i}) for i, raw in enumerate(raws)])
    mail.add_messages("alice", "Sent", [(message(4, size=30_000), {})])
    store.sg.checkpoint()  # why: long values then come from their pages, not from memory
    expected = [(r.folder, r.uid, r.props, r.raw) for r in mail.messages("alice")]
    stored = list(mail.stored_messages("alice"))
    assert [(s.folder, s.uid, json.loads(s.props), b"".join(s.pieces)) for s in stored] == expected
    long = next(s.pieces for s in stored if len(b"".join(s.pieces)) > 100_000)
    assert len(long) == -(-len(b"".join(long)) // (store.page_size - 24))  # one piece per page, uncopied
    assert any(isinstance(p, memoryview) for s in stored for p in s.pieces)
    assert [s.pieces for s in mail.stored_messages("alice", "Sent", raw=False)] == [[]]
    with pytest.raises(NotFoundError, match="no folder 'Nowhere'"):
        mail.stored_messages("alice", "Nowhere")  # at the call, as messages() does


def test_stored_messages_read_into_memory_the_reader_gives_where_it_gives_some(mail: MailStore, store: Store) -> None:
    mail.create_mailbox("alice")
    raws = [message(0), message(1, size=40_000), message(2, size=200_000), message(3, size=90_000)]
    mail.add_messages("alice", "INBOX", [(raw, {}) for raw in raws])
    in_memory = message(4, size=50_000)
    memory = bytearray(1 << 20)
    given: list[int] = []
    starts: list[int] = []

    def space(size: int) -> memoryview | None:
        if size > 100_000:  # refused: read into the store's own buffer, as without ``space``
            return None
        start = 8 + sum(given)
        given.append(size)
        starts.append(start)
        return memoryview(memory)[start : start + size]

    store.sg.checkpoint()  # why: long values then come from their pages, not from memory
    mail.add_messages("alice", "INBOX", [(in_memory, {})])  # not checkpointed: given as it is held in memory
    stored = list(mail.stored_messages("alice", space=space))

    placed = iter(starts)

    def body(s: StoredMessage) -> bytes:
        if s.runs is None:
            return b"".join(s.pieces)
        start = next(placed)
        return b"".join(memory[start + at : start + at + length] for at, length in s.runs)

    assert [body(s) for s in stored] == [*raws, in_memory]
    assert [s.runs is not None for s in stored] == [False, True, False, True, False]  # inline, refused, in memory
    assert given == [-(-len(raw) // (store.page_size - 24)) * store.page_size for raw in (raws[1], raws[3])]
    assert all(s.pieces == [] for s in stored if s.runs is not None)


def test_a_stored_property_record_that_is_not_json_is_reported_as_corruption(mail: MailStore, store: Store) -> None:
    mail.create_mailbox("alice")
    mail.add_messages("alice", "INBOX", [(message(0), {})])
    key = next(iter(mail.stored_messages("alice")))
    with store.transaction() as tx:  # what only a bug or a damaged page could leave
        tx.put(schema.TABLE_PROPS, schema.message_key(1, 1, key.uid), b"not json")
    with pytest.raises(DatabaseCorruptedError, match="is not JSON"):
        list(mail.stored_messages("alice"))
    with pytest.raises(DatabaseCorruptedError, match="is not a JSON object"):
        list(mail.messages("alice"))
