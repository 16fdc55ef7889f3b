"""What core and a host say to each other of one sandbox: what to run it from, what
state the host finds it in, what it uses, what its backend can do, and how a backend
says it failed.

Plain values, so a host can sit behind a network hop (see `sandlot.core.host`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from sandlot.domain.resources import Resources


class RuntimeStatus(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    CHECKPOINTED = "checkpointed"
    """Processes dumped to disk and stopped; `restore` brings them back."""
    STOPPED = "stopped"
    MISSING = "missing"


@dataclass(frozen=True)
class MountSpec:
    """A volume bound into a sandbox: which, where, and whether read-only. The host
    knows where the volume lives; `source` is filled in by it, never by core."""

    volume_id: str
    path: str
    read_only: bool = False
    source: str | None = None


@dataclass(frozen=True)
class SandboxSpec:
    """A template's root filesystem plus everything that differs per sandbox."""

    sandbox_id: str
    layers: tuple[Path, ...]
    """Read-only root layers, top first; the top one carries the agent's Python."""
    resources: Resources
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/root"
    cpus: str | None = None  # cpuset, e.g. "0-1"; None lets the kernel place it
    nameserver: str | None = None
    """The resolver written to /etc/resolv.conf; None keeps the template's."""
    runtime: str | None = None
    """The backend to run it on; None: a snapshot's own, else the server's default."""
    mounts: tuple[MountSpec, ...] = ()


@dataclass(frozen=True)
class SandboxUsage:
    """A point-in-time reading of a sandbox's cgroup."""

    cpu_ns: int
    memory_bytes: int
    memory_limit_bytes: int
    pids: int
    oom_kills: int
    disk_bytes: int = 0
    disk_limit_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
    """Counters of the sandbox's network interfaces other than loopback."""


@dataclass(frozen=True)
class RuntimeSandbox:
    sandbox_id: str
    status: RuntimeStatus


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do on this host: listed by `GET /v1/runtimes`, and what the
    service checks before asking for something the backend would fail at."""

    checkpoint: bool
    """Pause to disk, and snapshots, rollbacks and branches that keep processes."""
    hardware_isolation: bool
    """A separate kernel behind virtualisation hardware (a microVM), not just a separate one."""
    live_limits: bool
    """New CPU and memory limits apply to a running sandbox (what a warm pool hands over)."""
    isolation: str
    """How sandboxes are kept apart, in a few words."""
    checkpoint_problem: str | None = None
    """Why `checkpoint` is off, in words an operator can act on."""


class BackendError(Exception):
    """A backend failed to do what was asked. The message is what a tenant may read, so
    it names no host path or pid; `detail` is for the operator alone: the tool's own
    output (runc's, CRIU's log), which names both."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail
