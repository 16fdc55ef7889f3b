"""The interface every sandbox backend implements; `core` knows only this."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sandlot.domain.host_values import (
    Capabilities,
    RuntimeSandbox,
    RuntimeStatus,
    SandboxSpec,
    SandboxUsage,
)
from sandlot.domain.resources import Resources


@dataclass(frozen=True)
class AgentEndpoint:
    """Where the host reaches a sandbox's agent, and how it knows it is the agent."""

    path: Path
    """The unix socket the agent listens on, as seen from the host."""
    listener: int | None = None
    """The host pid that must have made the listening socket: the sandbox's init, the
    agent itself. Root inside can make the agent stop listening and bind its own socket
    there, but not be pid 1. None where no host process inside can listen at all
    (gVisor's kernel owns every socket: the check would name its sentry)."""


class Runtime(Protocol):
    name: str
    uid_offset: int
    """Host uid that container root maps to; templates are stored shifted by it."""

    @property
    def capabilities(self) -> Capabilities:
        """The default backend's: what a sandbox gets unless it asks for another."""

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends a sandbox may be created on, the default first."""

    def backend_of(self, sandbox_id: str) -> str: ...

    def capabilities_of(self, sandbox_id: str) -> Capabilities:
        """What the backend running this sandbox can do."""

    async def create(self, spec: SandboxSpec, snapshot: Path | None = None) -> None:
        """Build the sandbox's filesystem and start its agent as PID 1; with `snapshot`
        (a directory `snapshot` wrote), start from its disk, and from its processes when
        it holds them."""

    async def freeze(self, sandbox_id: str) -> None:
        """Stop every process where it is (memory kept) until `thaw`."""

    async def thaw(self, sandbox_id: str) -> None:
        """Undo `freeze`; idempotent, and it leaves the agent listening."""

    async def checkpoint(self, sandbox_id: str) -> None:
        """Dump the processes to disk and stop them, releasing memory and CPU; the agent
        must have been quiesced. The sandbox's status becomes CHECKPOINTED."""

    async def restore(self, sandbox_id: str, images: Path | None = None) -> None:
        """Bring back a checkpointed sandbox, and wake its agent."""

    async def snapshot(self, sandbox_id: str, target: Path, memory: bool) -> int:
        """Save the sandbox's disk (and processes, with `memory`; the agent must have
        been quiesced) into `target` without stopping it; returns the bytes used."""

    async def export_changes(self, sandbox_id: str, target: Path) -> None:
        """Copy what the sandbox changed in its root (its writable layer, whiteouts
        included, in overlayfs form) into the empty directory `target`. Its processes
        are killed first: this ends its life, and the caller destroys it."""

    async def destroy(self, sandbox_id: str) -> None:
        """Stop every process and remove everything created for the sandbox; idempotent."""

    async def update(self, sandbox_id: str, resources: Resources, cpus: str | None) -> None:
        """Apply new CPU, memory and pids limits to a running sandbox (a warm one being
        handed over). The disk keeps the size it was created with."""

    async def status(self, sandbox_id: str) -> RuntimeStatus: ...

    async def list(self) -> list[RuntimeSandbox]:
        """Sandboxes the backend still runs or holds leftovers of, by id."""

    def init_pid(self, sandbox_id: str) -> int | None:
        """The host pid of the sandbox's first process, whose namespaces are its own."""

    def agent_endpoint(self, sandbox_id: str) -> AgentEndpoint:
        """The sandbox's agent socket, as seen from the host, and who must listen on it."""

    def usage(self, sandbox_id: str) -> SandboxUsage: ...

    def oom_kills(self, sandbox_id: str) -> int:
        """How many processes the memory limit has killed, without reading the rest."""

    def orphan_traces(self, known: set[str]) -> builtins.list[str]:
        """Host state named after a sandbox outside `known` that `list` does not show
        (a mount, a cgroup, a loop device): what a crash could leak."""

    async def close(self) -> None:
        """The server is stopping: drop host state that no running sandbox needs."""
