"""Database pages (format/page.py): the page header and checksum, leaves, branches and blob pages."""

from __future__ import annotations

import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowstore.format.dbheader import BLOB_REF, BlobRef
from shadowstore.format.page import (
    BLOB_FLAG,
    PAGE_HEADER,
    TYPE_BLOB,
    TYPE_BRANCH,
    TYPE_LEAF,
    PageError,
    PageHeader,
    blob_pages_needed,
    first_bad_page,
    leaf_entry_size,
    pack_blob_page,
    pack_blob_run,
    pack_branch,
    pack_leaf,
    payload_capacity,
    payload_lengths,
    seal_page,
    unpack_branch,
    unpack_leaf,
    verify_page,
)
from tests.conftest import examples
from tests.format.test_common import checksum_message, flip_byte, reseal_checksum

PAGE = 8192
PGNO = 17
LGPOS = (3 << 32) | (9 << 16) | 4
# Page header field offsets (format/page.py).
OFF_PGNO, OFF_TYPE, OFF_ITEMS, OFF_LENGTH = 4, 16, 18, 20

KEYS = [b"", b"alpha", b"beta", b"gamma" * 50]
VALUES: list[bytes | BlobRef] = [b"", b"one", BlobRef(1 << 20, 300, 129), b"\xff" * 1000]


def leaf(page_size: int = PAGE) -> bytes:
    return pack_leaf(page_size, PGNO, LGPOS, KEYS, VALUES)


def patch(page: bytes, fmt: str, offset: int, value: int) -> bytearray:
    """``page`` with one field rewritten and its checksum sealed again."""
    buf = bytearray(page)
    struct.pack_into(fmt, buf, offset, value)
    return reseal_checksum(buf)


def read_node(page: bytes, pgno: int) -> object:
    """Verify a page and decode it as the store does (leaves and branches)."""
    header = verify_page(page, pgno)
    if header.type == TYPE_LEAF:
        return unpack_leaf(page, header)
    if header.type == TYPE_BRANCH:
        return unpack_branch(page, header)
    return header


def page_error(page: bytes | bytearray, pgno: int = PGNO) -> PageError:
    """The PageError reading ``page`` as page ``pgno`` raises."""
    with pytest.raises(PageError) as info:
        read_node(bytes(page), pgno)
    return info.value


# --- round trips ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [4096, 8192, 32768])
def test_leaf_round_trips_inline_and_out_of_line_values(page_size: int) -> None:
    page = leaf(page_size)
    assert len(page) == page_size
    header = verify_page(page, PGNO)
    expected_length = sum(leaf_entry_size(k, v) for k, v in zip(KEYS, VALUES, strict=True))
    assert header == PageHeader(PGNO, LGPOS, TYPE_LEAF, len(KEYS), expected_length)
    assert unpack_leaf(page, header) == (KEYS, VALUES)
    assert page[PAGE_HEADER.size + expected_length :] == bytes(page_size - PAGE_HEADER.size - expected_length)


def test_leaf_value_word_marks_blob_references() -> None:
    page = leaf()
    words = struct.unpack_from("<4I", page, PAGE_HEADER.size + 2 * 4)
    assert words == (0, 3, BLOB_FLAG | BLOB_REF.size, 1000)
    assert leaf_entry_size(b"key", BlobRef(1, 2, 3)) == 6 + 3 + 16


def test_empty_leaf_round_trips() -> None:
    page = pack_leaf(PAGE, PGNO, LGPOS, [], [])
    header = verify_page(page, PGNO)
    assert (header.items, header.length) == (0, 0)
    assert unpack_leaf(page, header) == ([], [])


def test_branch_round_trips() -> None:
    keys, children = [b"m", b"t" * 300], [5, 9, 0xFFFF_FFFF]
    page = pack_branch(PAGE, PGNO, LGPOS, keys, children)
    header = verify_page(page, PGNO)
    assert (header.type, header.items, header.length) == (TYPE_BRANCH, 3, 3 * 4 + 2 * 2 + 301)
    assert unpack_branch(page, header) == (keys, children)


def test_branch_with_one_child_has_no_separator() -> None:
    page = pack_branch(PAGE, PGNO, LGPOS, [], [42])
    assert unpack_branch(page, verify_page(page, PGNO)) == ([], [42])


def test_blob_page_holds_its_chunk() -> None:
    chunk = bytes(range(256)) * 20
    page = pack_blob_page(PAGE, PGNO, LGPOS, chunk)
    header = verify_page(page, PGNO)
    assert (header.type, header.items, header.length) == (TYPE_BLOB, 0, len(chunk))
    assert page[PAGE_HEADER.size : PAGE_HEADER.size + header.length] == chunk


def _blob_page_alone(pgno: int, chunk: bytes) -> bytes:
    """A blob page made the plain way: a buffer of its own, the chunk, the sealed header."""
    buf = bytearray(PAGE)
    buf[PAGE_HEADER.size : PAGE_HEADER.size + len(chunk)] = chunk
    return seal_page(buf, pgno, LGPOS, TYPE_BLOB, 0, len(chunk))


