"""The typed values the SDK hands back, mirroring the API's schema.

Fields are snake_case in Python and camelCase on the wire; unknown fields from a newer
server are ignored so an older SDK keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from sandlot.errors import InvalidConfigError

SandboxStatus = Literal["creating", "running", "paused", "stopping", "terminated", "error"]
EntryType = Literal["file", "dir", "symlink", "other"]
ProcessStatus = Literal["running", "exited"]
StreamName = Literal["stdout", "stderr", "pty"]

_STATUSES: frozenset[str] = frozenset(get_args(SandboxStatus))


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="ignore",
    )

    def to_api(self) -> dict[str, Any]:
        """The JSON object the API would send for this value (camelCase keys)."""
        return self.model_dump(mode="json", by_alias=True)


class Resources(_Model):
    """What a sandbox was given; memory and disk in MiB."""

    vcpus: int
    memory_mb: int
    disk_mb: int | None = None


class SandboxInfo(_Model):
    id: str
    status: SandboxStatus
    template: str
    resources: Resources
    env: dict[str, str] = {}
    metadata: dict[str, str] = {}
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    status_reason: str | None = None
    idle_timeout: int | None = None
    timeout: int | None = None
    expires_at: datetime | None = None
    network: dict[str, Any] | None = None
    """The egress policy and automatic preview ports, as the server applies them."""
    address: str | None = None
    """The sandbox's private IPv4 address."""
    pause_mode: str | None = None
    """While paused: "checkpoint" (on disk, no memory used) or "freeze" (in memory)."""
    paused_ms: int = 0
    snapshot_id: str | None = None
    """The snapshot this sandbox was branched from."""
    runtime: str | None = None
    """The backend it runs on ("oci", "runsc")."""
    mounts: list[MountInfo] | None = None
    """Its volumes (in a sandbox's own answers, not in lists)."""


class MountInfo(_Model):
    """A volume mounted into a sandbox."""

    workspace_id: str
    path: str
    read_only: bool = False


class VolumeInfo(_Model):
    """A workspace volume of the organisation: its size, what it holds, who mounts it."""

    name: str
    size_mb: int
    used_bytes: int
    mounted_by: list[str] = []
    created_at: datetime


class CommandResult(_Model):
    """How a command ended. A non-zero exit code is a result, not an error.

    `exit_code` is `None` when a signal ended the command; `signal` then names it.
    """

    stdout: str
    stderr: str
    exit_code: int | None
    signal: str | None = None
    duration_ms: float
    oom_killed: bool = False
    truncated: bool = False
    """The server kept only the last bytes of an output larger than its limit."""


class ProcessInfo(_Model):
    """A process started through Sandlot (in the background or on a terminal).

    The exit fields are set once `status` is "exited"; `exit_code` is `None` when a
    signal ended it, and `timed_out` says the server killed it at its deadline.
    """

    id: str
    pid: int
    command: str | list[str]
    cwd: str
    pty: bool
    started_at: datetime
    status: ProcessStatus
    exit_code: int | None = None
    signal: str | None = None
    duration_ms: float | None = None
    timed_out: bool | None = None


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """Bytes a process wrote, as they arrived: `stream` is "pty" for a terminal."""

    stream: StreamName
    data: bytes

    @property
    def text(self) -> str:
        """The bytes as UTF-8; a character split across two chunks shows as U+FFFD."""
        return self.data.decode("utf-8", "replace")


class EntryInfo(_Model):
    """A file, directory or symlink inside a sandbox; `mode` holds the permission bits."""

    name: str
    path: str
    type: EntryType
    size: int
    mode: int
    mtime: datetime
    symlink_target: str | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _fold_special_types(cls, value: object) -> object:
        # Sockets, fifos and devices show up under /dev and /run; listing those
        # directories must not fail because of them.
        if isinstance(value, str) and value not in ("file", "dir", "symlink"):
            return "other"
        return value


