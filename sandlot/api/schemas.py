"""Request and response models: the API's validation and its OpenAPI schema in one place.

Fields are camelCase on the wire (as users of other sandbox APIs expect) and snake_case
in Python.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from sandlot.agent.protocol import EntryInfo, ProcessInfo
from sandlot.core.models import CommandOutcome, CreateSandbox, SandboxView, StartProcess
from sandlot.core.ssh_access import SshKey
from sandlot.core.usage import UsageRecord
from sandlot.domain import resources as limits
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.domain.resources import Resources
from sandlot.domain.states import SandboxStatus
from sandlot.domain.volumes import MAX_MOUNTS, VolumeMount

T = TypeVar("T")

MAX_STORED_INT = 2**63 - 1
"""The store's integers are 64-bit: a larger offset or event id is refused as input
instead of failing in the database driver."""
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
USER_SPEC = r"^[A-Za-z0-9._-]+(:[A-Za-z0-9._-]+)?$"
USER_DESCRIPTION = (
    "Run as this user of the sandbox: a name or uid, optionally with a group after a colon "
    "(`alice`, `1000`, `alice:staff`, `1000:1000`), looked up in the sandbox's own "
    "/etc/passwd and /etc/group. Supplementary groups are the user's; HOME, USER and "
    "LOGNAME are the user's unless `env` sets them; the working directory defaults to the "
    "user's home when the user may not enter the default one. A uid without a passwd "
    "entry runs with that number as its group. Default: the template's user (root "
    "unless the template names another). An unknown user or group is a 400 INVALID_CONFIG."
)


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Envelope(Model, Generic[T]):
    data: T


class ErrorBody(Model):
    code: str
    message: str
    retryable: bool
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorEnvelope(Model):
    error: ErrorBody


class ResourcesIn(Model):
    vcpus: int = Field(default=limits.DEFAULT_VCPUS, ge=limits.VCPUS_MIN, le=limits.VCPUS_MAX)
    memory_mb: int | None = Field(
        default=None,
        ge=limits.MEMORY_MB_MIN,
        le=limits.MEMORY_MB_MAX,
        description="Memory limit in MiB.",
    )
    memory: str | None = Field(default=None, description='Memory limit as a size, e.g. "4GB".')
    disk_mb: int | None = Field(
        default=None, ge=limits.DISK_MB_MIN, le=limits.DISK_MB_MAX, description="Disk quota in MiB."
    )
    disk: str | None = Field(default=None, description='Disk quota as a size, e.g. "10GB".')

    @field_validator("memory")
    @classmethod
    def _memory_size(cls, text: str | None) -> str | None:
        if text is not None:
            limits.check_range(
                "memory",
                limits.parse_size_mb(text),
                limits.MEMORY_MB_MIN,
                limits.MEMORY_MB_MAX,
                " MiB",
            )
        return text

    @field_validator("disk")
    @classmethod
    def _disk_size(cls, text: str | None) -> str | None:
        if text is not None:
            limits.check_range(
                "disk", limits.parse_size_mb(text), limits.DISK_MB_MIN, limits.DISK_MB_MAX, " MiB"
            )
        return text

    @model_validator(mode="after")
    def _sizes(self) -> ResourcesIn:
        for name, raw_mb, text in (
            ("memory", self.memory_mb, self.memory),
            ("disk", self.disk_mb, self.disk),
        ):
            if raw_mb is not None and text is not None:
                raise ValueError(f"give {name} or {name}Mb, not both")
        return self

    def to_resources(self) -> Resources:
        memory = limits.parse_size_mb(self.memory) if self.memory else self.memory_mb
        disk = limits.parse_size_mb(self.disk) if self.disk else self.disk_mb
        return Resources(
            vcpus=self.vcpus,
            memory_mb=memory or limits.DEFAULT_MEMORY_MB,
            disk_mb=disk or limits.DEFAULT_DISK_MB,
        )


class EgressIn(Model):
    default: Literal["allow", "deny"] = "allow"
    allow: list[str] = Field(
        default_factory=list, description="Domains (`pypi.org`, `*.github.com`) or IPv4 CIDRs."
    )
    deny: list[str] = Field(default_factory=list, description="Wins over `allow`.")


class IngressIn(Model):
    allow_ports: list[int] | None = Field(
        default=None,
        description="Ports with an automatic public preview URL; default 3000, 3001, 5173, "
        "8000, 8080; [] turns them off.",
    )


class NetworkIn(Model):
    egress: EgressIn = Field(default_factory=EgressIn)
    ingress: IngressIn = Field(default_factory=IngressIn)

    def to_policy(self) -> NetworkPolicy:
        """Domain and CIDR syntax is checked here: INVALID_CONFIG names the bad rule."""
        return NetworkPolicy.parse(self.model_dump(by_alias=True, exclude_none=True))


class EgressPatchIn(Model):
    default: Literal["allow", "deny"] | None = None
    allow: list[str] | None = Field(default=None, description="Replaces the allow list.")
    deny: list[str] | None = Field(default=None, description="Replaces the deny list.")


class NetworkPatchIn(Model):
    """A change to a sandbox's network policy: every field left out keeps its current
    value (sending only `ingress` leaves egress exactly as it was, and the reverse)."""

    egress: EgressPatchIn | None = None
    ingress: IngressIn | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_unset=True, exclude_none=True)


class ExposeIn(Model):
    port: int = Field(ge=1, le=65535)
    auth: Literal["public", "token"] = Field(
        default="public", description="`token`: callers must show the token returned now."
    )


class PortOut(Model):
    port: int
    url: str
    auth: Literal["public", "token"]
    automatic: bool = Field(description="An automatic preview port, not exposed by a call.")
    token: str | None = Field(default=None, description="Returned once, when exposed.")
    created_at: datetime | None = None


class MountIn(Model):
    workspace_id: str = Field(
        min_length=1, max_length=63, description="A volume of the caller's organisation."
    )
    path: str = Field(min_length=1, max_length=1024, description="Absolute, e.g. /workspace.")
    read_only: bool = False

    def to_mount(self) -> VolumeMount:
        return VolumeMount(self.workspace_id, self.path, self.read_only)


class MountOut(Model):
    workspace_id: str
    path: str
    read_only: bool

    @classmethod
    def of(cls, mount: VolumeMount) -> MountOut:
        return cls(workspace_id=mount.volume, path=mount.path, read_only=mount.read_only)


class CreateSandboxIn(Model):
    template: str = Field(
        default="base", min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9._-]*$"
    )
    resources: ResourcesIn = Field(default_factory=ResourcesIn)
    env: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    mounts: list[MountIn] = Field(
        default_factory=list,
        max_length=MAX_MOUNTS,
        description="Workspace volumes to mount; the first mount of an unknown name makes "
        "it, at the default size.",
    )
    idle_timeout: int = Field(default=600, ge=0, le=7 * 24 * 3600)
    timeout: int | None = Field(
        default=None, ge=1, le=30 * 24 * 3600, description="Lifetime in seconds."
    )
    password: str | None = Field(
        default=None,
        min_length=8,
        max_length=256,
        description="Lets `ssh SANDBOX_ID@host` log in with this password; stored hashed.",
    )
    network: NetworkIn | None = Field(
        default=None, description="Egress policy and automatic preview ports."
    )
    snapshot: str | None = Field(
        default=None,
        max_length=64,
        description="Start from this snapshot (its template, resources, disk and, where "
        "it holds them, processes); `template` and `resources` are then ignored.",
    )
    runtime: str | None = Field(
        default=None,
        max_length=32,
        description='The backend to run on ("oci", "runsc"), among those `GET /v1/runtimes` '
        "lists as offered; default: the server's. A branch (`snapshot`) runs on its snapshot's.",
    )

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        return check_env(env)

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, metadata: dict[str, str]) -> dict[str, str]:
        if len(metadata) > 64 or any(len(k) > 128 or len(v) > 1024 for k, v in metadata.items()):
            raise ValueError(
                "metadata holds at most 64 keys of 128 chars with values of 1024 chars"
            )
        return metadata

    def to_request(self) -> CreateSandbox:
        return CreateSandbox(
            template=self.template,
            resources=self.resources.to_resources(),
            env=self.env,
            metadata=self.metadata,
            idle_timeout=self.idle_timeout,
            timeout=self.timeout,
            password=self.password,
            network=(self.network or NetworkIn()).to_policy(),
            runtime=self.runtime,
            mounts=tuple(m.to_mount() for m in self.mounts),
        )


ENV_MAX_VARIABLES = 512
ENV_MAX_BYTES = 256 * 1024
"""An environment is stored with its sandbox and passed to every process: kept to what
Linux itself takes comfortably (ARG_MAX is shared by argv and env)."""


def check_env(env: dict[str, str]) -> dict[str, str]:
    if len(env) > ENV_MAX_VARIABLES:
        raise ValueError(f"at most {ENV_MAX_VARIABLES} environment variables")
    size = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items())
    if size > ENV_MAX_BYTES:
        raise ValueError(f"the environment is {size} bytes; at most {ENV_MAX_BYTES}")
    bad = [k for k in env if not re.match(ENV_NAME, k)]
    if bad:
        raise ValueError(f"invalid environment variable names: {', '.join(sorted(bad))}")
    if any("\0" in v for v in env.values()):
        raise ValueError("environment values may not contain NUL bytes")
    return env


def check_no_nul(value: str | list[str] | None) -> str | list[str] | None:
    """The kernel ends every argv string and path at a NUL: refuse one rather than
    run something other than what was asked."""
    parts = [value] if isinstance(value, str) else value or []
    if any("\0" in part for part in parts):
        raise ValueError("may not contain NUL bytes")
    return value


class ResourcesOut(Model):
    model_config = ConfigDict(from_attributes=True)

    vcpus: int
    memory_mb: int
    disk_mb: int


class SandboxOut(Model):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: SandboxStatus
    status_reason: str | None
    template: str
    resources: ResourcesOut
    env: dict[str, str]
    metadata: dict[str, str]
    idle_timeout: int
    timeout: int | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    expires_at: datetime | None
    network: dict[str, Any] | None = None
    address: str | None = Field(default=None, description="The sandbox's private IPv4 address.")
    pause_mode: str | None = Field(
        default=None,
        description='While paused: "checkpoint" (processes on disk, no memory used) or '
        '"freeze" (held in memory).',
    )
    paused_ms: int = Field(default=0, description="Time spent paused in earlier pauses.")
    snapshot_id: str | None = Field(default=None, description="The snapshot it branched from.")
    runtime: str | None = Field(
        default=None, description='The backend it runs on ("oci", "runsc").'
    )
    mounts: list[MountOut] | None = Field(
        default=None, description="Its volumes (in a sandbox's own answers, not in lists)."
    )

    @classmethod
    def of(cls, view: SandboxView, mounts: list[VolumeMount] | None = None) -> SandboxOut:
        out = cls.model_validate(view, from_attributes=True)
        if mounts is not None:
            out.mounts = [MountOut.of(m) for m in mounts]
        return out


class Pagination(Model):
    limit: int
    offset: int
    total: int


class SandboxList(Model):
    data: list[SandboxOut]
    pagination: Pagination


class ExecIn(Model):
    command: str | list[str] = Field(
        description="A shell command line, or an argv list run without a shell."
    )
    cwd: str | None = Field(default=None, max_length=4096)
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(
        default=None, gt=0, le=24 * 3600, description="Seconds; default 60."
    )
    user: str | None = Field(
        default=None, max_length=64, pattern=USER_SPEC, description=USER_DESCRIPTION
    )

    @field_validator("command")
    @classmethod
    def _not_empty(cls, command: str | list[str]) -> str | list[str]:
        if not command or (isinstance(command, str) and not command.strip()):
            raise ValueError("command is empty")
        return command

    @field_validator("command", "cwd")
    @classmethod
    def _no_nul(cls, value: str | list[str] | None) -> str | list[str] | None:
        return check_no_nul(value)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        return check_env(env)


class ExecOut(Model):
    stdout: str
    stderr: str
    exit_code: int | None
    signal: str | None
    duration_ms: float
    oom_killed: bool
    truncated: bool = Field(
        description="Output passed the server's limit; stdout and stderr hold its last bytes."
    )

    @classmethod
    def of(cls, outcome: CommandOutcome) -> ExecOut:
        return cls(
            stdout=outcome.stdout.decode(errors="replace"),
            stderr=outcome.stderr.decode(errors="replace"),
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            duration_ms=outcome.duration_ms,
            oom_killed=outcome.oom_killed,
            truncated=outcome.truncated,
        )


class PtySize(Model):
    cols: int = Field(ge=1, le=1000)
    rows: int = Field(ge=1, le=1000)


class StartProcessIn(Model):
    command: str | list[str] | None = Field(
        default=None,
        description="Shell command line or argv; with `pty` and no command, a login shell.",
    )
    cwd: str | None = Field(default=None, max_length=4096)
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(
        default=None, gt=0, le=7 * 24 * 3600, description="Seconds; none by default."
    )
    pty: PtySize | None = None
    max_run_after_disconnect: float | None = Field(
        default=None, ge=0, description="Kill the process this long after its last client detaches."
    )
    scrollback_bytes: int | None = Field(default=None, ge=1024, le=64 * 1024 * 1024)
    user: str | None = Field(
        default=None, max_length=64, pattern=USER_SPEC, description=USER_DESCRIPTION
    )

    @field_validator("command", "cwd")
    @classmethod
    def _no_nul(cls, value: str | list[str] | None) -> str | list[str] | None:
        return check_no_nul(value)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        return check_env(env)

    def to_request(self) -> StartProcess:
        return StartProcess(
            command=self.command,
            cwd=self.cwd,
            env=self.env,
            timeout=self.timeout,
            pty=(self.pty.cols, self.pty.rows) if self.pty else None,
            max_run_after_disconnect=self.max_run_after_disconnect,
            scrollback_bytes=self.scrollback_bytes,
            user=self.user,
        )


class ProcessOut(Model):
    id: str
    pid: int
    command: str | list[str]
    cwd: str
    pty: bool
    started_at: datetime
    status: Literal["running", "exited"]
    exit_code: int | None = None
    signal: str | None = None
    duration_ms: float | None = None
    timed_out: bool | None = None

    @classmethod
    def of(cls, info: ProcessInfo) -> ProcessOut:
        return cls(
            id=info["process_id"],
            pid=info["pid"],
            command=info["command"],
            cwd=info["cwd"],
            pty=info["pty"],
            started_at=datetime.fromtimestamp(info["started_at"], UTC),
            status=info["status"],
            exit_code=info.get("exit_code"),
            signal=info.get("signal"),
            duration_ms=info.get("duration_ms"),
            timed_out=info.get("timed_out"),
        )


class SignalIn(Model):
    signal: str | int = Field(
        default="SIGKILL", description='A name ("SIGTERM", "TERM") or number.'
    )


class EntryOut(Model):
    name: str
    path: str
    type: Literal["file", "dir", "symlink"]
    size: int
    mode: int
    mtime: datetime
    symlink_target: str | None = None

    @classmethod
    def of(cls, entry: EntryInfo) -> EntryOut:
        return cls(
            name=entry["name"],
            path=entry["path"],
            type=entry["type"],
            size=entry["size"],
            mode=entry["mode"],
            mtime=datetime.fromtimestamp(entry["mtime"], UTC),
            symlink_target=entry["symlink_target"],
        )


class MkdirIn(Model):
    path: str = Field(min_length=1, max_length=4096)
    parents: bool = False


class ReplaceIn(Model):
    path: str = Field(min_length=1, max_length=4096)
    old: str = Field(min_length=1)
    new: str
    count: int | None = Field(default=None, ge=1)


class ReplaceOut(Model):
    path: str
    replacements: int


class RemovedOut(Model):
    path: str


class UsageOut(Model):
    cpu_ns: int
    memory_bytes: int
    memory_limit_bytes: int
    pids: int
    oom_kills: int
    disk_bytes: int = Field(description="Bytes used in the sandbox's writable layer.")
    disk_limit_bytes: int = Field(description="Size of the writable layer: the disk quota.")


class MetricsOut(Model):
    at: datetime
    cpu_percent: float = Field(description="CPU use as a percentage of the vCPU quota.")
    mem_percent: float
    mem_bytes: int
    mem_limit_bytes: int
    disk_bytes: int
    disk_limit_bytes: int
    net_rx_bytes_per_sec: float
    net_tx_bytes_per_sec: float
    pids: int


class UsageTotalsOut(Model):
    runtime_seconds: float
    vcpu_seconds: float
    memory_mb_seconds: float


class SandboxUsageOut(UsageTotalsOut):
    id: str


class UsageReportOut(Model):
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    sandboxes: list[SandboxUsageOut]
    total: UsageTotalsOut

    @classmethod
    def of(cls, start: datetime, end: datetime, records: list[UsageRecord]) -> UsageReportOut:
        rows = [
            SandboxUsageOut(
                id=r.sandbox_id,
                runtime_seconds=round(r.runtime_seconds, 3),
                vcpu_seconds=round(r.vcpu_seconds, 3),
                memory_mb_seconds=round(r.memory_mb_seconds, 3),
            )
            for r in records
        ]
        total = UsageTotalsOut(
            runtime_seconds=round(sum(r.runtime_seconds for r in records), 3),
            vcpu_seconds=round(sum(r.vcpu_seconds for r in records), 3),
            memory_mb_seconds=round(sum(r.memory_mb_seconds for r in records), 3),
        )
        return cls.model_validate({"from": start, "to": end, "sandboxes": rows, "total": total})


class HealthOut(Model):
    status: Literal["ok"]
    version: str


class SshKeyIn(Model):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
    public_key: str = Field(
        min_length=1, max_length=16 * 1024, description="An OpenSSH public key line."
    )


class SshKeyOut(Model):
    id: str
    name: str
    public_key: str
    fingerprint: str
    created_at: datetime

    @classmethod
    def of(cls, key: SshKey) -> SshKeyOut:
        return cls.model_validate(key, from_attributes=True)


class SshInfoOut(Model):
    host: str
    port: int
    username: str
    command: str = Field(description="An OpenSSH command line that opens a shell.")
