"""Files inside a sandbox. Contents stream in both directions; nothing is held whole."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from sandlot.api.deps import Reader, Service, Writer
from sandlot.api.routes.sandboxes import SandboxId
from sandlot.api.schemas import EntryOut, Envelope, MkdirIn, RemovedOut, ReplaceIn, ReplaceOut

router = APIRouter(prefix="/v1/sandboxes/{sandbox_id}/files", tags=["files"])

FilePath = Annotated[
    str, Query(min_length=1, max_length=4096, description="Absolute, or relative to /root.")
]


@router.get(
    "",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def read_file(
    sandbox_id: SandboxId, path: FilePath, who: Reader, svc: Service
) -> StreamingResponse:
    chunks = await svc.work.read_file(who.org_id, sandbox_id, path)
    return StreamingResponse(chunks, media_type="application/octet-stream")


@router.put("", openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
async def write_file(
    sandbox_id: SandboxId,
    path: FilePath,
    request: Request,
    who: Writer,
    svc: Service,
    mode: Annotated[int | None, Query(ge=0, le=0o7777)] = None,
) -> Envelope[EntryOut]:
    """The request body is the file's content; parent directories are created."""
    entry = await svc.work.write_file(who.org_id, sandbox_id, path, request.stream(), mode=mode)
    return Envelope(data=EntryOut.of(entry))


@router.delete("")
async def remove(
    sandbox_id: SandboxId, path: FilePath, who: Writer, svc: Service, recursive: bool = False
) -> Envelope[RemovedOut]:
    await (await svc.work.session(who.org_id, sandbox_id)).remove(path, recursive=recursive)
    return Envelope(data=RemovedOut(path=path))


@router.get("/list")
async def list_dir(
    sandbox_id: SandboxId,
    path: FilePath,
    who: Reader,
    svc: Service,
    depth: Annotated[int, Query(ge=1, le=16)] = 1,
) -> Envelope[list[EntryOut]]:
    entries = await (await svc.work.session(who.org_id, sandbox_id)).list_dir(path, depth=depth)
    return Envelope(data=[EntryOut.of(e) for e in entries])


@router.get("/stat")
async def stat(
    sandbox_id: SandboxId, path: FilePath, who: Reader, svc: Service
) -> Envelope[EntryOut]:
    entry = await (await svc.work.session(who.org_id, sandbox_id)).stat(path)
    return Envelope(data=EntryOut.of(entry))


@router.post("/mkdir")
async def mkdir(
    sandbox_id: SandboxId, body: MkdirIn, who: Writer, svc: Service
) -> Envelope[EntryOut]:
    entry = await (await svc.work.session(who.org_id, sandbox_id)).mkdir(
        body.path, parents=body.parents
    )
    return Envelope(data=EntryOut.of(entry))


@router.post("/replace")
async def replace(
    sandbox_id: SandboxId, body: ReplaceIn, who: Writer, svc: Service
) -> Envelope[ReplaceOut]:
    """Surgical edit: fails if `old` is absent, or appears more than once without `count`."""
    session = await svc.work.session(who.org_id, sandbox_id)
    count = await session.replace(body.path, body.old, body.new, count=body.count)
    return Envelope(data=ReplaceOut(path=body.path, replacements=count))
