"""The mailbox layer: mailboxes, delivering messages (several per request, as frames) and reading them back.

Messages travel as ``application/x-shadowstore-frames`` (service/wire.py): per message its properties as JSON,
then its raw bytes, unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from shadowstore.errors import InvalidParameterError
from shadowstore.mail.schema import StoredMessage
from shadowstore.service.api.deps import host_of
from shadowstore.service.wire import FRAMES, MAX_DELIVERY_BYTES, parse_messages, read_frames

router = APIRouter(prefix="/v1", tags=["mail"])
STREAM_PIECE = 1 << 20
_FRAMES_BODY = {
    "requestBody": {
        "required": True,
        "content": {FRAMES: {"schema": {"type": "string", "format": "binary"}}},
    }
}
SgQuery = Annotated[
    str | None, Query(min_length=1, max_length=256, description="Storage group (default: First Storage Group)")
]
StoreQuery = Annotated[str | None, Query(min_length=1, max_length=256, description="Store (default: Mailbox Store)")]
FolderQuery = Annotated[str | None, Query(min_length=1, max_length=200, description="Only this folder")]


class NewMailbox(BaseModel):
    name: str = Field(min_length=1, max_length=200)


@router.get("/mailboxes", summary="Mailboxes with their message counts and sizes")
def mailboxes(request: Request, sg: SgQuery = None, store: StoreQuery = None) -> list[dict[str, Any]]:
    return host_of(request).mail.mailboxes(sg, store)


@router.post("/mailboxes", summary="Create a mailbox (creating one that exists returns it)")
def create(request: Request, body: NewMailbox, sg: SgQuery = None, store: StoreQuery = None) -> dict[str, Any]:
    return host_of(request).mail.create(body.name, sg, store)


@router.post(
    "/mailboxes/{mailbox}/folders/{folder}/messages",
    summary="Deliver messages into a folder: all of one request in one durable commit",
    openapi_extra=_FRAMES_BODY,
)
async def deliver(
    request: Request, mailbox: str, folder: str, sg: SgQuery = None, store: StoreQuery = None
) -> dict[str, Any]:
    chunks = []  # why not body(): that joins them, one copy more
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_DELIVERY_BYTES + (64 << 20):  # the frames and properties around the messages' bytes
            raise InvalidParameterError(
                f"the delivery holds more than {MAX_DELIVERY_BYTES:,} bytes of messages",
                hint="split it into smaller deliveries; nothing of this one was stored",
            )
        chunks.append(chunk)
    items = [(raw, props) for props, raw in parse_messages(chunks)]
    uids = await run_in_threadpool(host_of(request).mail.add, mailbox, folder, items, sg, store)
    return {"uids": uids}


@router.get(
    "/mailboxes/{mailbox}/messages",
    summary="The messages of a mailbox (or one folder) from one snapshot, as frames",
    response_class=StreamingResponse,
    responses={200: {"content": {FRAMES: {}}}},
)
def read(
    request: Request,
    mailbox: str,
    folder: FolderQuery = None,
    sg: SgQuery = None,
    store: StoreQuery = None,
) -> StreamingResponse:
    messages = host_of(request).mail.stored_messages(mailbox, folder, sg, store)
    first = next(messages, None)  # why now: an unknown mailbox or folder is a 404, not a cut stream
    return StreamingResponse(_frames(first, messages), media_type=FRAMES)


def _frames(first: StoredMessage | None, rest: Iterator[StoredMessage]) -> Iterator[bytes]:
    """Frames of the messages (as the mail socket sends them, service/wire.py), in pieces of about
    ``STREAM_PIECE`` bytes: each piece the server sends costs a hop to a worker thread and back, so a piece per
    message would spend more time hopping than sending."""
    pending: list[bytes | memoryview] = []
    size = 0
    message = first
    while message is not None:
        pieces = read_frames(message)
        pending += pieces
        size += sum(map(len, pieces))
        if size >= STREAM_PIECE:
            yield b"".join(pending)
            pending, size = [], 0
        message = next(rest, None)
    if pending:
        yield b"".join(pending)
