"""Response models of templates and their builds."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict

from sandlot.api.schemas import Model
from sandlot.core.builds import BuildView
from sandlot.templates.store import Template


class TemplateOut(Model):
    name: str
    digest: str
    source: str
    """`debian` (built in), `build` (a Sandlotfile) or `import` (an image archive)."""
    built_in: bool
    layers: int
    size_bytes: int
    env: dict[str, str]
    workdir: str
    user: str
    start_command: list[str]
    ready_command: str | None
    ports: list[int]
    created_at: str

    @classmethod
    def of(cls, t: Template) -> TemplateOut:
        return cls(
            name=t.name,
            digest=t.digest,
            source=t.source,
            built_in=t.owner is None,
            layers=len(t.layers),
            size_bytes=t.size_bytes,
            env=t.env,
            workdir=t.workdir,
            user=t.user,
            start_command=list(t.start_command),
            ready_command=t.ready_command,
            ports=list(t.ports),
            created_at=t.created_at,
        )


class BuildOut(Model):
    model_config = ConfigDict(from_attributes=True)

    id: str
    template: str
    kind: str
    status: str
    """`running`, then `ready` or `failed`."""
    error: str | None
    digest: str | None
    steps: int
    cached_steps: int
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, view: BuildView) -> BuildOut:
        return cls.model_validate(view, from_attributes=True)
