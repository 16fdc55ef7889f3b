"""Liveness, for load balancers and `sandlot doctor`; needs no key."""

from __future__ import annotations

from fastapi import APIRouter

from sandlot import __version__
from sandlot.api.schemas import Envelope, HealthOut

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> Envelope[HealthOut]:
    return Envelope(data=HealthOut(status="ok", version=__version__))