class SandboxUsage(_Model):
    """A reading of the sandbox's cgroup: CPU time, memory against its limit, pids, OOM kills."""

    cpu_ns: int
    memory_bytes: int
    memory_limit_bytes: int
    pids: int
    oom_kills: int
    disk_bytes: int = 0
    disk_limit_bytes: int = 0


class Metrics(_Model):
    """A sandbox's figures at one moment: rates per second, sizes in bytes."""

    at: datetime
    cpu_percent: float = 0.0
    mem_percent: float = 0.0
    mem_bytes: int = 0
    mem_limit_bytes: int = 0
    disk_bytes: int = 0
    disk_limit_bytes: int = 0
    net_rx_bytes_per_sec: float = 0.0
    net_tx_bytes_per_sec: float = 0.0
    pids: int = 0


FINAL_STATUSES: frozenset[str] = frozenset({"terminated", "error"})


class Event(_Model):
    """Something that happened to a sandbox (or, with `sandbox_id` None, to the
    organisation). `type` is "status", "metrics", "log", "exec.completed",
    "file.created", "cost.runtime" or a newer kind; `data` is the type's payload as the API sends it
    (camelCase keys). Persisted events have an increasing `id`; metrics have none."""

    id: int | None = None
    type: str
    sandbox_id: str | None = None
    at: datetime
    data: dict[str, Any] = {}

    @property
    def status(self) -> SandboxStatus | None:
        """The status a "status" event reports; `None` for other events."""
        if self.type != "status":
            return None
        value = self.data.get("status")
        return cast("SandboxStatus", value) if value in _STATUSES else None

    @property
    def is_final(self) -> bool:
        """A status event saying the sandbox has ended ("terminated" or "error")."""
        return self.status in FINAL_STATUSES

    @property
    def metrics(self) -> Metrics | None:
        """The figures a "metrics" event carries; `None` for other events."""
        if self.type != "metrics":
            return None
        return Metrics.model_validate({"at": self.at, **self.data})


class SandboxUsageRecord(_Model):
    """What one sandbox consumed in a usage period."""

    id: str
    vcpu_seconds: float = 0.0
    memory_mb_seconds: float = 0.0
    runtime_seconds: float = 0.0


class UsageTotals(_Model):
    vcpu_seconds: float = 0.0
    memory_mb_seconds: float = 0.0
    runtime_seconds: float = 0.0


class Usage(_Model):
    """What the organisation's sandboxes consumed between `start` and `end`."""

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    sandboxes: list[SandboxUsageRecord] = []
    total: UsageTotals = UsageTotals()


class ServerHealth(_Model):
    status: str
    version: str | None = None


class RuntimeInfo(_Model):
    """A sandbox backend of the server ("oci" or "runsc"), whether its host has it, and
    what it can do there."""

    name: str
    available: bool
    default: bool
    offered: bool = False
    """A sandbox may ask for it (`runtime=` on create)."""
    version: str | None = None
    checkpoint: bool
    memory_snapshots: bool
    hardware_isolation: bool
    isolation: str
    checkpoint_problem: str | None = None


class ResourceSpec(TypedDict, total=False):
    """What a sandbox asks for: `memory`/`disk` take sizes such as "4GB"."""

    vcpus: int
    memory_mb: int
    memory: str
    disk_mb: int
    disk: str


_RESOURCE_WIRE_NAMES = {
    "vcpus": "vcpus",
    "memory_mb": "memoryMb",
    "memory": "memory",
    "disk_mb": "diskMb",
    "disk": "disk",
}


def resources_to_api(resources: ResourceSpec | Mapping[str, object] | None) -> dict[str, object]:
    """Translate a resources request to the API's camelCase; camelCase keys pass as they are."""
    if resources is None:
        return {}
    accepted = {**_RESOURCE_WIRE_NAMES, **{wire: wire for wire in _RESOURCE_WIRE_NAMES.values()}}
    unknown = sorted(key for key in resources if key not in accepted)
    if unknown:
        raise InvalidConfigError(
            f"unknown resource {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(_RESOURCE_WIRE_NAMES)}",
            details={"unknown": unknown},
        )
    return {accepted[key]: value for key, value in resources.items() if value is not None}
