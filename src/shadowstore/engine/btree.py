"""Copy-on-write B+tree over byte keys and byte values.

Nodes are immutable once their transaction commits. A write transaction copies each node on the path it
changes once (the copy is *owned* by the transaction and changed in place afterwards) and publishes a new root
when it commits; a reader keeps the root it started with, so it sees a snapshot and never blocks the writer.

A child reference is either a node object (not yet written, or written by a checkpoint that has not yet
replaced the reference) or an ``int`` page number of a durable page, loaded through ``TreeIO.load``. A leaf
value is ``bytes`` (stored inline), a :class:`Blob` (out of line, possibly not yet written) or a ``BlobRef``
(out of line, durable). Every node or page a transaction replaces is appended to its ``retired`` list; the
store frees those pages once no durable header, reader or pin can reach them.

Sizes are tracked in page-payload bytes (see format/page.py) so that a node always fits in one page:
leaf entry = 6 + key + value (16 for a blob reference); branch = 4 per child + 2 + key per separator.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import Protocol

from shadowstore.format.dbheader import BlobRef
from shadowstore.format.page import payload_capacity

BLOB_REF_SIZE = 16


class Blob:
    """An out-of-line value: ``data`` while it is in memory, ``ref`` once a checkpoint wrote it."""

    __slots__ = ("data", "ref")

    def __init__(self, data: bytes | None, ref: BlobRef | None = None) -> None:
        self.data = data
        self.ref = ref


StoredValue = bytes | Blob | BlobRef


class Leaf:
    __slots__ = ("keys", "owner", "pgno", "size", "vals")

    def __init__(self, keys: list[bytes], vals: list[StoredValue], size: int, pgno: int | None, owner: object) -> None:
        self.keys = keys
        self.vals = vals
        self.size = size
        self.pgno = pgno
        self.owner = owner


class Branch:
    __slots__ = ("keys", "kids", "owner", "pgno", "size")

    def __init__(self, keys: list[bytes], kids: list[Ref], size: int, pgno: int | None, owner: object) -> None:
        self.keys = keys
        self.kids = kids
        self.size = size
        self.pgno = pgno
        self.owner = owner


Node = Leaf | Branch
Ref = Node | int


class TreeIO(Protocol):
    def load(self, pgno: int) -> Node: ...

    def read_blob(self, ref: BlobRef) -> bytes: ...


class Limits:
    """Size limits that keep every node splittable (an entry is at most a third of a page)."""

    __slots__ = ("capacity", "inline_max", "max_key", "merge_below")

    def __init__(self, page_size: int) -> None:
        self.capacity = payload_capacity(page_size)
        self.max_key = min(1024, self.capacity // 8)
        self.inline_max = self.capacity // 5
        self.merge_below = self.capacity // 4
        assert 6 + self.max_key + self.inline_max <= self.capacity // 3


def empty_leaf(owner: object) -> Leaf:
    return Leaf([], [], 0, None, owner)


def value_size(value: StoredValue) -> int:
    return len(value) if type(value) is bytes else BLOB_REF_SIZE


def _deref(io: TreeIO, ref: Ref) -> Node:
    return io.load(ref) if type(ref) is int else ref  # type: ignore[return-value]


# --- reading -------------------------------------------------------------------------------------------------


def lookup(io: TreeIO, root: Ref, key: bytes) -> StoredValue | None:
    node = _deref(io, root)
    while type(node) is Branch:
        kid = node.kids[bisect_right(node.keys, key)]
        node = io.load(kid) if type(kid) is int else kid  # type: ignore[assignment]
    keys = node.keys
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        return node.vals[i]  # type: ignore[union-attr]
    return None


def iterate(io: TreeIO, root: Ref, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, StoredValue]]:
    """Entries with ``lo <= key < hi`` in key order (None: unbounded)."""
    node = _deref(io, root)
    stack: list[tuple[Branch, int]] = []
    while type(node) is Branch:
        i = bisect_right(node.keys, lo) if lo is not None else 0
        stack.append((node, i))
        node = _deref(io, node.kids[i])
    i = bisect_left(node.keys, lo) if lo is not None else 0
    while True:
        keys, vals = node.keys, node.vals  # type: ignore[union-attr]
        n = len(keys)
        while i < n:
            key = keys[i]
            if hi is not None and key >= hi:
                return
            yield key, vals[i]
            i += 1
        while stack:
            parent, j = stack.pop()
            if j + 1 < len(parent.kids):
                stack.append((parent, j + 1))
                node = _deref(io, parent.kids[j + 1])
                while type(node) is Branch:
                    stack.append((node, 0))
                    node = _deref(io, node.kids[0])
                i = 0
                break
        else:
            return


def walk_refs(io: TreeIO, root: Ref) -> Iterator[Ref | Blob | BlobRef]:
    """Every node reference and out-of-line value of a tree (used to retire a dropped table)."""
    stack: list[Ref] = [root]
    while stack:
        ref = stack.pop()
        yield ref
        node = _deref(io, ref)
        if type(node) is Branch:
            stack.extend(node.kids)
        else:
            for value in node.vals:  # type: ignore[union-attr]
                if type(value) is not bytes:
                    yield value  # type: ignore[misc]


# --- writing -------------------------------------------------------------------------------------------------


class WriteContext:
    """What a write transaction needs to change trees: its owner token, limits and the retired list."""

    __slots__ = ("io", "limits", "owner", "retired")

    def __init__(self, io: TreeIO, limits: Limits, owner: object) -> None:
        self.io = io
        self.limits = limits
        self.owner = owner
        self.retired: list[object] = []

    def own(self, ref: Ref) -> Node:
        """A node this transaction may change in place: ``ref`` itself if already owned, else a copy."""
        if type(ref) is not int and ref.owner is self.owner:  # type: ignore[union-attr]
            return ref  # type: ignore[return-value]
        node = _deref(self.io, ref)
        self.retired.append(ref)
        if type(node) is Leaf:
            return Leaf(node.keys[:], node.vals[:], node.size, None, self.owner)
        return Branch(node.keys[:], node.kids[:], node.size, None, self.owner)  # type: ignore[union-attr]


def insert(ctx: WriteContext, root: Ref, key: bytes, value: StoredValue) -> Node:
    """Put ``key`` -> ``value``; returns the new root (owned by the transaction)."""
    owner = ctx.owner
    node: Node = root if type(root) is not int and root.owner is owner else ctx.own(root)  # type: ignore[assignment,union-attr]
    new_root = node
    path: list[tuple[Branch, int]] = []
    while type(node) is Branch:
        i = bisect_right(node.keys, key)
        kid = node.kids[i]
        if type(kid) is int or kid.owner is not owner:  # type: ignore[union-attr]
            kid = ctx.own(kid)
            node.kids[i] = kid
        path.append((node, i))
        node = kid  # type: ignore[assignment]
    keys = node.keys
    vals = node.vals  # type: ignore[union-attr]
    i = bisect_left(keys, key)
    vsize = len(value) if type(value) is bytes else BLOB_REF_SIZE
    if i < len(keys) and keys[i] == key:
        old = vals[i]
        if type(old) is bytes:
            node.size += vsize - len(old)
        else:
            node.size += vsize - BLOB_REF_SIZE
            ctx.retired.append(old)
        vals[i] = value
    else:
        keys.insert(i, key)
        vals.insert(i, value)
        node.size += 6 + len(key) + vsize
    if node.size > ctx.limits.capacity:
        new_root = _split_upwards(ctx, node, path, new_root)
    return new_root


def remove(ctx: WriteContext, root: Ref, key: bytes) -> tuple[Ref, bool]:
    """Delete ``key``; returns (new root, whether it was there). Copies nothing when the key is absent."""
    if lookup(ctx.io, root, key) is None:
        return root, False
    node = ctx.own(root)
    new_root: Ref = node
    path: list[tuple[Branch, int]] = []
    while type(node) is Branch:
        i = bisect_right(node.keys, key)
        kid = ctx.own(node.kids[i])
        node.kids[i] = kid
        path.append((node, i))
        node = kid
    i = bisect_left(node.keys, key)
    old = node.vals[i]  # type: ignore[union-attr]
    if type(old) is not bytes:
        ctx.retired.append(old)
    node.size -= 6 + len(key) + value_size(old)
    del node.keys[i], node.vals[i]  # type: ignore[union-attr]
    while path and node.size < ctx.limits.merge_below:
        parent, i = path.pop()
        if not _merge_with_sibling(ctx, parent, i):
            break
        node = parent
    root_node = _deref(ctx.io, new_root)
    while type(root_node) is Branch and len(root_node.kids) == 1:
        new_root = root_node.kids[0]
        root_node = _deref(ctx.io, new_root)
    return new_root, True


def _split_upwards(ctx: WriteContext, node: Node, path: list[tuple[Branch, int]], root: Node) -> Node:
    capacity = ctx.limits.capacity
    while node.size > capacity:
        right, separator = _split_leaf(ctx, node) if type(node) is Leaf else _split_branch(ctx, node)  # type: ignore[arg-type]
        if not path:
            return Branch([separator], [node, right], 8 + 2 + len(separator), None, ctx.owner)
        parent, i = path.pop()
        parent.keys.insert(i, separator)
        parent.kids.insert(i + 1, right)
        parent.size += 6 + len(separator)
        node = parent
    return root


def _split_leaf(ctx: WriteContext, node: Leaf) -> tuple[Leaf, bytes]:
    keys, vals = node.keys, node.vals
    half = node.size // 2
    acc = 0
    cut = len(keys) - 1
    for i in range(len(keys)):
        entry = 6 + len(keys[i]) + value_size(vals[i])
        if acc + entry > half and i > 0:
            cut = i
            break
        acc += entry
    right = Leaf(keys[cut:], vals[cut:], node.size - acc, None, ctx.owner)
    del keys[cut:], vals[cut:]
    node.size = acc
    return right, _shortest_separator(keys[-1], right.keys[0])


def _split_branch(ctx: WriteContext, node: Branch) -> tuple[Branch, bytes]:
    keys, kids = node.keys, node.kids
    half = node.size // 2
    acc = 4
    mid = len(keys) // 2
    for i in range(len(keys)):
        acc += 6 + len(keys[i])
        if acc > half:
            mid = max(1, min(i, len(keys) - 2))
            break
    separator = keys[mid]
    right = Branch(keys[mid + 1 :], kids[mid + 1 :], 0, None, ctx.owner)
    right.size = 4 * len(right.kids) + sum(2 + len(k) for k in right.keys)
    del keys[mid:], kids[mid + 1 :]
    node.size = 4 * len(kids) + sum(2 + len(k) for k in keys)
    return right, separator


def _shortest_separator(left_last: bytes, right_first: bytes) -> bytes:
    """The shortest prefix of ``right_first`` that is greater than ``left_last``."""
    n = min(len(left_last), len(right_first))
    i = 0
    while i < n and left_last[i] == right_first[i]:
        i += 1
    return right_first[: i + 1]


def _merge_with_sibling(ctx: WriteContext, parent: Branch, i: int) -> bool:
    """Merge child ``i`` of ``parent`` with a neighbour if both fit in one page; True if merged."""
    capacity = ctx.limits.capacity
    for left_index in (i - 1, i):
        if left_index < 0 or left_index + 1 >= len(parent.kids):
            continue
        left_ref, right_ref = parent.kids[left_index], parent.kids[left_index + 1]
        left_node, right_node = _deref(ctx.io, left_ref), _deref(ctx.io, right_ref)
        separator = parent.keys[left_index]
        extra = 6 + len(separator) if type(left_node) is Branch else 0
        if left_node.size + right_node.size + extra > capacity:
            continue
        left = ctx.own(left_ref)
        if right_ref is not right_node or right_node.owner is not ctx.owner:
            ctx.retired.append(right_ref)
        if type(left) is Leaf:
            left.keys.extend(right_node.keys)
            left.vals.extend(right_node.vals)  # type: ignore[union-attr]
            left.size += right_node.size
        else:
            left.keys.append(separator)
            left.keys.extend(right_node.keys)
            left.kids.extend(right_node.kids)  # type: ignore[union-attr]
            left.size += right_node.size + 2 + len(separator)
        parent.kids[left_index] = left
        del parent.kids[left_index + 1], parent.keys[left_index]
        parent.size -= 6 + len(separator)
        return True
    return False
