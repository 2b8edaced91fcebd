"""The one interface the ``shadowstore mail`` commands use, so that the same commands can run against the store
in this process (:class:`DirectMail`) or, later, through the Information Store service.

The commands build their backend in one place (``cli/mail_cmd.py: _backend``); nothing here picks one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from shadowstore.config import DEFAULT_SG
from shadowstore.errors import InvalidParameterError
from shadowstore.mail.schema import MessageRecord

if TYPE_CHECKING:
    from shadowstore.home import ServerHome

DEFAULT_STORE = "Mailbox Store"


class MailBackend(Protocol):
    """Mailboxes of one store. Every method raises ShadowStoreError subclasses only (NotFoundError for an
    unknown mailbox or folder, InvalidParameterError for bad input), never KeyError."""

    def create_mailbox(self, name: str) -> dict[str, Any]:
        """Create mailbox ``name``, or return it unchanged if it exists."""
        ...

    def mailboxes(self) -> list[dict[str, Any]]:
        """Each mailbox's record with ``messages``, ``bytes`` and ``folders`` (names), by name."""
        ...

    def add(self, mailbox: str, folder: str, raws: list[bytes], props: list[dict[str, Any]]) -> list[int]:
        """Store ``raws`` (with ``props``, one each) in ``folder``, all in one durable commit; their uids."""
        ...

    def messages(self, mailbox: str, folder: str | None = None, *, raw: bool = True) -> Iterator[MessageRecord]:
        """Messages of a mailbox or folder from one snapshot, folder by folder in name order, in uid order."""
        ...

    def close(self) -> None:
        """Release what the backend holds; later calls fail."""
        ...


class DirectMail:
    """The backend over a server home opened in this process: mounts the storage group if it is not mounted
    (and dismounts it at ``close``, only then), and works on ``store`` through :class:`MailStore`.

    Raises at construction what mounting raises: StorageGroupBusyError while another process (the service)
    holds the storage group, the recovery errors of a damaged log set, NotFoundError for an unknown store."""

    def __init__(self, home: ServerHome, sg: str = DEFAULT_SG, store: str = DEFAULT_STORE) -> None:
        from shadowstore.mail.mailstore import MailStore  # why here: a client of the service needs no engine

        self.home = home
        self.group = home.storage_group(sg)
        self._mounted_here = not self.group.mounted
        if self._mounted_here:
            self.group.mount()
        try:
            self.mail = MailStore(self.group.store(store))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> DirectMail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_mailbox(self, name: str) -> dict[str, Any]:
        return self.mail.create_mailbox(name)

    def mailboxes(self) -> list[dict[str, Any]]:
        return self.mail.mailboxes()

    def add(self, mailbox: str, folder: str, raws: list[bytes], props: list[dict[str, Any]]) -> list[int]:
        if len(raws) != len(props):
            raise InvalidParameterError(f"{len(raws)} messages came with {len(props)} property records")
        return self.mail.add_messages(mailbox, folder, list(zip(raws, props, strict=True)))

    def messages(self, mailbox: str, folder: str | None = None, *, raw: bool = True) -> Iterator[MessageRecord]:
        return self.mail.messages(mailbox, folder, raw=raw)

    def close(self) -> None:
        if self._mounted_here:
            self._mounted_here = False
            self.group.dismount()
