"""The copy-on-write B+tree (engine/btree.py), driven through the real Store API and checked against a dict.

A hypothesis state machine commits random puts and deletes, scans random ranges and prefixes, keeps read
snapshots open across later writes, checkpoints, dismounts and mounts (values then come from disk pages), and
loses power (every durable commit must come back through recovery). Plain tests cover deep trees, emptying a
table, a 16 MiB value, dropping and recreating a table in one transaction, and snapshot isolation.

Runs are deterministic in CI (derandomized; SHADOWSTORE_LONG=1 explores, tests/conftest.py); a failing run prints
its steps.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shadowstore.engine import btree
from shadowstore.engine.storagegroup import StorageGroup
from shadowstore.engine.store import Store
from shadowstore.engine.transaction import Transaction
from shadowstore.errors import KeyTooLargeError
from shadowstore.io.faulty import FaultFileSystem, SimulatedCrash
from tests.conftest import examples, fault_home, reopen

MAILBOX = "Mailbox Store"
TABLE = "t"
PAGE = 8192
INLINE_MAX = btree.Limits(PAGE).inline_max  # 1633: larger values are stored out of line
MAX_KEY = btree.Limits(PAGE).max_key  # 1021
KEY_ALPHABET = b"ab\x00\xff"  # few letters, so keys collide; 0x00 and 0xff are the edge bytes of prefix scans

keys = st.lists(st.sampled_from(KEY_ALPHABET), max_size=64).map(bytes)
short_keys = st.lists(st.sampled_from(KEY_ALPHABET), max_size=3).map(bytes)
bounds = st.none() | keys
value_sizes = st.one_of(st.integers(0, 40), st.integers(INLINE_MAX - 2, INLINE_MAX + 2), st.integers(0, 3000))


def make_value(size: int, tag: int) -> bytes:
    """``size`` bytes that differ from tag to tag (cheap to build, easy to tell apart when a test fails)."""
    pattern = bytes((tag + i) % 251 for i in range(251))
    return (pattern * (size // 251 + 1))[:size]


values = st.builds(make_value, value_sizes, st.integers(0, 250))


# --- helpers --------------------------------------------------------------------------------------------------------


def mounted_home(fs: FaultFileSystem | None = None, **kw: object) -> tuple[FaultFileSystem, StorageGroup]:
    fs = fs or FaultFileSystem(seed=7)
    sg = fault_home(fs, **kw).storage_group()
    sg.mount()
    return fs, sg


def expected_range(
    model: dict[bytes, bytes], start: bytes | None = None, end: bytes | None = None
) -> list[tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in model.items() if (start is None or k >= start) and (end is None or k < end))


def expected_prefix(model: dict[bytes, bytes], prefix: bytes) -> list[tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in model.items() if k.startswith(prefix))


def table_contents(store: Store, table: str = TABLE) -> list[tuple[bytes, bytes]]:
    with store.snapshot() as snap:
        return list(snap.range(table))


def tree_depth(store: Store, table: str = TABLE) -> int:
    """Levels of ``table``'s B+tree in the store's newest state (1: the root is a leaf)."""
    assert store.head is not None
    node = store.head.tables[table].root
    depth = 1
    while True:
        loaded = store.load(node) if type(node) is int else node
        if type(loaded) is not btree.Branch:
            return depth
        node = loaded.kids[0]
        depth += 1


def put_all(store: Store, items: Iterable[tuple[bytes, bytes]], per_transaction: int = 100) -> None:
    batch: list[tuple[bytes, bytes]] = []
    for item in items:
        batch.append(item)
        if len(batch) == per_transaction:
            with store.transaction() as tx:
                for k, v in batch:
                    tx.put(TABLE, k, v)
            batch = []
    if batch:
        with store.transaction() as tx:
            for k, v in batch:
                tx.put(TABLE, k, v)


class GiveUp(Exception):
    """Raised inside a transaction's ``with`` block to abort it."""


def put_then_give_up(store: Store, writes: list[tuple[bytes, bytes]]) -> None:
    with store.transaction() as tx:
        for k, v in writes:
            tx.put(TABLE, k, v)
        raise GiveUp


def remount(sg: StorageGroup) -> None:
    """Dismount and mount again: the store's state is then read back from its file."""
    sg.dismount()
    sg.mount()


