"""Streaming backup sessions (ESE's external backup API over HTTP): begin, the file list, chunked reads of each
store, the log range, each log and the checkpoint, proof of coverage, complete (which truncates), end, and the
heartbeat that keeps the session's lease. See service/sessions.py for the lease and what ends a session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from shadowstore.backup.run import lease_seconds as target_lease_seconds
from shadowstore.format.logfile import archived_log_name
from shadowstore.service.api.deps import host_of
from shadowstore.service.sessions import MAX_LEASE, MIN_LEASE, HostedSession

router = APIRouter(prefix="/v1", tags=["backup sessions"])
SessionId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The id begin returned")]
Generation = Annotated[int, Path(ge=1, le=0x7FFFFFFF)]


class BeginRequest(BaseModel):
    sg: str = Field(min_length=1, max_length=256, description="Storage group name")
    kind: Literal["full", "copy", "incremental", "differential"]
    owner: str = Field(min_length=1, max_length=512, description="Who runs the backup, as -505 will name it")
    lease_seconds: float | None = Field(
        None, ge=MIN_LEASE, le=MAX_LEASE, description="Default: service.session_lease_seconds (30 s)"
    )


def _session(request: Request, session_id: str) -> HostedSession:
    return host_of(request).sessions.get(session_id)


@router.post("/backup-sessions", summary="Begin a streaming backup session")
def begin(request: Request, body: BeginRequest) -> dict[str, Any]:
    host = host_of(request)
    hosted = host.sessions.begin(body.sg, body.kind, body.owner, body.lease_seconds)
    sg = hosted.session.sg
    home = host.owned()
    return {
        **hosted.describe(),
        "home_id": home.home_id,
        "log_base": sg.base,
        "signature": sg.signature.to_dict(),
        "target_lease_seconds": target_lease_seconds(home),
    }


@router.get("/backup-sessions", summary="Running sessions: owner, kind, start, lease")
def running(request: Request) -> list[dict[str, Any]]:
    return host_of(request).sessions.describe()


@router.get("/backup-sessions/{session_id}", summary="One running session")
def describe(request: Request, session_id: SessionId) -> dict[str, Any]:
    return _session(request, session_id).describe()


@router.post("/backup-sessions/{session_id}/heartbeat", summary="Renew the session's lease")
def heartbeat(request: Request, session_id: SessionId) -> dict[str, Any]:
    hosted = _session(request, session_id)
    return {"id": hosted.id, "lease_expires": hosted.session.to_dict()["lease_expires"]}


@router.get("/backup-sessions/{session_id}/stores", summary="The stores to copy (full and copy backups)")
def stores(request: Request, session_id: SessionId) -> list[str]:
    return [store.name for store in _session(request, session_id).session.databases()]


@router.post("/backup-sessions/{session_id}/stores/{store}/open", summary="Pin a store for copying")
def open_store(request: Request, store: str, session_id: SessionId) -> dict[str, Any]:
    host = host_of(request)
    return host.sessions.open_store(_session(request, session_id), store)


@router.get(
    "/backup-sessions/{session_id}/stores/{store}/data",
    summary="The open store's bytes, every used page verified",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def read_store(request: Request, store: str, session_id: SessionId) -> StreamingResponse:
    host = host_of(request)
    hosted = _session(request, session_id)
    host.sessions.open_copy_of(hosted, store)  # why here: a wrong store is a 4xx, not a cut stream
    chunks = host.sessions.read_store(hosted, store)
    return StreamingResponse(_counted(hosted, chunks), media_type="application/octet-stream")


@router.post("/backup-sessions/{session_id}/stores/{store}/close", summary="Close a store; its manifest facts")
def close_store(request: Request, store: str, session_id: SessionId) -> dict[str, Any]:
    host = host_of(request)
    return host.sessions.close_store(_session(request, session_id), store)


@router.post("/backup-sessions/{session_id}/logs/prepare", summary="Roll the log; the generations to copy")
def prepare_logs(request: Request, session_id: SessionId) -> dict[str, Any]:
    logs = _session(request, session_id).session.prepare_logs()
    return {"first": logs.copy.start, "stop": logs.copy.stop, "end_us": logs.end_us}


@router.get(
    "/backup-sessions/{session_id}/logs/{generation}",
    summary="One log generation, verified",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def read_log(request: Request, generation: Generation, session_id: SessionId) -> Response:
    hosted = _session(request, session_id)
    data = hosted.session.read_log(generation)
    hosted.served += len(data)
    name = archived_log_name(hosted.session.sg.base, generation)
    return Response(data, media_type="application/octet-stream", headers={"X-File-Name": name})


@router.get(
    "/backup-sessions/{session_id}/checkpoint",
    summary="The checkpoint file",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def checkpoint(request: Request, session_id: SessionId) -> Response:
    hosted = _session(request, session_id)
    data = host_of(request).sessions.checkpoint(hosted)
    hosted.served += len(data)
    name = hosted.session.sg.checkpoint_path.rpartition("/")[2]
    return Response(data, media_type="application/octet-stream", headers={"X-File-Name": name})


@router.post("/backup-sessions/{session_id}/prove", summary="Check the copied logs cover every copy and the chain")
def prove(request: Request, session_id: SessionId) -> dict[str, Any]:
    _session(request, session_id).session.prove_coverage()
    return {"covered": True}


@router.post("/backup-sessions/{session_id}/complete", summary="The set is stored: truncate, stamp, end")
def complete(request: Request, session_id: SessionId) -> dict[str, Any]:
    host = host_of(request)
    hosted = _session(request, session_id)
    report = hosted.session.complete()
    hosted.completed = True
    session = hosted.session
    host.metrics.backup_done(session.sg.name, session.kind, time.monotonic() - hosted.started, hosted.served)
    host.sessions.reap()
    return {"truncated": report.truncated, "missing": report.missing, "stamped": report.stamped}


@router.delete("/backup-sessions/{session_id}", summary="End the session without changing anything (event 215)")
def end(request: Request, session_id: SessionId, reason: str = "the backup program ended it") -> dict[str, Any]:
    return host_of(request).sessions.end(session_id, reason[:500])


@router.post("/storage-groups/{sg}/backup/abort", summary="An administrator ends the storage group's session")
def abort(request: Request, sg: str) -> dict[str, Any]:
    return host_of(request).sessions.abort_sg(sg)


def _counted(hosted: HostedSession, chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        hosted.served += len(chunk)
        yield chunk
