"""A sandbox's network policy and the ports it exposes through preview URLs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from sandlot.api.deps import Reader, Service, Writer
from sandlot.api.routes.sandboxes import SandboxId
from sandlot.api.schemas import Envelope, ExposeIn, NetworkPatchIn, PortOut, SandboxOut
from sandlot.core.previews import Exposure

router = APIRouter(prefix="/v1/sandboxes/{sandbox_id}", tags=["network"])

PortNumber = Annotated[int, Path(ge=1, le=65535)]


@router.patch("/network")
async def update_network(
    sandbox_id: SandboxId, body: NetworkPatchIn, who: Writer, svc: Service
) -> Envelope[SandboxOut]:
    """Change the egress policy (and automatic ports) of a running sandbox at once.
    A merge: what the body leaves out stays as it is."""
    view = await svc.network.update(who.org_id, sandbox_id, body.changes())
    return Envelope(data=SandboxOut.of(view))


@router.get("/ports")
def list_ports(sandbox_id: SandboxId, who: Reader, svc: Service) -> Envelope[list[PortOut]]:
    return Envelope(data=[_out(e) for e in svc.network.ports(who.org_id, sandbox_id)])


@router.post("/ports", status_code=201)
def expose_port(
    sandbox_id: SandboxId, body: ExposeIn, who: Writer, svc: Service
) -> Envelope[PortOut]:
    """A preview URL for the port; with `auth: token` the token is in this answer only."""
    exposure, token = svc.network.expose_port(who.org_id, sandbox_id, body.port, body.auth)
    return Envelope(data=_out(exposure, token))


@router.delete("/ports/{port}")
def close_port(
    sandbox_id: SandboxId, port: PortNumber, who: Writer, svc: Service
) -> Envelope[PortOut]:
    exposure = next((e for e in svc.network.ports(who.org_id, sandbox_id) if e.port == port), None)
    svc.network.close_port(who.org_id, sandbox_id, port)
    assert exposure is not None  # close_port raised PORT_NOT_EXPOSED otherwise
    return Envelope(data=_out(exposure))


def _out(exposure: Exposure, token: str | None = None) -> PortOut:
    return PortOut(
        port=exposure.port,
        url=exposure.url,
        auth=exposure.auth,
        automatic=exposure.automatic,
        token=token,
        created_at=exposure.created_at,
    )