def stop_crashed(sg: StorageGroup) -> None:
    """Stop the threads of a storage group whose file system crashed (each of their calls raises)."""
    with contextlib.suppress(SimulatedCrash):
        sg.dismount()
    with contextlib.suppress(SimulatedCrash):
        sg.log.close()


def recover_after_power_loss(fs: FaultFileSystem, sg: StorageGroup) -> tuple[FaultFileSystem, StorageGroup]:
    after = fs.crash("drop")
    stop_crashed(sg)
    sg = reopen(after).storage_group()
    sg.mount()
    return after, sg


# --- the state machine ------------------------------------------------------------------------------------------------


class StoreAgainstDict(RuleBasedStateMachine):
    """One table of a real store, and the dict it must always equal."""

    def __init__(self) -> None:
        super().__init__()
        self.fs, self.sg = mounted_home(FaultFileSystem(seed=3))
        with self.store.transaction() as tx:
            tx.create_table(TABLE)
        self.model: dict[bytes, bytes] = {}
        self.snapshots: list[tuple[Transaction, dict[bytes, bytes]]] = []

    @property
    def store(self) -> Store:
        return self.sg.store(MAILBOX)

    # writes

    @rule(writes=st.lists(st.tuples(st.booleans(), keys, values), min_size=1, max_size=12))
    def commit_puts_and_deletes(self, writes: list[tuple[bool, bytes, bytes]]) -> None:
        with self.store.transaction() as tx:
            for is_put, k, v in writes:
                if is_put:
                    tx.put(TABLE, k, v)
                    self.model[k] = v
                else:
                    assert tx.delete(TABLE, k) == (k in self.model)
                    self.model.pop(k, None)
                assert tx.get(TABLE, k) == self.model.get(k), "a transaction reads its own writes"

    @rule(seed=st.integers(0, 1 << 16), count=st.integers(20, 300), v=values)
    def commit_many_keys(self, seed: int, count: int, v: bytes) -> None:
        """Grow the tree quickly: ``count`` keys in one transaction."""
        rng = random.Random(seed)
        items = {
            bytes(rng.choices(KEY_ALPHABET, k=rng.randint(0, 64))): v[: rng.randint(0, len(v))] for _ in range(count)
        }
        with self.store.transaction() as tx:
            for k, value in items.items():
                tx.put(TABLE, k, value)
        self.model.update(items)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), v=values)
    def overwrite_existing_key(self, data: st.DataObject, v: bytes) -> None:
        k = data.draw(st.sampled_from(sorted(self.model)), label="existing key")
        with self.store.transaction() as tx:
            tx.put(TABLE, k, v)
        self.model[k] = v

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_existing_key(self, data: st.DataObject) -> None:
        k = data.draw(st.sampled_from(sorted(self.model)), label="existing key")
        with self.store.transaction() as tx:
            assert tx.delete(TABLE, k)
            assert tx.get(TABLE, k) is None
        del self.model[k]

    @rule(start=bounds, end=bounds)
    def delete_a_range(self, start: bytes | None, end: bytes | None) -> None:
        """Delete every key in [start, end): empties leaves so that they merge."""
        doomed = [k for k, _ in expected_range(self.model, start, end)]
        with self.store.transaction() as tx:
            for k in doomed:
                assert tx.delete(TABLE, k)
        for k in doomed:
            del self.model[k]

    @rule(writes=st.lists(st.tuples(keys, values), min_size=1, max_size=5))
    def abort_a_transaction(self, writes: list[tuple[bytes, bytes]]) -> None:
        with pytest.raises(GiveUp):
            put_then_give_up(self.store, writes)
        with self.store.snapshot() as snap:
            for k, _ in writes:
                assert snap.get(TABLE, k) == self.model.get(k), "an aborted transaction leaves nothing"

    # reads

    @rule(k=keys)
    def get(self, k: bytes) -> None:
        with self.store.snapshot() as snap:
            assert snap.get(TABLE, k) == self.model.get(k)

    @rule(start=bounds, end=bounds)
    def scan_range(self, start: bytes | None, end: bytes | None) -> None:
        with self.store.snapshot() as snap:
            assert list(snap.range(TABLE, start, end)) == expected_range(self.model, start, end)

    @rule(prefix=short_keys | st.just(b"\xff\xff"))
    def scan_prefix(self, prefix: bytes) -> None:
        with self.store.snapshot() as snap:
            assert list(snap.range(TABLE, prefix=prefix)) == expected_prefix(self.model, prefix)

    # snapshots

    @precondition(lambda self: len(self.snapshots) < 3)
    @rule()
    def take_snapshot(self) -> None:
        self.snapshots.append((self.store.snapshot(), dict(self.model)))

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data(), close=st.booleans())
    def check_snapshot(self, data: st.DataObject, close: bool) -> None:
        index = data.draw(st.integers(0, len(self.snapshots) - 1), label="snapshot")
        snap, frozen = self.snapshots[index]
        assert list(snap.range(TABLE)) == sorted(frozen.items()), "a snapshot keeps seeing its state"
        if close:
            snap.commit()
            del self.snapshots[index]

    def check_and_close_snapshots(self) -> None:
        for snap, frozen in self.snapshots:
            assert list(snap.range(TABLE)) == sorted(frozen.items())
            snap.commit()
        self.snapshots = []

    # durability

    @rule()
    def checkpoint(self) -> None:
        self.sg.checkpoint()

    @rule()
    def dismount_and_mount(self) -> None:
        self.check_and_close_snapshots()
        remount(self.sg)
        assert table_contents(self.store) == sorted(self.model.items())

    @rule()
    def lose_power_and_recover(self) -> None:
        self.check_and_close_snapshots()
        self.fs, self.sg = recover_after_power_loss(self.fs, self.sg)
        assert table_contents(self.store) == sorted(self.model.items()), "every durable commit survives"

    @invariant()
    def count_matches(self) -> None:
        with self.store.snapshot() as snap:
            assert snap.count(TABLE) == len(self.model)

    def teardown(self) -> None:
        try:
            if self.sg.mounted:
                self.check_and_close_snapshots()
                assert table_contents(self.store) == sorted(self.model.items())
                remount(self.sg)
                assert table_contents(self.store) == sorted(self.model.items())
        finally:
            for snap, _ in self.snapshots:
                snap.abort()
            self.sg.dismount()


