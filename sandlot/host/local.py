"""`LocalHost`: sandboxes on this machine, from its runtime, network and agent client."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sandlot.domain.network_policy import NetworkPolicy
from sandlot.network.manager import NetworkManager
from sandlot.runtime.agent_client import AgentClient
from sandlot.runtime.base import BackendError, Runtime
from sandlot.runtime.spec import SandboxSpec


class LocalHost:
    def __init__(
        self, runtime: Runtime, network: NetworkManager | None, connect_timeout: float = 10.0
    ) -> None:
        self.runtime = runtime
        self.network = network
        self.connect_timeout = connect_timeout

    async def start(
        self,
        spec: SandboxSpec,
        policy: NetworkPolicy | None = None,
        *,
        snapshot: Path | None = None,
    ) -> AgentClient:
        try:
            if self.network is not None:
                made = await self.network.prepare(spec.sandbox_id, policy or NetworkPolicy())
                spec = dataclasses.replace(spec, nameserver=made.nameserver)
            await self.runtime.create(spec, snapshot=snapshot)
            await self.plug(spec.sandbox_id)
            return await self.connect(spec.sandbox_id)
        except BaseException:
            await self.destroy(spec.sandbox_id)
            raise

    async def restart(self, spec: SandboxSpec, snapshot: Path) -> None:
        await self.runtime.destroy(spec.sandbox_id)
        if self.network is not None:  # the sandbox keeps its address and rules
            await self.network.unplug(spec.sandbox_id)
            spec = dataclasses.replace(spec, nameserver=str(self.network.gateway.ip))
        await self.runtime.create(spec, snapshot=snapshot)
        await self.plug(spec.sandbox_id)

    async def plug(self, sandbox_id: str) -> None:
        if self.network is None:
            return
        pid = self.runtime.init_pid(sandbox_id)
        if pid is None:
            raise BackendError(f"sandbox {sandbox_id} has no init process to give a network")
        await self.network.plug(sandbox_id, pid)

    async def connect(self, sandbox_id: str) -> AgentClient:
        return await AgentClient.connect(
            self.runtime.agent_endpoint(sandbox_id), self.connect_timeout
        )

    async def destroy(self, sandbox_id: str, address: str | None = None) -> None:
        await self.runtime.destroy(sandbox_id)  # nothing may run in a network being removed
        if self.network is not None:
            await self.network.release(sandbox_id, address)
