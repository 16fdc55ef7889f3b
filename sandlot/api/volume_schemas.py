"""Request and response models of workspace volumes."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from sandlot.api.schemas import Model
from sandlot.core.volumes import VolumeView
from sandlot.domain.resources import parse_size_mb
from sandlot.domain.volumes import MAX_VOLUME_MB, VOLUME_NAME


class CreateVolumeIn(Model):
    name: str = Field(pattern=VOLUME_NAME, max_length=63)
    size: str | None = Field(default=None, max_length=32, description='e.g. "20GB".')
    size_mb: int | None = Field(default=None, ge=1, le=MAX_VOLUME_MB)

    @model_validator(mode="after")
    def _one_size(self) -> CreateVolumeIn:
        if self.size is not None and self.size_mb is not None:
            raise ValueError("give the size as `size` or as `sizeMb`, not both")
        if self.size is not None:
            mb = parse_size_mb(self.size)
            if not 1 <= mb <= MAX_VOLUME_MB:
                raise ValueError(f"a volume's size must be between 1 MiB and {MAX_VOLUME_MB} MiB")
        return self

    def size_in_mb(self) -> int | None:
        return parse_size_mb(self.size) if self.size is not None else self.size_mb


class VolumeOut(Model):
    name: str
    size_mb: int
    used_bytes: int
    mounted_by: list[str] = Field(description="Sandboxes not yet ended that mount it.")
    created_at: datetime

    @classmethod
    def of(cls, view: VolumeView) -> VolumeOut:
        return cls(
            name=view.name,
            size_mb=view.size_mb,
            used_bytes=view.used_bytes,
            mounted_by=view.mounted_by,
            created_at=view.created_at,
        )