StoreAgainstDict.TestCase.settings = settings(
    max_examples=examples(200),
    stateful_step_count=50,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # why: the explain phase traces every line: minutes
)
TestStoreAgainstDict = StoreAgainstDict.TestCase


# --- plain tests ------------------------------------------------------------------------------------------------------


def long_prefix_key(i: int) -> bytes:
    """Keys sharing a 200-byte prefix: separators are long, so branches fill and the tree gets deep."""
    return b"k" * 200 + b"%08d" % i


def test_thousands_of_sequential_keys_build_a_deep_tree_that_survives_reopen() -> None:
    _fs, sg = mounted_home()
    store = sg.store(MAILBOX)
    with store.transaction() as tx:
        tx.create_table(TABLE)
    model = {long_prefix_key(i): make_value(1000 + i % 600, i % 251) for i in range(3000)}
    put_all(store, model.items())
    assert tree_depth(store) >= 3
    assert table_contents(store) == sorted(model.items())
    sg.checkpoint()
    remount(sg)
    assert tree_depth(store) >= 3
    assert table_contents(store) == sorted(model.items())
    with store.snapshot() as snap:
        assert snap.get(TABLE, long_prefix_key(1234)) == model[long_prefix_key(1234)]
        assert snap.get(TABLE, long_prefix_key(3000)) is None
        middle = list(snap.range(TABLE, long_prefix_key(1000), long_prefix_key(1010)))
        assert [k for k, _ in middle] == [long_prefix_key(i) for i in range(1000, 1010)]
    sg.dismount()


def test_thousands_of_random_keys_in_random_order_match_a_dict() -> None:
    rng = random.Random(20240601)
    _fs, sg = mounted_home()
    store = sg.store(MAILBOX)
    with store.transaction() as tx:
        tx.create_table(TABLE)
    model: dict[bytes, bytes] = {}
    for round_ in range(40):
        with store.transaction() as tx:
            for _ in range(100):
                k = b"k" * 200 + rng.randbytes(rng.randint(1, 16))  # long shared prefix: long separators
                v = make_value(rng.choice([rng.randint(0, 100), rng.randint(1500, 3000)]), round_)
                tx.put(TABLE, k, v)
                model[k] = v
            for k in rng.sample(sorted(model), 20):
                assert tx.delete(TABLE, k)
                del model[k]
        if round_ % 10 == 9:
            sg.checkpoint()
    assert tree_depth(store) >= 3
    assert table_contents(store) == sorted(model.items())
    remount(sg)
    assert table_contents(store) == sorted(model.items())
    sg.dismount()


