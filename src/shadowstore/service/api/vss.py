"""The writers of the service (service/vsshost.py): their states, and the calls of a shadow-copy job a backup
program drives as requestor."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from shadowstore.service.api.deps import host_of

router = APIRouter(prefix="/v1/vss", tags=["shadow copies"])
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The id begin returned")]
Step = Literal["prepare-snapshot", "freeze", "thaw", "post-snapshot", "backup-complete", "abort", "heartbeat"]


class BeginJob(BaseModel):
    kind: Literal["full", "copy", "incremental", "differential"]
    components: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(min_length=1, max_length=64)
    owner: str = Field(min_length=1, max_length=512)
    lease_seconds: float | None = Field(None, ge=1, le=3600)


class StepBody(BaseModel):
    files: dict[str, str] | None = None
    succeeded: dict[str, bool] | None = None


@router.get("/writers", summary="The writers: name, ids, state and last error (as vssadmin list writers)")
def writers(request: Request) -> list[dict[str, Any]]:
    return host_of(request).vss.writers()


@router.post("/jobs", summary="Begin a shadow-copy job: Identify and PrepareForBackup")
def begin(request: Request, body: BeginJob) -> dict[str, Any]:
    return host_of(request).vss.begin(body.kind, body.components, body.owner, body.lease_seconds)


@router.post("/jobs/{job_id}/{step}", summary="The next step of the job (freeze answers what it froze)")
def step(request: Request, job_id: JobId, step: Step, body: StepBody | None = None) -> dict[str, Any]:
    return host_of(request).vss.step(job_id, step, (body or StepBody()).model_dump())


@router.delete("/jobs/{job_id}", summary="BackupShutdown: the job ends")
def end(request: Request, job_id: JobId) -> dict[str, Any]:
    return host_of(request).vss.end(job_id)
