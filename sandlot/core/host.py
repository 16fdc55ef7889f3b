"""The boundary between core and the machine its sandboxes run on.

Core decides (who may have a sandbox, in which state, with which limits); a `Host`
does, in coarse steps: start a sandbox with its network and agent, pause and resume
it, save its disk and memory, apply its limits and network policy, read what it uses,
list what exists, destroy it with everything it had on the host. Core reaches the
runtime and the network through here alone (an import contract says so);
`sandlot.host.LocalHost` is the one this server runs. The calls take and return plain
values (a spec, a policy, ids, paths, the values of `sandlot.domain.host_values`) so
that another host can sit behind a network hop; the one live object that crosses is
the agent connection a start or connect returns.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from sandlot.agent.protocol import EntryInfo
from sandlot.core.session import SandboxSession
from sandlot.domain.host_values import (
    Capabilities,
    RuntimeSandbox,
    RuntimeStatus,
    SandboxSpec,
    SandboxUsage,
)
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.domain.resources import Resources


class VolumeHost(Protocol):
    """Workspace volumes on the host: made, mounted where sandboxes can bind them,
    removed, read and written without a sandbox. Paths are the volume's own."""

    async def create(self, volume_id: str, size_mb: int) -> None: ...

    async def remove(self, volume_id: str) -> None: ...

    async def ensure_mounted(self, volume_id: str) -> None: ...

    def on_host(self) -> set[str]: ...

    def usage(self, volume_id: str) -> tuple[int, int]:
        """(bytes used, bytes in all)."""
        ...

    async def read(self, volume_id: str, path: str) -> AsyncIterator[bytes]:
        """The file's chunks; a missing file raises here, before any chunk."""
        ...

    async def write(
        self, volume_id: str, path: str, chunks: AsyncIterable[bytes], mode: int
    ) -> EntryInfo: ...

    async def list(self, volume_id: str, path: str) -> builtins.list[EntryInfo]: ...

    async def stat(self, volume_id: str, path: str) -> EntryInfo: ...

    async def mkdir(self, volume_id: str, path: str, parents: bool) -> EntryInfo: ...

    async def delete(self, volume_id: str, path: str, recursive: bool) -> None: ...


class Host(Protocol):
    name: str
    """The default backend: what a sandbox runs on unless it asks for another."""
    uid_offset: int
    """Host uid that container root maps to; templates are stored shifted by it."""
    on_denied: Callable[[str, str], None]
    """Called with a sandbox id and a name its policy kept it from resolving."""

    @property
    def volumes(self) -> VolumeHost: ...

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends a sandbox may be created on, the default first."""
        ...

    @property
    def networked(self) -> bool:
        """Whether sandboxes get a network (and so policies, addresses and previews)."""
        ...

    async def start_up(self) -> None:
        """Ready the host's shared parts (the bridge, the resolver) before any sandbox."""
        ...

    async def close(self) -> None:
        """The server is stopping: drop host state no running sandbox needs."""
        ...

    # ---- a sandbox's life --------------------------------------------------------------

    async def start(
        self,
        spec: SandboxSpec,
        policy: NetworkPolicy | None = None,
        *,
        snapshot: Path | None = None,
    ) -> SandboxSession:
        """Start `spec` in a network of its own under `policy` (from `snapshot`'s disk
        and memory, if given) and return its agent connection; nothing is left behind
        on failure."""
        ...

    async def restart(self, spec: SandboxSpec, snapshot: Path) -> None:
        """Make the sandbox again from `snapshot`, keeping its id, address and rules."""
        ...

    async def connect(self, sandbox_id: str) -> SandboxSession:
        """A new connection to the sandbox's agent."""
        ...

    async def destroy(self, sandbox_id: str, address: str | None = None) -> None:
        """The sandbox, then its network (`address` frees its lease); idempotent."""
        ...

    async def update(self, sandbox_id: str, resources: Resources, cpus: str | None) -> None:
        """New CPU, memory and pids limits for a running sandbox (a warm one handed over)."""
        ...

    # ---- pausing and saving ------------------------------------------------------------

    def capabilities(self, sandbox_id: str) -> Capabilities:
        """What the backend running this sandbox can do."""
        ...

    def backend_of(self, sandbox_id: str) -> str: ...

    async def freeze(self, sandbox_id: str) -> None:
        """Stop every process where it is, memory kept, until `thaw`."""
        ...

    async def thaw(self, sandbox_id: str) -> None:
        """Undo `freeze`; idempotent."""
        ...

    async def checkpoint(self, sandbox_id: str) -> None:
        """Dump the processes to disk and stop them (the agent quiesced, the network
        interface out): the sandbox holds no memory or CPU until `restore`."""
        ...

    async def restore(self, sandbox_id: str) -> None:
        """Bring back a checkpointed sandbox (its interface is plugged back apart)."""
        ...

    async def snapshot(self, sandbox_id: str, target: Path, memory: bool) -> int:
        """Save the sandbox's disk (and processes, with `memory`) into `target` without
        stopping it; returns the bytes used."""
        ...

    async def export_changes(self, sandbox_id: str, target: Path) -> None:
        """Copy what the sandbox changed in its root into the empty directory `target`,
        ending its processes (a build step's layer)."""
        ...

    def bytes_used(self, path: Path) -> int:
        """The disk a saved directory (a snapshot) takes on the host."""
        ...

    # ---- its network -------------------------------------------------------------------

    async def plug(self, sandbox_id: str) -> None:
        """Give a sandbox its network interface again (after a restore or a dump)."""
        ...

    async def unplug(self, sandbox_id: str) -> None:
        """Take its network interface out, keeping its address and rules (a dump)."""
        ...

    async def apply_policy(self, sandbox_id: str, policy: NetworkPolicy) -> None:
        """Replace the sandbox's network rules at once."""
        ...

    async def adopt_network(self, sandbox_id: str, address: str, policy: NetworkPolicy) -> None:
        """Know a sandbox's network again after a restart: its address and rules."""
        ...

    async def remove_network_leftovers(self, keep: set[str]) -> None:
        """Remove the networks of every sandbox outside `keep`."""
        ...

    def address_of(self, sandbox_id: str) -> str | None: ...

    def policy_of(self, sandbox_id: str) -> NetworkPolicy | None: ...

    # ---- what is there and what it uses ------------------------------------------------

    async def status(self, sandbox_id: str) -> RuntimeStatus: ...

    async def list(self) -> builtins.list[RuntimeSandbox]:
        """Sandboxes the host still runs or holds leftovers of."""
        ...

    async def traces(self, known: set[str]) -> builtins.list[str]:
        """One line per host leftover named after a sandbox outside `known` that `list`
        does not show (a mount, a cgroup, a netns, a lease): what a crash could leak."""
        ...

    def usage(self, sandbox_id: str) -> SandboxUsage: ...

    def oom_kills(self, sandbox_id: str) -> int:
        """How many processes the memory limit has killed, cheaply."""
        ...
