"""The boundary between core and the machine its sandboxes run on.

Core decides (who may have a sandbox, in which state, with which limits); a `Host`
does, in coarse steps: start a sandbox with its network and agent, make it again from a
snapshot in place, give it its network interface back after a restore, connect to its
agent, destroy it with everything it had on the host. `sandlot.host.LocalHost` is the
one this server runs; the calls take and return plain values (a spec, a policy, ids,
paths) so that another host can sit behind a network hop.

Not everything goes through here yet: pausing, checkpoints, snapshots, limits and
usage readings still reach the runtime directly (see `lifecycle.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sandlot.core.session import SandboxSession
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.runtime.spec import SandboxSpec


class Host(Protocol):
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

    async def plug(self, sandbox_id: str) -> None:
        """Give a sandbox just restored its network interface again."""
        ...

    async def connect(self, sandbox_id: str) -> SandboxSession:
        """A new connection to the sandbox's agent."""
        ...

    async def destroy(self, sandbox_id: str, address: str | None = None) -> None:
        """The sandbox, then its network (`address` frees its lease); idempotent."""
        ...
