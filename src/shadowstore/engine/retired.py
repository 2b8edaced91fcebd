"""What a write transaction's replaced nodes and values leave behind: the pages to release once no reader, pin
or durable header can reach them (the store keeps them per transaction; see Store.release_horizon)."""

from __future__ import annotations

from shadowstore.engine.btree import Blob
from shadowstore.format.dbheader import BlobRef


def resolve_retired(refs: list[object], keep_unwritten: bool) -> list[object]:
    """What a commit must remember of the nodes and values it replaced: page numbers where they have pages.

    A node or value without a page is forgotten, unless a running checkpoint (which captured a state that
    still holds it) may give it one; then it is kept and resolved when its pages are released.
    """
    out: list[object] = []
    for ref in refs:
        kind = type(ref)
        if kind is int:
            out.append(ref)
        elif kind is BlobRef:
            out.extend(range(ref.first_page, ref.first_page + ref.page_count))  # type: ignore[attr-defined]
        elif kind is Blob:
            if ref.ref is not None:  # type: ignore[attr-defined]
                out.extend(range(ref.ref.first_page, ref.ref.first_page + ref.ref.page_count))  # type: ignore[attr-defined]
            elif keep_unwritten:
                out.append(ref)
        elif ref.pgno is not None:  # type: ignore[attr-defined]
            out.append(ref.pgno)  # type: ignore[attr-defined]
        elif keep_unwritten:
            out.append(ref)
    return out


def pages_of(ref: object) -> list[int]:
    """Pages a retired reference occupied (nothing for nodes and values that were never written)."""
    if type(ref) is int:
        return [ref]
    if type(ref) is BlobRef:
        return list(range(ref.first_page, ref.first_page + ref.page_count))
    if type(ref) is Blob:
        return [] if ref.ref is None else list(range(ref.ref.first_page, ref.ref.first_page + ref.ref.page_count))
    pgno = getattr(ref, "pgno", None)
    return [] if pgno is None else [pgno]
