"""The writer latch of a store: one write transaction at a time, and never one that can hold everyone up.

A write transaction holds its store's latch from ``begin`` to the end of its commit's append. A client that
begins a transaction and then stalls (a hung program, a lost connection to the service) would otherwise make
everything that needs the latch wait forever: dismount, and behind dismount the storage group's mutex, so
checkpoints, going offline and backup begins too. So the latch can be *taken away* from its holder: the
maintenance thread does so when a transaction has held it longer than the policy's bound, dismount when it has
waited that long, and closing the store at once. The holder learns it at its next call (the transaction was
aborted, nothing of it reached the log). Only the short window of a commit's append, which cannot stall on a
client, is never interrupted.

Cost: this sits on the commit path, so it takes no lock of its own. A holder gets a *ticket*, a one-element
list; beginning its commit, giving the latch back and taking it away each ``pop`` that list, which is atomic, so
exactly one of them wins and the latch is released exactly once. How long a holder has held the latch is
measured by whoever watches it (``held_since``), not stamped on every transaction.

Lock order: the latch comes before ``_mutex`` here, before the store's ``_state_lock`` and before the log's
locks (see docs/architecture.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shadowstore.errors import TransactionAbortedError

Ticket = list[object]  # [holder] while it may be taken away; empty once a commit, a release or a taker won it


class WriterLatch:
    """One holder at a time. A named holder (a transaction) holds a ticket and can lose the latch; an anonymous
    one (a dismount, a checkpoint's probe) cannot."""

    __slots__ = ("_lock", "_ticket", "acquire", "end_commit")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ticket: Ticket = []
        # why the lock's own methods: a Python frame less on every commit
        self.acquire: Callable[..., bool] = self._lock.acquire
        """Take the latch anonymously: ``acquire(timeout=-1)`` waits up to ``timeout`` seconds (forever when
        negative)."""
        self.end_commit: Callable[[], None] = self._lock.release
        """Release the latch after a commit's append. Requires: ``begin_commit`` returned True."""

    def adopt(self, holder: object) -> Ticket:
        """Name ``holder`` the holder of the latch taken with ``acquire``: from now on it can be taken away.
        Returns its ticket, which the holder passes to ``begin_commit`` or ``release``."""
        ticket: Ticket = [holder]
        self._ticket = ticket
        return ticket

    def begin_commit(self, ticket: Ticket) -> bool:
        """From here until ``end_commit`` the latch cannot be taken away. False when it already was."""
        try:
            ticket.pop()
        except IndexError:
            return False
        return True

    def release(self, ticket: Ticket) -> bool:
        """A named holder gives the latch back; False (and nothing done) when it was taken away meanwhile."""
        try:
            ticket.pop()
        except IndexError:
            return False
        self._lock.release()
        return True

    def release_anonymous(self) -> None:
        self._lock.release()

    def take_away(self) -> object | None:
        """Release the latch on behalf of its named holder, which is returned (None when there is none, or it is
        committing: try again later)."""
        try:
            holder = self._ticket.pop()
        except IndexError:
            return None
        self._lock.release()
        return holder

    def holder(self) -> object | None:
        """The named holder now (None when anonymous or none): a watcher compares it across looks to see how long
        one transaction has held the latch."""
        ticket = self._ticket
        return ticket[0] if ticket else None

    def try_idle(self) -> bool:
        """Take the latch anonymously if nobody has it (a checkpoint's way of knowing the store is idle); give it
        back with ``release_anonymous``."""
        return self._lock.acquire(False)


class LatchWatch:
    """How long one transaction has held a latch, as seen by one watcher: the time since this watcher first saw
    the current holder (so a bound is enforced within one look's interval of its end)."""

    def __init__(self) -> None:
        self._holder: object | None = None
        self._since = 0.0

    def held(self, latch: WriterLatch) -> float:
        holder = latch.holder()
        now = time.monotonic()
        if holder is None or holder is not self._holder:
            self._holder, self._since = holder, now  # why keep it: its identity is not reused while held here
        return 0.0 if holder is None else now - self._since


def latch_timeout_error(sg: str, store: str, held: float, why: str, bound: float) -> TransactionAbortedError:
    """The error a write transaction gets when its writer latch is taken away after ``held`` seconds."""
    return TransactionAbortedError(
        f"the write transaction on store {store!r} of {sg!r} was aborted after holding the store's writer latch "
        f"for {held:.0f} s ({why}); nothing of it was written",
        hint=f"commit or abort write transactions promptly; the bound is the maintenance policy's "
        f"transaction_timeout ({bound:g} s)",
    )
