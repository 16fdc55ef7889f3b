"""What a runtime needs to know to run one sandbox, independent of the backend."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sandlot.domain.resources import Resources


def host_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


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
