"""Workspace volumes: made, listed, deleted, and their files read and written without a
sandbox (streamed, as a sandbox's files are)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from sandlot.api.deps import Reader, Service, Writer
from sandlot.api.schemas import EntryOut, Envelope, MkdirIn, RemovedOut
from sandlot.api.volume_schemas import CreateVolumeIn, VolumeOut

router = APIRouter(prefix="/v1/volumes", tags=["volumes"])

VolumeName = Annotated[str, Path(max_length=64, description="The volume's name, e.g. my-code.")]
VolumePath = Annotated[
    str, Query(min_length=1, max_length=4096, description="Inside the volume, e.g. /notes.txt.")
]


@router.post("", status_code=201)
async def create_volume(body: CreateVolumeIn, who: Writer, svc: Service) -> Envelope[VolumeOut]:
    view = await svc.volumes.create(who.org_id, body.name, body.size_in_mb())
    return Envelope(data=VolumeOut.of(view))


@router.get("")
def list_volumes(who: Reader, svc: Service) -> Envelope[list[VolumeOut]]:
    return Envelope(data=[VolumeOut.of(v) for v in svc.volumes.of_org(who.org_id)])


@router.get("/{name}")
def get_volume(name: VolumeName, who: Reader, svc: Service) -> Envelope[VolumeOut]:
    return Envelope(data=VolumeOut.of(svc.volumes.get(who.org_id, name)))


@router.delete("/{name}")
async def delete_volume(
    name: VolumeName, who: Writer, svc: Service, force: bool = False
) -> Envelope[RemovedOut]:
    """Refused (INVALID_STATE) while a sandbox that is not yet ended mounts it; with
    `force`, those sandboxes are destroyed first."""
    if force:
        for sandbox_id in svc.volumes.get(who.org_id, name).mounted_by:
            await svc.sandboxes.destroy(who.org_id, sandbox_id)
    await svc.volumes.delete(who.org_id, name)
    return Envelope(data=RemovedOut(path=name))


@router.get(
    "/{name}/files",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def read_file(
    name: VolumeName, path: VolumePath, who: Reader, svc: Service
) -> StreamingResponse:
    chunks = await svc.volumes.read(who.org_id, name, path)
    return StreamingResponse(chunks, media_type="application/octet-stream")


@router.put(
    "/{name}/files", openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}}
)
async def write_file(
    name: VolumeName,
    path: VolumePath,
    request: Request,
    who: Writer,
    svc: Service,
    mode: Annotated[int | None, Query(ge=0, le=0o7777)] = None,
) -> Envelope[EntryOut]:
    """The request body is the file's content; parent directories are created."""
    entry = await svc.volumes.write(who.org_id, name, path, request.stream(), mode)
    return Envelope(data=EntryOut.of(entry))


@router.delete("/{name}/files")
async def remove_file(
    name: VolumeName, path: VolumePath, who: Writer, svc: Service, recursive: bool = False
) -> Envelope[RemovedOut]:
    await svc.volumes.remove_file(who.org_id, name, path, recursive)
    return Envelope(data=RemovedOut(path=path))


@router.get("/{name}/files/list")
async def list_files(
    name: VolumeName, path: VolumePath, who: Reader, svc: Service
) -> Envelope[list[EntryOut]]:
    entries = await svc.volumes.list_files(who.org_id, name, path)
    return Envelope(data=[EntryOut.of(e) for e in entries])


@router.get("/{name}/files/stat")
async def stat_file(
    name: VolumeName, path: VolumePath, who: Reader, svc: Service
) -> Envelope[EntryOut]:
    return Envelope(data=EntryOut.of(await svc.volumes.stat_file(who.org_id, name, path)))


@router.post("/{name}/files/mkdir")
async def mkdir(name: VolumeName, body: MkdirIn, who: Writer, svc: Service) -> Envelope[EntryOut]:
    entry = await svc.volumes.mkdir(who.org_id, name, body.path, body.parents)
    return Envelope(data=EntryOut.of(entry))
