"""The decoded B+tree nodes of a mounted store, and reading a node from its page.

Nodes are kept in two generations: a node read or written goes into the young one; when that holds
``CACHE_NODES`` nodes it becomes the old one and the oldest is dropped whole. A node found in the old
generation moves back to the young one, so the nodes in use stay while the others age out, at the cost of
two dictionary lookups and no bookkeeping per access. A page that is released is forgotten in both.
"""

from __future__ import annotations

from collections.abc import Iterable

from shadowstore.engine.btree import Branch, Leaf, Node
from shadowstore.engine.dbfile import DatabaseFile
from shadowstore.errors import DatabaseCorruptedError
from shadowstore.format.page import TYPE_BRANCH, TYPE_LEAF, PageError, unpack_branch, unpack_leaf

CACHE_NODES = 8192  # decoded nodes per cache generation (two generations are kept)


class NodeCache:
    """``young`` is the young generation, a plain dictionary a store's ``load`` reads itself: a hit, the path
    of every step of every tree walk, is then one ``get`` at the dictionary's own speed. ``promote`` looks in
    the old generation after a miss there."""

    __slots__ = ("_old", "young")

    def __init__(self) -> None:
        self.young: dict[int, Node] = {}
        self._old: dict[int, Node] = {}

    def promote(self, pgno: int) -> Node | None:
        """The node of ``pgno`` from the old generation, moved back to the young one, or None."""
        node = self._old.get(pgno)
        if node is not None:
            self.put(node)
        return node

    def put(self, node: Node) -> None:
        assert node.pgno is not None
        young = self.young
        young[node.pgno] = node
        if len(young) > CACHE_NODES:
            self._old, self.young = young, {}

    def forget(self, pages: Iterable[int]) -> None:
        for page in pages:
            self.young.pop(page, None)
            self._old.pop(page, None)


def read_node(file: DatabaseFile, pgno: int) -> Node:
    """The node on page ``pgno`` of ``file``, verified. Raises ReadVerifyFailureError (a bad checksum) or
    DatabaseCorruptedError (a page that is not a tree page, or whose entries do not decode)."""
    header, page = file.read_page(pgno)
    where = f"{file.path}: page {pgno} at offset {pgno * file.page_size}"
    if header.type not in (TYPE_LEAF, TYPE_BRANCH):
        raise DatabaseCorruptedError(f"{where} is a blob page, but a tree points to it")
    try:
        if header.type == TYPE_LEAF:
            keys, values = unpack_leaf(page, header)
            return Leaf(keys, values, header.length, pgno, None)  # type: ignore[arg-type]
        bkeys, kids = unpack_branch(page, header)
        return Branch(bkeys, kids, header.length, pgno, None)  # type: ignore[arg-type]
    except PageError as exc:
        raise DatabaseCorruptedError(f"{where} is damaged: {exc}") from None
