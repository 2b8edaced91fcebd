"""Writing a committed state of a store to its file: the page-flush half of a checkpoint.

``flush_state`` makes the file describe state ``s`` (every transaction up to ``s.end``):

1. flush the log up to ``s.end`` (write-ahead: no page reaches the file before the log that describes it);
2. give every node and out-of-line value reachable from ``s`` that has no page yet a page that no durable
   header, reader or pin uses (SpaceMap.allocate), plus new pages for the catalog and the space map;
3. write those pages and fsync (crash points ``flush.after_page_write``, ``flush.after_page_sync``);
4. write the header naming the new catalog and space map, primary then shadow, each fsynced;
5. only then: the space map's used set becomes the new one, pages the old header used that the new one does
   not are handed to the store for release, and written nodes are swapped for their page numbers in their
   parents so that they can leave memory.

A crash before step 4 completes leaves the old header, whose pages were not touched. A failure undoes the
page assignments of steps 2-3 and leaves everything as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from shadowstore.engine.btree import Blob, Branch, Leaf, Node
from shadowstore.format.catalog import CatalogEntry, pack_catalog
from shadowstore.format.common import LgPos
from shadowstore.format.dbheader import BlobRef, DbHeader
from shadowstore.format.page import blob_pages_needed, pack_branch, pack_leaf, payload_capacity

if TYPE_CHECKING:
    from shadowstore.engine.store import Store
    from shadowstore.engine.transaction import DbState, TableMeta

HeaderMaker = Callable[[BlobRef, BlobRef, int], DbHeader]


class _Plan:
    """What one flush writes and what it swaps afterwards."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.blobs: list[tuple[Blob, int]] = []  # (blob, lgpos of the leaf that holds it)
        self.kid_swaps: list[tuple[list, int, Node]] = []
        self.blob_swaps: list[tuple[list, int, Blob]] = []
        self.root_swaps: list[tuple[TableMeta, Node]] = []


def flush_state(store: Store, state: DbState, covered: LgPos, make_header: HeaderMaker) -> tuple[DbHeader, list[int]]:
    """Write ``state`` and a header from ``make_header``; returns (header, pages the old header used that the
    new one does not). ``covered`` (>= state.end) is the log position the header will name as replay start:
    the log is flushed up to it first. Raises DiskFullError / DiskIOError; on any failure nothing changes."""
    assert store.file is not None and store.space is not None and store.header is not None
    file, space = store.file, store.space
    if store.sg.log_open:  # why: a hard recovery writes stores with no log writer; its logs are on disk
        store.sg.log.flush(covered)
    dropped = store.retired_pages_upto(state.dbtime)
    old = store.header
    plan = _Plan()
    for meta in state.tables.values():
        root = meta.root
        if type(root) is not int:
            if root.pgno is None:  # type: ignore[union-attr]
                _collect(root, plan)  # type: ignore[arg-type]
            plan.root_swaps.append((meta, root))  # type: ignore[arg-type]
    if not dropped and not plan.nodes and not plan.blobs and not old.space_map.is_empty:
        entries = [CatalogEntry(m.id, _page_of(m.root), m.name) for m in state.tables.values()]
        if pack_catalog(state.next_table_id, entries) == store.catalog_bytes:
            # Nothing changed since the durable header: only the header moves (its replay start, Log Required).
            header = make_header(old.catalog, old.space_map, old.page_count)
            file.write_header(header)
            _swap(plan)
            return header, []
    for ref in (old.catalog, old.space_map):
        dropped.extend(range(ref.first_page, ref.first_page + ref.page_count))
    try:
        pages = _assign_and_serialize(store, plan)
        entries = [CatalogEntry(m.id, _page_of(m.root), m.name) for m in state.tables.values()]
        catalog = pack_catalog(state.next_table_id, entries)
        catalog_ref = _allocate_blob(store, len(catalog))
        pages += file.blob_pages(catalog, catalog_ref, 0)
        space_ref = _allocate_space_map(store)
        bitmap = space.bitmap_after(dropped)
        pages += file.blob_pages(bitmap, space_ref._replace(length=len(bitmap)), 0)
        space_ref = space_ref._replace(length=len(bitmap))
        file.ensure_pages(space.page_count)
        file.write_pages(pages)
        store.sg.fs.crash_point("flush.after_page_write")
        file.sync()
        store.sg.fs.crash_point("flush.after_page_sync")
        header = make_header(catalog_ref, space_ref, space.page_count)
        file.write_header(header)
    except BaseException:
        for node in plan.nodes:
            node.pgno = None
        for blob, _lgpos in plan.blobs:
            blob.ref = None
        space.abort_checkpoint()
        raise
    space.commit_checkpoint(bitmap)
    store.catalog_bytes = catalog
    _swap(plan)
    for node in plan.nodes:
        store.cache.put(node)
    return header, dropped


