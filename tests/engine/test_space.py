"""Space management: free extents, the used-page bitmap and the per-page flags a backup scan reads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowstore.engine.btree import Blob, Leaf
from shadowstore.engine.retired import pages_of, resolve_retired
from shadowstore.engine.space import FreeExtents, SpaceMap, page_flags
from shadowstore.format.dbheader import BlobRef
from tests.conftest import examples


def test_free_runs_merge_with_their_neighbours_and_are_taken_lowest_first() -> None:
    free = FreeExtents()
    free.add_run(10, 5)
    free.add_run(20, 5)
    free.add_run(15, 5)  # joins both
    assert free.extents() == [(10, 15)]
    free.add_pages([40, 41, 42, 50])
    assert free.extents() == [(10, 15), (40, 3), (50, 1)]
    assert free.take(3) == 10
    assert free.take(20) is None
    assert len(free) == 12 + 3 + 1


def test_a_page_freed_twice_is_refused() -> None:
    free = FreeExtents()
    free.add_run(10, 5)
    with pytest.raises(ValueError, match="page 12 is already free"):
        free.add_run(12, 1)


@settings(max_examples=examples(200))
@given(st.integers(min_value=0, max_value=300), st.binary(max_size=50))
def test_page_flags_say_what_the_bitmap_says_page_by_page(page_count: int, bitmap: bytes) -> None:
    flags = page_flags(page_count, bitmap)
    assert len(flags) == page_count
    space = SpaceMap.from_bitmap(max(page_count, 2), bitmap)
    for page in range(page_count):
        expected = page < 2 or space.is_used(page)  # the header pages are always used
        assert flags[page] == expected, page


def test_page_flags_of_an_empty_space_map_are_the_header_pages() -> None:
    assert page_flags(5, b"") == bytearray(b"\x01\x01\x00\x00\x00")


def test_bits_past_the_page_count_are_ignored() -> None:
    assert page_flags(3, b"\xff\xff") == bytearray(b"\x01\x01\x01")


def test_retired_references_become_the_pages_they_occupied() -> None:
    written = Leaf([], [], 0, 7, None)
    unwritten = Leaf([], [], 0, None, None)
    blob = Blob(b"x" * 100)
    refs: list[object] = [3, BlobRef(100, 20, 2), written, unwritten, blob]
    assert resolve_retired(refs, keep_unwritten=False) == [3, 20, 21, 7]
    # a running checkpoint may still give the unwritten ones pages: they are kept, to be resolved later
    assert resolve_retired(refs, keep_unwritten=True) == [3, 20, 21, 7, unwritten, blob]
    assert [pages_of(ref) for ref in refs] == [[3], [20, 21], [7], [], []]
