"""Templates: list, inspect and delete them; build them from a Sandlotfile or import an
image archive, in the background, with a build id to follow."""

from __future__ import annotations

import pathlib
import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from sandlot.api.deps import Reader, Service, Writer
from sandlot.api.schemas import Envelope
from sandlot.api.template_schemas import BuildOut, TemplateOut
from sandlot.core.builds import TEMPLATE_NAME
from sandlot.errors import InvalidConfigError

router = APIRouter(tags=["templates"])

TemplateName = Annotated[str, Query(pattern=TEMPLATE_NAME, description="The new template's name.")]
ExistingName = Annotated[str, Path(pattern=TEMPLATE_NAME, description="A template's name.")]


@router.get("/v1/templates")
def list_templates(who: Reader, svc: Service) -> Envelope[list[TemplateOut]]:
    """The built-in templates and the organisation's own."""
    return Envelope(data=[TemplateOut.of(t) for t in svc.catalog.listed(who.org_id)])


@router.get("/v1/templates/builds")
def list_builds(who: Reader, svc: Service) -> Envelope[list[BuildOut]]:
    return Envelope(data=[BuildOut.of(b) for b in svc.builds.list_builds(who.org_id)])


@router.get("/v1/templates/builds/{build_id}")
def get_build(build_id: str, who: Reader, svc: Service) -> Envelope[BuildOut]:
    return Envelope(data=BuildOut.of(svc.builds.get(who.org_id, build_id)))


@router.get(
    "/v1/templates/builds/{build_id}/logs",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def build_logs(build_id: str, who: Reader, svc: Service) -> StreamingResponse:
    """The build's log from its first line, streamed until the build ends."""
    svc.builds.get(who.org_id, build_id)  # a 404 now, not in the middle of a stream
    chunks = svc.builds.follow_log(who.org_id, build_id)
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")


@router.post(
    "/v1/templates/builds",
    status_code=202,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}},
)
async def build_template(
    request: Request,
    name: TemplateName,
    who: Writer,
    svc: Service,
    file: Annotated[
        str,
        Query(
            min_length=1,
            max_length=1024,
            description="The Sandlotfile's path inside the context.",
        ),
    ] = "Sandlotfile",
    no_cache: Annotated[
        bool,
        Query(
            alias="noCache",
            description="Run every step again; its new layers replace the cached ones "
            "for later builds.",
        ),
    ] = False,
) -> Envelope[BuildOut]:
    """The body is the build context as a tar archive (gzip allowed) holding the
    Sandlotfile; the build runs in the background: follow `/logs`."""
    upload = await _receive(request, svc.builds.uploads_dir())
    view = await svc.builds.start_build(who.org_id, name, upload, file, no_cache=no_cache)
    return Envelope(data=BuildOut.of(view))


@router.post(
    "/v1/templates/imports",
    status_code=202,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}},
)
async def import_template(
    request: Request, name: TemplateName, who: Writer, svc: Service
) -> Envelope[BuildOut]:
    """The body is a `docker save` archive or an OCI image layout as a tar; the import
    runs in the background: follow `/v1/templates/builds/{id}/logs`."""
    upload = await _receive(request, svc.builds.uploads_dir())
    view = svc.builds.start_import(who.org_id, name, upload)
    return Envelope(data=BuildOut.of(view))


@router.get("/v1/templates/{name}")
def get_template(name: ExistingName, who: Reader, svc: Service) -> Envelope[TemplateOut]:
    return Envelope(data=TemplateOut.of(svc.catalog.visible(who.org_id, name)))


@router.delete("/v1/templates/{name}")
def delete_template(
    name: ExistingName,
    who: Writer,
    svc: Service,
    force: Annotated[
        bool, Query(description="Delete even while sandboxes or snapshots use it.")
    ] = False,
) -> Envelope[TemplateOut]:
    """Refused with INVALID_STATE while sandboxes or snapshots use the template."""
    template = svc.catalog.visible(who.org_id, name)
    svc.builds.delete(who.org_id, name, force)
    return Envelope(data=TemplateOut.of(template))


async def _receive(request: Request, directory: pathlib.Path) -> pathlib.Path:
    """The request body, streamed to a file the build or import then owns."""
    path = directory / f"upload-{secrets.token_hex(8)}"
    size = 0
    try:
        with path.open("wb") as f:
            chunks: AsyncIterator[bytes] = request.stream()
            async for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise InvalidConfigError("the request body is empty: send the archive as the body")
    return path
