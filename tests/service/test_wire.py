"""The frames a read over the mail socket sends for a stored message (service/wire.py ``read_frames``)."""

from __future__ import annotations

import json
import struct

from hypothesis import given
from hypothesis import strategies as st

from shadowstore.mail.schema import StoredMessage, encode_record
from shadowstore.service.wire import read_frames

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _decode(pieces: list[bytes | memoryview]) -> tuple[dict[str, object], bytes]:
    data = b"".join(pieces)
    (size,) = struct.unpack_from(">I", data, 0)
    props = json.loads(data[4 : 4 + size])
    (length,) = struct.unpack_from(">I", data, 4 + size)
    body = data[8 + size :]
    assert len(body) == length
    return props, body


@given(
    props=st.dictionaries(st.sampled_from(["subject", "folder", "uid", "n", "caf\u00e9", 'x"y']), JSON, max_size=5),
    folder=st.text(min_size=1, max_size=12),
    uid=st.integers(1, 2**40),
    pieces=st.lists(st.binary(max_size=40), max_size=4),
)
def test_the_properties_sent_are_the_stored_ones_with_the_messages_own_folder_and_uid(
    props: dict[str, object], folder: str, uid: int, pieces: list[bytes]
) -> None:
    message = StoredMessage(folder, uid, encode_record(props, "test"), [memoryview(p) for p in pieces])
    sent, body = _decode(read_frames(message))
    assert sent == {**props, "folder": folder, "uid": uid}
    assert body == b"".join(pieces)


def test_a_record_naming_folder_or_uid_itself_is_sent_with_each_name_once() -> None:
    record = encode_record({"folder": "claimed", "uid": 7, "n": 1}, "test")
    frames = read_frames(StoredMessage("INBOX", 3, record, [b"raw"]))
    text = frames[0][4:].decode()
    assert text.count('"folder"') == 1
    assert text.count('"uid"') == 1
    assert json.loads(text) == {"folder": "INBOX", "uid": 3, "n": 1}


def test_an_empty_record_and_an_empty_message_make_valid_frames() -> None:
    assert _decode(read_frames(StoredMessage("INBOX", 1, b"{}", []))) == ({"folder": "INBOX", "uid": 1}, b"")