@settings(max_examples=examples(60), deadline=None)
@given(length=st.integers(0, 5 * (PAGE - 24) + 7), extra=st.integers(0, 2), seed=st.integers(0, 255))
def test_a_run_of_blob_pages_is_the_pages_made_one_at_a_time(length: int, extra: int, seed: int) -> None:
    data = bytes((seed + i) % 251 for i in range(length))
    cap = payload_capacity(PAGE)
    count = blob_pages_needed(length, PAGE) + extra  # a run may be longer than its data (empty payloads)
    run = pack_blob_run(PAGE, PGNO, LGPOS, data, count)
    assert len(run) == count * PAGE
    for i in range(count):
        page = run[i * PAGE : (i + 1) * PAGE]
        assert page == _blob_page_alone(PGNO + i, data[i * cap : (i + 1) * cap])
        assert verify_page(page, PGNO + i).length == len(data[i * cap : (i + 1) * cap])
    assert pack_blob_page(PAGE, PGNO, LGPOS, data[:cap]) == _blob_page_alone(PGNO, data[:cap])


def test_a_blob_page_refuses_more_than_it_holds() -> None:
    with pytest.raises(ValueError, match="holds at most 8168 bytes"):
        pack_blob_page(PAGE, PGNO, LGPOS, bytes(PAGE))


@pytest.mark.parametrize(
    ("length", "pages"), [(0, 1), (1, 1), (PAGE - 24, 1), (PAGE - 24 + 1, 2), (10 * (PAGE - 24), 10)]
)
def test_blob_pages_needed(length: int, pages: int) -> None:
    assert payload_capacity(PAGE) == PAGE - PAGE_HEADER.size
    assert blob_pages_needed(length, PAGE) == pages


def test_nodes_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^leaf of 8169 bytes does not fit in a 8192-byte page$"):
        pack_leaf(PAGE, PGNO, LGPOS, [b"k"], [b"v" * (payload_capacity(PAGE) - 6)])
    pack_leaf(PAGE, PGNO, LGPOS, [b"k"], [b"v" * (payload_capacity(PAGE) - 7)])  # exactly full
    with pytest.raises(ValueError, match=r"^branch with 2 children needs 1 separator keys, got 0$"):
        pack_branch(PAGE, PGNO, LGPOS, [], [1, 2])
    with pytest.raises(ValueError, match=r"does not fit in a 4096-byte page$"):
        pack_branch(4096, PGNO, LGPOS, [b"k" * 1000] * 5, [1, 2, 3, 4, 5, 6])


# --- verification -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, 3, 4, 8, 16, 18, 20, 24, 500, PAGE - 1])
def test_any_flipped_byte_fails_the_checksum_with_both_values(offset: int) -> None:
    damaged = flip_byte(leaf(), offset)
    stored, computed = checksum_message(damaged)
    error = page_error(damaged)
    assert str(error) == f"checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}"
    assert (error.stored, error.computed) == (stored, computed)


def test_page_read_from_the_wrong_place_names_the_page_it_claims_to_be() -> None:
    error = page_error(leaf(), PGNO + 1)
    assert str(error) == f"page claims to be page {PGNO}"
    assert (error.stored, error.computed) == (None, None)


def test_payload_length_past_the_page_behind_a_valid_checksum() -> None:
    error = page_error(patch(leaf(), "<I", OFF_LENGTH, PAGE - PAGE_HEADER.size + 1))
    assert str(error) == "payload length 8169 does not fit in the page"


def test_unknown_page_type_behind_a_valid_checksum() -> None:
    error = page_error(patch(leaf(), "<B", OFF_TYPE, 9))
    assert str(error) == "unknown page type 9"


def test_leaf_claiming_more_entries_than_its_payload_holds() -> None:
    page = pack_leaf(PAGE, PGNO, LGPOS, [b"a"], [b"b"])  # payload: 6 + 1 + 1 bytes
    error = page_error(patch(page, "<H", OFF_ITEMS, 2))
    assert str(error) == "leaf with 2 entries has only 8 payload bytes"


def test_leaf_key_length_that_disagrees_with_the_payload() -> None:
    damaged = patch(leaf(), "<H", PAGE_HEADER.size + 2, len(b"alpha") + 1)  # key 1's length
    length = verify_page(leaf(), PGNO).length
    assert str(page_error(damaged)) == f"leaf entries fill {length + 1} bytes, payload is {length}"


def test_leaf_inline_value_marked_as_blob_reference_has_the_wrong_size() -> None:
    value_word_1 = PAGE_HEADER.size + 2 * 4 + 4 * 1
    damaged = patch(leaf(), "<I", value_word_1, BLOB_FLAG | 3)  # b"one" now claims to be a reference
    assert str(page_error(damaged)) == "blob reference of entry 1 is 3 bytes"


