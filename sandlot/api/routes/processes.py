"""Commands inside a sandbox: run and wait for the result."""

from __future__ import annotations

from fastapi import APIRouter

from sandlot.api.deps import Service, Writer
from sandlot.api.routes.sandboxes import SandboxId
from sandlot.api.schemas import Envelope, ExecIn, ExecOut

router = APIRouter(prefix="/v1/sandboxes/{sandbox_id}", tags=["processes"])


@router.post("/exec")
async def run_command(
    sandbox_id: SandboxId, body: ExecIn, who: Writer, svc: Service
) -> Envelope[ExecOut]:
    """Answers 504 SANDBOX_TIMEOUT, with the output so far in `details`, if `timeout` passes."""
    outcome = await svc.run_command(
        who.org_id, sandbox_id, body.command, cwd=body.cwd, env=body.env, timeout=body.timeout
    )
    return Envelope(data=ExecOut.of(outcome))
