"""The interface every sandbox backend implements; `core` knows only this."""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sandlot.runtime.spec import Resources, SandboxSpec, SandboxUsage


class RuntimeStatus(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    MISSING = "missing"


@dataclass(frozen=True)
class RuntimeSandbox:
    sandbox_id: str
    status: RuntimeStatus


class BackendError(Exception):
    """A backend failed to do what was asked; the message carries the backend's own words."""


class Runtime(Protocol):
    name: str
    uid_offset: int
    """Host uid that container root maps to; templates are stored shifted by it."""

    async def create(self, spec: SandboxSpec) -> None:
        """Build the sandbox's filesystem and start its agent as PID 1."""

    async def destroy(self, sandbox_id: str) -> None:
        """Stop every process and remove everything created for the sandbox; idempotent."""

    async def update(self, sandbox_id: str, resources: Resources, cpus: str | None) -> None:
        """Apply new CPU, memory and pids limits to a running sandbox (a warm one being
        handed over). The disk keeps the size it was created with."""

    async def status(self, sandbox_id: str) -> RuntimeStatus: ...

    async def list(self) -> list[RuntimeSandbox]:
        """Sandboxes the backend still runs or holds leftovers of, by id."""

    def agent_endpoint(self, sandbox_id: str) -> Path:
        """The unix socket the sandbox's agent listens on, as seen from the host."""

    def usage(self, sandbox_id: str) -> SandboxUsage: ...

    def oom_kills(self, sandbox_id: str) -> int:
        """How many processes the memory limit has killed, without reading the rest."""

    def orphan_traces(self, known: set[str]) -> builtins.list[str]:
        """Host state named after a sandbox outside `known` that `list` does not show
        (a mount, a cgroup, a loop device): what a crash could leak."""

    async def close(self) -> None:
        """The server is stopping: drop host state that no running sandbox needs."""
