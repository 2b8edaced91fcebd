"""Mounting and dismounting a storage group, or one store of it, while the service runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from shadowstore.service.api.deps import host_of

router = APIRouter(tags=["storage groups"])


@router.post("/v1/storage-groups/{sg}/mount", summary="Mount a storage group (soft recovery first if needed)")
def mount_sg(request: Request, sg: str) -> dict[str, Any]:
    return host_of(request).mount(sg)


@router.post("/v1/storage-groups/{sg}/dismount", summary="Dismount a storage group: every store Clean Shutdown")
def dismount_sg(request: Request, sg: str) -> dict[str, Any]:
    return host_of(request).dismount(sg)


@router.post("/v1/storage-groups/{sg}/stores/{store}/mount", summary="Mount one store of a storage group")
def mount_store(request: Request, sg: str, store: str) -> dict[str, Any]:
    return host_of(request).mount(sg, store)


@router.post("/v1/storage-groups/{sg}/stores/{store}/dismount", summary="Dismount one store (Clean Shutdown)")
def dismount_store(request: Request, sg: str, store: str) -> dict[str, Any]:
    return host_of(request).dismount(sg, store)
