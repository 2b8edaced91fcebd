"""Commit batching: the writes of concurrent clients to one store, applied in one transaction.

Each client's request is a *work*: a function that stages its writes in a transaction given to it. Requests
queue; one of the waiting threads leads: it takes everything queued (up to a bound), runs each work in one
write transaction and commits once, then hands the lead to the next waiting thread. While one batch commits
(its fsync) the next one gathers, so under load a commit carries many clients' writes and the per-commit cost
(the writer latch, the log record, the wait for the disk) is paid once for all of them.

A work that fails aborts the batch; the batch is then run again one work per transaction, so one client's bad
request never fails another's. A failed commit (a full log disk, a storage group gone offline) fails every
work of the batch: none of them was stored.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from shadowstore.engine.transaction import Transaction

T = TypeVar("T")
Work = Callable[[Transaction], object]

MAX_BATCH_WORKS = 256
MAX_BATCH_BYTES = 64 << 20


class _Request(Generic[T]):
    __slots__ = ("done", "error", "lead", "result", "size", "work")

    def __init__(self, work: Callable[[Transaction], T], size: int) -> None:
        self.work = work
        self.size = size
        self.done = threading.Event()
        self.lead = False
        self.result: T | None = None
        self.error: BaseException | None = None


class CommitBatcher:
    """Batches the works submitted for one store. ``begin`` opens a write transaction on it."""

    def __init__(self, begin: Callable[[], Transaction]) -> None:
        self._begin = begin
        self._lock = threading.Lock()
        self._queue: deque[_Request[object]] = deque()
        self._leading = False
        self.commits = 0  # transactions committed (for tests and benchmarks: works / commits = batch size)
        self.works = 0

    def submit(self, work: Callable[[Transaction], T], size: int = 0) -> T:
        """Run ``work`` in a committed transaction, maybe with others'; returns what it returned, or raises
        what it raised (or what the commit raised)."""
        request: _Request[T] = _Request(work, size)
        with self._lock:
            self._queue.append(request)  # type: ignore[arg-type]
            if not self._leading:
                self._leading = request.lead = True
        if not request.lead:
            request.done.wait()
        if request.lead:
            self._lead()
            request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            batch: list[_Request[object]] = []
            size = 0
            while self._queue and len(batch) < MAX_BATCH_WORKS and (not batch or size < MAX_BATCH_BYTES):
                request = self._queue.popleft()
                batch.append(request)
                size += request.size
        appended: Transaction | None = None
        try:
            appended = self._run(batch)
        finally:
            self._hand_on()
        if appended is not None:
            # why after handing on: the next batch builds and appends while this one waits for the disk
            try:
                appended.store.wait_durable(appended)
            except BaseException as exc:
                for request in batch:
                    request.error = exc
        for request in batch:
            request.done.set()

    def _hand_on(self) -> None:
        with self._lock:
            if self._queue:
                heir = self._queue[0]
                heir.lead = True
                heir.done.set()  # why: it wakes to lead, then waits again for its own result
            else:
                self._leading = False

    def _run(self, batch: list[_Request[object]]) -> Transaction | None:
        """Apply ``batch`` in one transaction and append its commit (not yet durable); returns it, or None when
        nothing was committed. A work that fails makes each work run in a transaction of its own (durable
        before the next: a rare path)."""
        try:
            return self._apply(batch)
        except BaseException as exc:
            if len(batch) == 1 or not any(r.error is exc for r in batch):
                for request in batch:  # the commit failed (or the only work): nothing of the batch was stored
                    request.error = exc
                return None
        for request in batch:  # one work failed: each alone, so only that one fails
            request.error = None
            try:
                alone = self._apply([request])
                alone.store.wait_durable(alone)
            except BaseException as exc:
                request.error = exc
        return None

    def _apply(self, batch: list[_Request[object]]) -> Transaction:
        """Every work of ``batch`` in one transaction, its commit appended. A work's own failure is recorded on
        it and re-raised (so ``_run`` can tell it from a failure of the commit)."""
        tx = self._begin()
        try:
            for request in batch:
                try:
                    request.result = request.work(tx)
                except BaseException as exc:
                    request.error = exc
                    raise
        except BaseException:
            tx.abort()
            raise
        tx.commit(wait=False)
        self.commits += 1
        self.works += len(batch)
        return tx
