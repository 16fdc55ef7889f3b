"""Request and response models of pause, resume, lifetimes, snapshots and branches."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field, field_validator

from sandlot.api.schemas import Model, ResourcesOut, check_env
from sandlot.core.patches import PatchView
from sandlot.core.snapshot_store import SnapshotView

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class TimeoutIn(Model):
    timeout: int = Field(
        ge=0, le=30 * 24 * 3600, description="Lifetime in seconds from now; 0 removes it."
    )


class SnapshotIn(Model):
    name: str | None = Field(default=None, min_length=1, max_length=128, pattern=NAME_PATTERN)
    description: str | None = Field(default=None, max_length=1024)
    memory: bool | None = Field(
        default=None,
        description="Also save the processes' memory (needs CRIU on the server); "
        "by default, wherever the server can.",
    )


class SnapshotOut(Model):
    model_config = ConfigDict(from_attributes=True)

    id: str
    sandbox_id: str
    name: str
    description: str | None
    template: str
    resources: ResourcesOut
    has_memory: bool
    size_bytes: int
    revision: int
    created_at: datetime

    @classmethod
    def of(cls, view: SnapshotView) -> SnapshotOut:
        return cls.model_validate(view, from_attributes=True)


class RollbackIn(Model):
    snapshot: str = Field(min_length=1, max_length=128, description="Snapshot name or id.")


class BranchIn(Model):
    snapshot: str = Field(min_length=1, max_length=128, description="Snapshot name or id.")
    name: str | None = Field(
        default=None, max_length=128, description="Stored as the `name` metadata key."
    )
    metadata: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    idle_timeout: int = Field(default=600, ge=0, le=7 * 24 * 3600)
    timeout: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        return check_env(env)

    def full_metadata(self) -> dict[str, str]:
        return {**self.metadata, **({"name": self.name} if self.name else {})}


class PatchIn(Model):
    script: str = Field(min_length=1, max_length=256 * 1024, description="Run with bash.")
    description: str | None = Field(default=None, max_length=1024)


class PatchOut(Model):
    model_config = ConfigDict(from_attributes=True)

    id: str
    snapshot_id: str
    revision: int = Field(description="The snapshot revision this patch made (or failed at).")
    script: str
    description: str | None
    status: str = Field(description='"applied", or "failed" (the snapshot is unchanged).')
    exit_code: int | None
    output: str | None = Field(description="The tail of the script's output.")
    created_at: datetime

    @classmethod
    def of(cls, view: PatchView) -> PatchOut:
        return cls.model_validate(view, from_attributes=True)