def test_branch_without_children() -> None:
    page = pack_branch(PAGE, PGNO, LGPOS, [b"m"], [5, 9])
    assert str(page_error(patch(page, "<H", OFF_ITEMS, 0))) == "branch with 0 children has only 11 payload bytes"


def test_branch_key_length_that_disagrees_with_the_payload() -> None:
    page = pack_branch(PAGE, PGNO, LGPOS, [b"m", b"t"], [5, 9, 12])
    damaged = patch(page, "<H", PAGE_HEADER.size + 3 * 4, 0)  # first separator now empty
    assert str(page_error(damaged)) == "branch keys fill 17 bytes, payload is 18"


# --- checking a block of pages at once -----------------------------------------------------------------------

DAMAGES = {
    "flipped byte": lambda page, pgno: flip_byte(page, 4000),
    "flipped checksum": lambda page, pgno: flip_byte(page, 1),
    "wrong number": lambda page, pgno: patch(page, "<I", OFF_PGNO, pgno + 1),
    "long payload": lambda page, pgno: patch(page, "<I", OFF_LENGTH, PAGE - PAGE_HEADER.size + 1),
    "unknown type": lambda page, pgno: patch(page, "<B", OFF_TYPE, 9),
    "zeros": lambda page, pgno: bytes(PAGE),
}


def block_of(first: int, count: int) -> list[bytes]:
    return [pack_leaf(PAGE, first + i, LGPOS, [b"k%d" % i], [b"v" * i]) for i in range(count)]


def slow_first_bad(pages: list[bytes], first: int, used: bytearray) -> int | None:
    """The reference: verify_page on each used page in turn."""
    for i, page in enumerate(pages):
        if used[i]:
            try:
                verify_page(page, first + i)
            except PageError:
                return first + i
    return None


def test_a_block_of_good_pages_has_no_bad_page() -> None:
    pages = block_of(5, 16)
    used = bytearray(b"\x01" * 16)
    assert first_bad_page(b"".join(pages), 5, PAGE, used) is None
    assert first_bad_page(memoryview(b"".join(pages)), 5, PAGE, used) is None


@pytest.mark.parametrize("damage", DAMAGES)
def test_the_first_damaged_used_page_is_found_and_free_pages_are_not_checked(damage: str) -> None:
    first = 40
    pages = block_of(first, 12)
    used = bytearray(b"\x01" * 12)
    pages[3] = DAMAGES[damage](pages[3], first + 3)
    pages[8] = DAMAGES[damage](pages[8], first + 8)
    assert first_bad_page(b"".join(pages), first, PAGE, used) == first + 3
    used[3] = 0  # a free page may hold anything
    assert first_bad_page(b"".join(pages), first, PAGE, used) == first + 8
    used[8] = 0
    assert first_bad_page(b"".join(pages), first, PAGE, used) is None


@pytest.mark.parametrize("byteorder", ["little", "big"])  # big: the page-by-page path a big-endian machine takes
def test_the_first_damaged_page_is_found_whatever_the_byte_order(
    byteorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "byteorder", byteorder)
    pages = block_of(30, 6)
    pages[4] = bytes(DAMAGES["wrong number"](pages[4], 34))
    used = bytearray(b"\x01" * 6)
    assert first_bad_page(b"".join(pages), 30, PAGE, used) == 34
    used[4] = 0
    assert first_bad_page(b"".join(pages), 30, PAGE, used) is None


@settings(max_examples=examples(200))
@given(
    st.lists(st.tuples(st.sampled_from([None, *DAMAGES]), st.booleans()), min_size=1, max_size=12),
    st.integers(min_value=2, max_value=10_000),
)
def test_the_block_check_agrees_with_verify_page(layout: list[tuple[str | None, bool]], first: int) -> None:
    pages = block_of(first, len(layout))
    used = bytearray(len(layout))
    for i, (damage, in_use) in enumerate(layout):
        if damage is not None:
            pages[i] = bytes(DAMAGES[damage](pages[i], first + i))
        used[i] = in_use
    assert first_bad_page(b"".join(pages), first, PAGE, used) == slow_first_bad(pages, first, used)


@settings(max_examples=examples(200))
@given(
    st.lists(st.sampled_from([None, *DAMAGES]), min_size=1, max_size=12),
    st.integers(min_value=2, max_value=10_000),
)
def test_the_payload_lengths_are_given_only_when_every_page_verifies(damages: list[str | None], first: int) -> None:
    pages = block_of(first, len(damages))
    for i, damage in enumerate(damages):
        if damage is not None:
            pages[i] = bytes(DAMAGES[damage](pages[i], first + i))
    every = bytearray(b"\x01" * len(pages))
    lengths = payload_lengths(b"".join(pages), first, PAGE)
    if slow_first_bad(pages, first, every) is None:
        assert lengths == [verify_page(page, first + i).length for i, page in enumerate(pages)]
    else:
        assert lengths is None


def test_on_a_big_endian_machine_the_payload_lengths_are_left_to_verify_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "byteorder", "big")
    assert payload_lengths(b"".join(block_of(7, 3)), 7, PAGE) is None
