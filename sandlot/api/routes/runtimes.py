"""The sandbox backends this server offers and what each can do on its host."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field

from sandlot.api.deps import Reader
from sandlot.api.schemas import Envelope, Model

router = APIRouter(tags=["runtimes"])


class RuntimeOut(Model):
    model_config = ConfigDict(from_attributes=True)

    name: str = Field(description='"oci" (runc containers) or "runsc" (gVisor).')
    available: bool = Field(description="Installed on this host.")
    default: bool = Field(description="New sandboxes run on it unless they ask for another.")
    offered: bool = Field(description="A sandbox may ask for it (`runtime` on create).")
    version: str | None
    checkpoint: bool = Field(description="Pauses go to disk; rollbacks keep processes.")
    memory_snapshots: bool = Field(description="Snapshots and branches keep processes.")
    hardware_isolation: bool = Field(description="A kernel behind virtualisation hardware.")
    isolation: str = Field(description="How sandboxes are kept apart, in a few words.")
    checkpoint_problem: str | None = Field(description="Why checkpoints are off, if they are.")


@router.get("/v1/runtimes")
def runtimes(request: Request, who: Reader) -> Envelope[list[RuntimeOut]]:
    """Every backend Sandlot has, whether this host can run it, and its capabilities."""
    listed = request.app.state.runtimes
    return Envelope(data=[RuntimeOut.model_validate(info) for info in listed])
