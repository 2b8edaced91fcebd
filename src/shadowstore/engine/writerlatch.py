"""The writer latch of a store: one write transaction at a time, and never one that can hold everyone up.

A write transaction holds its store's latch from ``begin`` to the end of its commit's append. A client that
begins a transaction and then stalls (a hung program, a lost connection to the service) would otherwise make
everything that needs the latch wait forever: dismount, and behind dismount the storage group's mutex, so
checkpoints, going offline and backup begins too. So the latch can be *taken away* from its holder: the
maintenance thread does so when a transaction has held it longer than the policy's bound, dismount when it has
waited that long, and closing the store at once. The holder learns it at its next call (the transaction was
aborted, nothing of it reached the log). Only the short window of a commit's append, which cannot stall on a
client, is never interrupted.

Lock order: the latch comes before ``_mutex`` here, before the store's ``_state_lock`` and before the log's
locks (see docs/architecture.md).
"""

from __future__ import annotations

import threading
import time

from shadowstore.errors import TransactionAbortedError


class WriterLatch:
    """One holder at a time; the holder is any object (a transaction), or None for an anonymous probe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mutex = threading.Lock()  # guards the fields below (microseconds)
        self._holder: object | None = None
        self._since = 0.0
        self._committing = False

    def acquire(self, holder: object, timeout: float = -1) -> bool:
        """Take the latch for ``holder``, waiting up to ``timeout`` seconds (forever when negative)."""
        if not self._lock.acquire(timeout=timeout):
            return False
        with self._mutex:
            self._holder = holder
            self._since = time.monotonic()
        return True

    def adopt(self, holder: object) -> None:
        """Name the holder of a latch taken with ``acquire(None)``; from now on it can be taken away."""
        with self._mutex:
            self._holder = holder
            self._since = time.monotonic()

    def release(self, holder: object) -> bool:
        """Give the latch back; False (and nothing done) when it was taken away from ``holder`` meanwhile."""
        with self._mutex:
            if self._holder is not holder:
                return False
            self._holder = None
        self._lock.release()
        return True

    def begin_commit(self, holder: object) -> bool:
        """From here until ``end_commit`` the latch cannot be taken away. False when it already was."""
        with self._mutex:
            if self._holder is not holder:
                return False
            self._committing = True
            return True

    def end_commit(self, holder: object) -> None:
        with self._mutex:
            self._committing = False
            if self._holder is not holder:
                return
            self._holder = None
        self._lock.release()

    def take_away(self) -> object | None:
        """Release the latch on behalf of its holder, which is returned (None when there is no named holder or
        it is committing: try again later)."""
        with self._mutex:
            holder = self._holder
            if holder is None or self._committing:
                return None
            self._holder = None
        self._lock.release()
        return holder

    def held_for(self) -> float:
        """Seconds the current named holder has held the latch (0 when there is none)."""
        with self._mutex:
            return 0.0 if self._holder is None else time.monotonic() - self._since

    def try_idle(self) -> bool:
        """Take the latch without a holder if nobody has it (a checkpoint's way of knowing the store is idle);
        give it back with ``release(None)``."""
        return self._lock.acquire(blocking=False)


def latch_timeout_error(sg: str, store: str, held: float, why: str, bound: float) -> TransactionAbortedError:
    """The error a write transaction gets when its writer latch is taken away after ``held`` seconds."""
    return TransactionAbortedError(
        f"the write transaction on store {store!r} of {sg!r} was aborted after holding the store's writer latch "
        f"for {held:.0f} s ({why}); nothing of it was written",
        hint=f"commit or abort write transactions promptly; the bound is the maintenance policy's "
        f"transaction_timeout ({bound:g} s)",
    )
