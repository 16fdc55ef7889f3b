"""Plain values the service takes and returns; the API and CLI translate them, nothing more."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandlot.domain.network_policy import NetworkPolicy
from sandlot.domain.resources import Resources
from sandlot.domain.states import SandboxStatus
from sandlot.domain.volumes import VolumeMount
from sandlot.store.tables import SandboxRow


@dataclass(frozen=True)
class CreateSandbox:
    template: str
    resources: Resources
    env: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    idle_timeout: int = 600
    timeout: int | None = None
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    password: str | None = field(default=None, repr=False)
    """For SSH logins; the service stores only its hash."""
    snapshot_id: str | None = None
    """Start from this snapshot (a branch) instead of the template's clean root."""
    runtime: str | None = None
    """The backend to run on; None: the snapshot's, else the server's default."""
    mounts: tuple[VolumeMount, ...] = ()
    """Volumes of the organisation to mount, by name; an unknown name is made."""


@dataclass(frozen=True)
class SandboxView:
    id: str
    org_id: str
    status: SandboxStatus
    status_reason: str | None
    template: str
    resources: Resources
    env: dict[str, str]
    metadata: dict[str, str]
    idle_timeout: int
    timeout: int | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    expires_at: datetime | None
    network: dict[str, Any] | None = None
    address: str | None = None
    pause_mode: str | None = None
    """How a paused sandbox is held: "checkpoint" (on disk) or "freeze" (in memory)."""
    paused_at: datetime | None = None
    paused_ms: int = 0
    """Time spent paused before the current pause, if any."""
    snapshot_id: str | None = None
    """The snapshot this sandbox was branched from."""
    runtime: str | None = None
    """The backend it runs on ("oci", "runsc")."""

    @classmethod
    def of(cls, row: SandboxRow) -> SandboxView:
        return cls(
            id=row.id,
            org_id=row.org_id,
            status=SandboxStatus(row.status),
            status_reason=row.status_reason,
            template=row.template,
            resources=Resources(vcpus=row.vcpus, memory_mb=row.memory_mb, disk_mb=row.disk_mb),
            env=dict(row.env),
            metadata=dict(row.meta),
            idle_timeout=row.idle_timeout,
            timeout=row.timeout,
            created_at=row.created_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
            expires_at=row.expires_at,
            network=row.network,
            address=row.address,
            pause_mode=row.pause_mode,
            paused_at=row.paused_at,
            paused_ms=row.paused_ms or 0,
            snapshot_id=row.snapshot_id,
            runtime=row.runtime,
        )


@dataclass(frozen=True)
class SandboxPage:
    items: list[SandboxView]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class StartProcess:
    command: str | list[str] | None
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    pty: tuple[int, int] | None = None
    max_run_after_disconnect: float | None = None
    scrollback_bytes: int | None = None
    user: str | None = None
    """Who runs it in the sandbox (NAME, UID, NAME:GROUP, UID:GID); None: the default."""


@dataclass(frozen=True)
class CommandOutcome:
    stdout: bytes
    stderr: bytes
    exit_code: int | None
    signal: str | None
    duration_ms: float
    oom_killed: bool
    truncated: bool = False
