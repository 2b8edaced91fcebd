"""The store's cache of decoded nodes (engine/nodecache.py): two generations, and pages forgotten on release."""

from __future__ import annotations

from shadowstore.engine import nodecache
from shadowstore.engine.btree import Leaf
from shadowstore.engine.nodecache import NodeCache


def _leaf(pgno: int) -> Leaf:
    return Leaf([b"k%d" % pgno], [b"v"], 10, pgno, None)


def _get(cache: NodeCache, pgno: int) -> object:
    """What a store's load finds: the young generation, else the old one."""
    return cache.young.get(pgno) or cache.promote(pgno)


def test_nodes_in_use_stay_while_the_others_age_out(monkeypatch: object) -> None:
    monkeypatch.setattr(nodecache, "CACHE_NODES", 4)  # type: ignore[attr-defined]
    cache = NodeCache()
    nodes = {pgno: _leaf(pgno) for pgno in range(20)}
    for pgno in range(5):  # the fifth put turns the young generation old
        cache.put(nodes[pgno])
    assert _get(cache, 0) is nodes[0]  # found in the old generation: back to the young one
    for pgno in range(5, 10):  # another turn: the old generation (1-4) is dropped, 0 moved with the young
        cache.put(nodes[pgno])
    assert _get(cache, 0) is nodes[0]
    assert [_get(cache, pgno) for pgno in range(1, 5)] == [None] * 4
    assert _get(cache, 9) is nodes[9]


def test_a_released_page_is_forgotten_in_both_generations(monkeypatch: object) -> None:
    monkeypatch.setattr(nodecache, "CACHE_NODES", 2)  # type: ignore[attr-defined]
    cache = NodeCache()
    for pgno in range(4):
        cache.put(_leaf(pgno))
    cache.forget([0, 3, 99])
    assert _get(cache, 0) is None
    assert _get(cache, 3) is None
    assert _get(cache, 2) is not None