def _collect(node: Node, plan: _Plan) -> None:
    """Post-order: unwritten descendants first, so a parent can name its children's pages."""
    if type(node) is Branch:
        kids = node.kids
        for i, kid in enumerate(kids):
            if type(kid) is int:
                continue
            if kid.pgno is None:  # type: ignore[union-attr]
                _collect(kid, plan)  # type: ignore[arg-type]
            plan.kid_swaps.append((kids, i, kid))  # type: ignore[arg-type]
    else:
        lgpos = node.owner.lgpos if node.owner is not None else 0  # type: ignore[attr-defined]
        vals = node.vals  # type: ignore[union-attr]
        for i, value in enumerate(vals):
            if type(value) is Blob:
                if value.ref is None:
                    plan.blobs.append((value, lgpos))
                plan.blob_swaps.append((vals, i, value))
    plan.nodes.append(node)


def _assign_and_serialize(store: Store, plan: _Plan) -> list[tuple[int, bytes | bytearray]]:
    assert store.file is not None and store.space is not None
    file, space, page_size = store.file, store.space, store.page_size
    pages: list[tuple[int, bytes | bytearray]] = []
    for blob, lgpos in plan.blobs:
        data = blob.data
        assert data is not None
        ref = _allocate_blob(store, len(data))
        blob.ref = ref
        pages += file.blob_pages(data, ref, lgpos)
    for node in plan.nodes:
        node.pgno = space.allocate(1)
    for node in plan.nodes:
        lgpos = node.owner.lgpos if node.owner is not None else 0  # type: ignore[attr-defined]
        if type(node) is Leaf:
            stored = [v.ref if type(v) is Blob else v for v in node.vals]
            image = pack_leaf(page_size, node.pgno, lgpos, node.keys, stored)  # type: ignore[arg-type]
        else:
            image = pack_branch(page_size, node.pgno, lgpos, node.keys, [_page_of(k) for k in node.kids])  # type: ignore[arg-type,union-attr]
        pages.append((node.pgno, image))  # type: ignore[arg-type]
    return pages


def _allocate_blob(store: Store, length: int) -> BlobRef:
    assert store.space is not None
    count = blob_pages_needed(length, store.page_size)
    return BlobRef(length, store.space.allocate(count), count)


def _allocate_space_map(store: Store) -> BlobRef:
    """Pages for the bitmap, with room for the pages this very allocation may add to the file."""
    assert store.space is not None
    space = store.space
    cap = payload_capacity(store.page_size)
    count = -(-((space.page_count + 7) // 8) // cap) + 1
    return BlobRef(0, space.allocate(count), count)


def _page_of(ref: Node | int) -> int:
    if type(ref) is int:
        return ref
    assert ref.pgno is not None  # type: ignore[union-attr]
    return ref.pgno  # type: ignore[union-attr]


def _swap(plan: _Plan) -> None:
    """Replace written nodes and values by their page numbers and references (same content)."""
    for kids, i, kid in plan.kid_swaps:
        if kids[i] is kid and kid.pgno is not None:
            kids[i] = kid.pgno
    for vals, i, blob in plan.blob_swaps:
        if vals[i] is blob and blob.ref is not None:
            vals[i] = blob.ref
    for meta, root in plan.root_swaps:
        if meta.root is root and root.pgno is not None:
            meta.root = root.pgno
