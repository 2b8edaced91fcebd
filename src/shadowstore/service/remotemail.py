"""The mailbox layer through the service: the ``MailBackend`` the ``mail`` commands use when the service runs.
Messages go and come as frames (service/wire.py); each ``add`` is one request, stored in one commit (perhaps
shared with other clients' deliveries)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from shadowstore.errors import InvalidParameterError, ServiceError
from shadowstore.mail.schema import MessageRecord
from shadowstore.service.client import ServiceClient
from shadowstore.service.wire import FRAMES, FrameReader, message_frames


class RemoteMail:
    def __init__(self, client: ServiceClient, sg: str | None = None, store: str | None = None) -> None:
        self.client = client
        self._where = {k: v for k, v in (("sg", sg), ("store", store)) if v}

    def create_mailbox(self, name: str) -> dict[str, Any]:
        response = self.client.request("POST", "/v1/mailboxes", json={"name": name}, params=self._where)
        return dict(response.json())

    def mailboxes(self) -> list[dict[str, Any]]:
        return list(self.client.get("/v1/mailboxes", **self._where))

    def add(self, mailbox: str, folder: str, raws: list[bytes], props: list[dict[str, Any]]) -> list[int]:
        if len(raws) != len(props):
            raise InvalidParameterError(f"{len(raws)} messages came with {len(props)} property records")
        body = b"".join(message_frames(zip(props, raws, strict=True)))
        route = f"/v1/mailboxes/{quote(mailbox, safe='')}/folders/{quote(folder, safe='')}/messages"
        response = self.client.request(
            "POST", route, content=body, headers={"Content-Type": FRAMES}, params=self._where
        )
        return [int(uid) for uid in response.json()["uids"]]

    def messages(self, mailbox: str, folder: str | None = None, *, raw: bool = True) -> Iterator[MessageRecord]:
        params = {**self._where, **({"folder": folder} if folder else {})}
        route = f"/v1/mailboxes/{quote(mailbox, safe='')}/messages"
        reader = FrameReader(self.client.stream("GET", route, params=params))
        while (props_bytes := reader.record()) is not None:
            body = reader.record()
            if body is None:
                raise ServiceError("the service's list of messages ended inside a message")
            props = json.loads(props_bytes)
            folder_name, uid = props.pop("folder"), props.pop("uid")
            yield MessageRecord(folder_name, int(uid), body if raw else b"", props)

    def close(self) -> None:
        """The client belongs to the command; nothing of this backend's own to release."""
