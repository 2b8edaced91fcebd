"""The mailbox layer inside the service: one ``MailStore`` per store, and one commit batcher per store, so
concurrent clients' deliveries share transactions (service/batching.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shadowstore.home import DEFAULT_SG
from shadowstore.mail.mailstore import MailStore, Prepared, prepare_items
from shadowstore.mail.schema import StoredMessage
from shadowstore.service.batching import CommitBatcher

if TYPE_CHECKING:
    from shadowstore.engine.store import Store
    from shadowstore.service.host import InformationStore

DEFAULT_STORE = "Mailbox Store"


class MailHost:
    def __init__(self, host: InformationStore) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._batchers: dict[tuple[str, str], tuple[Store, CommitBatcher]] = {}  # by (sg, store): what it commits to
        self.socket_deliveries = 0  # deliveries stored from the mail socket (for /metrics)
        self.shared_reads = 0  # reads from it that went through shared memory (for /metrics)

    def delivered_by_socket(self) -> None:
        with self._lock:
            self.socket_deliveries += 1

    def read_shared(self) -> None:
        with self._lock:
            self.shared_reads += 1

    def mail(self, sg: str | None, store: str | None) -> MailStore:
        return MailStore(self.host.store(sg or DEFAULT_SG, store or DEFAULT_STORE))

    def batcher(self, found: Store) -> CommitBatcher:
        """The batcher of ``found``, the store mounted now under its name. One made for an earlier mount is
        replaced: the engine itself may have dismounted the storage group (a full log disk, an I/O error) and a
        mount since made new stores."""
        key = (found.sg.name, found.name)
        with self._lock:
            made = self._batchers.get(key)
            if made is None or made[0] is not found:
                made = self._batchers[key] = (found, CommitBatcher(found.transaction))
            return made[1]

    def batchers(self) -> dict[tuple[str, str], CommitBatcher]:
        with self._lock:
            return {key: batcher for key, (_store, batcher) in self._batchers.items()}

    def forget(self, sg: str) -> None:
        """The storage group is being dismounted: its stores' batchers go (a later mount makes new ones)."""
        with self._lock:
            for key in [k for k in self._batchers if k[0] == sg]:
                del self._batchers[key]

    def mailboxes(self, sg: str | None = None, store: str | None = None) -> list[dict[str, Any]]:
        return self.mail(sg, store).mailboxes()

    def create(self, name: str, sg: str | None = None, store: str | None = None) -> dict[str, Any]:
        return self.mail(sg, store).create_mailbox(name)

    def add(
        self,
        mailbox: str,
        folder: str,
        items: Sequence[tuple[bytes, Mapping[str, Any]]],
        sg: str | None = None,
        store: str | None = None,
    ) -> list[int]:
        """Store ``items`` in one transaction, perhaps shared with other clients' (all or none of them)."""
        prepared = prepare_items(items, time.time())  # why outside the batch: parsing holds no latch
        return self.add_prepared(mailbox, folder, prepared, sg, store)

    def add_prepared(
        self, mailbox: str, folder: str, prepared: list[Prepared], sg: str | None = None, store: str | None = None
    ) -> list[int]:
        """As ``add``, with items ``prepare_items`` (or ``prepare_item`` one by one) made already."""
        found = self.host.store(sg or DEFAULT_SG, store or DEFAULT_STORE)
        mail = MailStore(found)
        size = sum(len(raw) for raw, _ in prepared)
        return self.batcher(found).submit(lambda tx: mail.add_in(tx, mailbox, folder, prepared), size)

    def stored_messages(
        self,
        mailbox: str,
        folder: str | None,
        sg: str | None = None,
        store: str | None = None,
        *,
        raw: bool = True,
        space: Callable[[int], memoryview | None] | None = None,
    ) -> Generator[StoredMessage]:
        return self.mail(sg, store).stored_messages(mailbox, folder, raw=raw, space=space)

    def totals(
        self, mailbox: str, folder: str | None, sg: str | None = None, store: str | None = None
    ) -> tuple[int, int]:
        return self.mail(sg, store).totals(mailbox, folder)