def test_deleting_every_key_leaves_an_empty_table_that_still_works() -> None:
    rng = random.Random(99)
    _fs, sg = mounted_home()
    store = sg.store(MAILBOX)
    with store.transaction() as tx:
        tx.create_table(TABLE)
    keys_ = [long_prefix_key(i) for i in range(2000)]
    put_all(store, ((k, make_value(1200, i % 251)) for i, k in enumerate(keys_)))
    sg.checkpoint()
    assert tree_depth(store) >= 3
    rng.shuffle(keys_)
    for start in range(0, len(keys_), 250):
        with store.transaction() as tx:
            for k in keys_[start : start + 250]:
                assert tx.delete(TABLE, k)
        if start == 1000:
            sg.checkpoint()
    assert table_contents(store) == []
    assert tree_depth(store) == 1, "an empty tree shrinks back to one leaf"
    with store.transaction() as tx:
        assert not tx.delete(TABLE, keys_[0])
    remount(sg)
    with store.snapshot() as snap:
        assert snap.tables() == [TABLE]
        assert snap.count(TABLE) == 0
    with store.transaction() as tx:
        tx.put(TABLE, b"again", b"works")
    assert table_contents(store) == [(b"again", b"works")]
    sg.dismount()


def test_16_mib_value_round_trips_through_recovery_checkpoint_and_reopen() -> None:
    """The only large value of the suite: its log record spans hundreds of 64 KiB generations."""
    big = random.Random(16).randbytes(16 << 20)
    fs, sg = mounted_home()
    store = sg.store(MAILBOX)
    with store.transaction() as tx:
        tx.create_table(TABLE)
        tx.put(TABLE, b"before", b"small")
        tx.put(TABLE, b"big", big)
        tx.put(TABLE, b"c-after", b"small too")
    assert sg.log.disk_generation > 256
    fs, sg = recover_after_power_loss(fs, sg)  # replayed from FIRST, MIDDLE... LAST fragments
    store = sg.store(MAILBOX)
    with store.snapshot() as snap:
        assert snap.get(TABLE, b"big") == big
        assert [k for k, _ in snap.range(TABLE)] == [b"before", b"big", b"c-after"]
    sg.checkpoint()
    remount(sg)
    with store.snapshot() as snap:
        assert snap.get(TABLE, b"big") == big
    sg.dismount()


def test_dropping_and_creating_a_table_in_one_transaction_starts_it_empty() -> None:
    fs, sg = mounted_home()
    store = sg.store(MAILBOX)
    with store.transaction() as tx:
        tx.create_table(TABLE)
        tx.create_table("other")
        tx.put("other", b"k", b"untouched")
    put_all(store, ((long_prefix_key(i), make_value(2000, i % 251)) for i in range(300)))
    sg.checkpoint()
    with store.transaction() as tx:
        tx.drop_table(TABLE)
        assert not tx.has_table(TABLE)
        tx.create_table(TABLE)
        assert tx.count(TABLE) == 0
        tx.put(TABLE, long_prefix_key(7), b"new")
    expected = [(long_prefix_key(7), b"new")]
    assert table_contents(store) == expected
    fs, sg = recover_after_power_loss(fs, sg)  # replays DROP then CREATE from one record
    store = sg.store(MAILBOX)
    assert table_contents(store) == expected
    assert table_contents(store, "other") == [(b"k", b"untouched")]
    sg.checkpoint()
    remount(sg)
    assert table_contents(store) == expected
    sg.dismount()


def test_snapshot_keeps_its_state_across_later_commits_and_checkpoints() -> None:
    _fs, sg = mounted_home()
    store = sg.store(MAILBOX)
    with store.transaction() as tx:
        tx.create_table(TABLE)
    old = {long_prefix_key(i): make_value(300 + i % 2000, 1) for i in range(600)}
    put_all(store, old.items())
    sg.checkpoint()
    snap = store.snapshot()
    new = {k: make_value(len(v), 2) for k, v in old.items() if k[-1] % 2 == 0}
    for round_ in range(4):
        put_all(store, new.items())  # replaced pages are retired while the snapshot can still reach them
        with store.transaction() as tx:
            tx.put(TABLE, b"z%d" % round_, make_value(3000, round_))  # new pages are allocated
        sg.checkpoint()
    assert list(snap.range(TABLE)) == sorted(old.items()), "the old pages were not reused"
    assert snap.get(TABLE, b"z0") is None
    snap.commit()
    current = {**old, **new, **{b"z%d" % r: make_value(3000, r) for r in range(4)}}
    assert table_contents(store) == sorted(current.items())
    sg.dismount()


