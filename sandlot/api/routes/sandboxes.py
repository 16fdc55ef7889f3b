"""Sandbox lifecycle: create, list, get, destroy, usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from sandlot.api.deps import Reader, Service, Writer
from sandlot.api.schemas import (
    MAX_STORED_INT,
    CreateSandboxIn,
    Envelope,
    Pagination,
    SandboxList,
    SandboxOut,
    UsageOut,
)
from sandlot.domain.states import SandboxStatus

router = APIRouter(prefix="/v1/sandboxes", tags=["sandboxes"])

SandboxId = Annotated[str, Path(max_length=64, description="e.g. sbx-7k2m9p4q1x")]


@router.post("", status_code=201)
async def create_sandbox(body: CreateSandboxIn, who: Writer, svc: Service) -> Envelope[SandboxOut]:
    if body.snapshot is not None:
        view = await svc.snapshots.branch(
            who.org_id,
            body.snapshot,
            metadata=body.metadata,
            env=body.env,
            timeout=body.timeout,
            idle_timeout=body.idle_timeout,
        )
    else:
        view = await svc.sandboxes.create(who.org_id, body.to_request())
    return Envelope(data=SandboxOut.of(view, svc.volumes.named_mounts(view.id)))


@router.get("", response_model=SandboxList)
def list_sandboxes(
    request: Request,
    who: Reader,
    svc: Service,
    status: SandboxStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_STORED_INT)] = 0,
) -> SandboxList:
    """Filter on metadata with `metadata.KEY=VALUE` query parameters."""
    metadata = {
        key.removeprefix("metadata."): value
        for key, value in request.query_params.items()
        if key.startswith("metadata.")
    }
    page = svc.records.page(
        who.org_id, status=status, metadata=metadata, limit=limit, offset=offset
    )
    return SandboxList(
        data=[SandboxOut.of(v) for v in page.items],
        pagination=Pagination(limit=page.limit, offset=page.offset, total=page.total),
    )


@router.get("/{sandbox_id}")
def get_sandbox(sandbox_id: SandboxId, who: Reader, svc: Service) -> Envelope[SandboxOut]:
    view = svc.records.get(who.org_id, sandbox_id)
    return Envelope(data=SandboxOut.of(view, svc.volumes.named_mounts(view.id)))


@router.delete("/{sandbox_id}")
async def destroy_sandbox(sandbox_id: SandboxId, who: Writer, svc: Service) -> Envelope[SandboxOut]:
    return Envelope(data=SandboxOut.of(await svc.sandboxes.destroy(who.org_id, sandbox_id)))


@router.get("/{sandbox_id}/usage")
def sandbox_usage(sandbox_id: SandboxId, who: Reader, svc: Service) -> Envelope[UsageOut]:
    """Current cgroup readings: CPU time, memory, pids and OOM kills."""
    return Envelope(data=UsageOut.model_validate(svc.readings.usage(who.org_id, sandbox_id)))