def test_write_transaction_is_invisible_to_snapshots_until_it_commits() -> None:
    _fs, sg = mounted_home()
    store = sg.store(MAILBOX)
    with store.transaction() as tx:
        tx.create_table(TABLE)
        tx.put(TABLE, b"a", b"1")
    before = store.snapshot()
    with store.transaction() as tx:
        tx.put(TABLE, b"a", b"2")
        tx.put(TABLE, b"b", make_value(5000, 3))
        with store.snapshot() as during:
            assert list(during.range(TABLE)) == [(b"a", b"1")]
    assert list(before.range(TABLE)) == [(b"a", b"1")]
    before.commit()
    assert table_contents(store) == [(b"a", b"2"), (b"b", make_value(5000, 3))]
    sg.dismount()


def test_longest_key_is_accepted_and_one_byte_more_is_refused() -> None:
    _fs, sg = mounted_home()
    store = sg.store(MAILBOX)
    assert MAX_KEY == 1021
    with store.transaction() as tx:
        tx.create_table(TABLE)
    longest = {b"%04d" % i + b"x" * (MAX_KEY - 4): make_value(INLINE_MAX, i) for i in range(60)}
    put_all(store, longest.items(), per_transaction=10)
    with pytest.raises(KeyTooLargeError) as info, store.transaction() as tx:
        tx.put(TABLE, b"y" * (MAX_KEY + 1), b"v")
    assert info.value.code == -1609
    assert str(MAX_KEY + 1) in info.value.message
    assert tree_depth(store) >= 2
    remount(sg)
    assert table_contents(store) == sorted(longest.items())
    sg.dismount()


def test_prefix_scans_at_the_edges_of_the_byte_range() -> None:
    _fs, sg = mounted_home()
    store = sg.store(MAILBOX)
    stored = [b"", b"\x00", b"\x00\xff", b"a\xff", b"a\xff\xff", b"b", b"\xff", b"\xff\x00", b"\xff\xff"]
    with store.transaction() as tx:
        tx.create_table(TABLE)
        for k in stored:
            tx.put(TABLE, k, k + b"!")
    model = {k: k + b"!" for k in stored}
    with store.snapshot() as snap:
        for prefix in (b"", b"\x00", b"a\xff", b"\xff", b"\xff\xff", b"c"):
            assert list(snap.range(TABLE, prefix=prefix)) == expected_prefix(model, prefix), prefix
    sg.dismount()


@pytest.mark.parametrize("seed", range(3))
def test_seeded_workload_matches_a_dict_after_every_reopen(seed: int) -> None:
    """A fixed-seed mix of everything the state machine does, in a longer run than its examples."""
    rng = random.Random(seed)
    fs, sg = mounted_home(FaultFileSystem(seed=seed))
    with sg.store(MAILBOX).transaction() as tx:
        tx.create_table(TABLE)
    model: dict[bytes, bytes] = {}
    for step in range(120):
        store = sg.store(MAILBOX)
        with store.transaction() as tx:
            for _ in range(rng.randint(1, 30)):
                k = bytes(rng.choices(KEY_ALPHABET, k=rng.randint(0, 64)))
                if rng.random() < 0.7:
                    v = make_value(rng.randint(0, 3000), rng.randint(0, 250))
                    tx.put(TABLE, k, v)
                    model[k] = v
                else:
                    assert tx.delete(TABLE, k) == (k in model), f"seed {seed} step {step}"
                    model.pop(k, None)
        action = rng.random()
        if action < 0.1:
            sg.checkpoint()
        elif action < 0.15:
            remount(sg)
        elif action < 0.18:
            fs, sg = recover_after_power_loss(fs, sg)
        assert table_contents(sg.store(MAILBOX)) == sorted(model.items()), f"seed {seed} step {step}"
    sg.dismount()


def test_tree_depth_helper_sees_a_single_leaf_for_a_small_table() -> None:
    _fs, sg = mounted_home()
    store = sg.store(MAILBOX)
    with store.transaction() as tx:
        tx.create_table(TABLE)
        tx.put(TABLE, b"k", b"v")
    assert tree_depth(store) == 1
    sg.dismount()
