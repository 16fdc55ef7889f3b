"""`LocalHost`: sandboxes on this machine, from its runtime, network and agent client.

It owns the order of the steps the parts cannot know of one another: a network is made
before the sandbox that joins it and removed after the sandbox that used it; the host
pid a network plugs into comes from the runtime and never leaves this module.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable
from pathlib import Path

from sandlot.domain.host_values import (
    BackendError,
    Capabilities,
    RuntimeSandbox,
    RuntimeStatus,
    SandboxSpec,
    SandboxUsage,
)
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.domain.resources import Resources
from sandlot.host.volumes import LocalVolumes
from sandlot.network.manager import NetworkManager
from sandlot.runtime.agent_client import AgentClient
from sandlot.runtime.base import Runtime
from sandlot.runtime.disks import bytes_used


class LocalHost:
    def __init__(
        self,
        runtime: Runtime,
        network: NetworkManager | None,
        volumes: LocalVolumes,
        connect_timeout: float = 10.0,
    ) -> None:
        self.runtime = runtime
        self.network = network
        self.volumes = volumes
        self.connect_timeout = connect_timeout
        self.name = runtime.name
        self.uid_offset = runtime.uid_offset

    @property
    def on_denied(self) -> Callable[[str, str], None]:
        return self.network.on_denied if self.network is not None else _ignore

    @on_denied.setter
    def on_denied(self, report: Callable[[str, str], None]) -> None:
        if self.network is not None:
            self.network.on_denied = report

    @property
    def backends(self) -> tuple[str, ...]:
        return self.runtime.backends

    @property
    def networked(self) -> bool:
        return self.network is not None

    async def start_up(self) -> None:
        if self.network is not None:
            await self.network.start()

    async def close(self) -> None:
        if self.network is not None:
            await self.network.close()
        await self.runtime.close()
        self.volumes.close()

    async def start(
        self,
        spec: SandboxSpec,
        policy: NetworkPolicy | None = None,
        *,
        snapshot: Path | None = None,
    ) -> AgentClient:
        spec = dataclasses.replace(spec, mounts=self.volumes.bound(spec.mounts))
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
        spec = dataclasses.replace(spec, mounts=self.volumes.bound(spec.mounts))
        await self.runtime.destroy(spec.sandbox_id)
        if self.network is not None:  # the sandbox keeps its address and rules
            await self.network.unplug(spec.sandbox_id)
            spec = dataclasses.replace(spec, nameserver=str(self.network.gateway.ip))
        await self.runtime.create(spec, snapshot=snapshot)
        await self.plug(spec.sandbox_id)

    async def connect(self, sandbox_id: str) -> AgentClient:
        return await AgentClient.connect(
            self.runtime.agent_endpoint(sandbox_id), self.connect_timeout
        )

    async def destroy(self, sandbox_id: str, address: str | None = None) -> None:
        await self.runtime.destroy(sandbox_id)  # nothing may run in a network being removed
        if self.network is not None:
            await self.network.release(sandbox_id, address)

    async def update(self, sandbox_id: str, resources: Resources, cpus: str | None) -> None:
        await self.runtime.update(sandbox_id, resources, cpus)

    def capabilities(self, sandbox_id: str) -> Capabilities:
        return self.runtime.capabilities_of(sandbox_id)

    def backend_of(self, sandbox_id: str) -> str:
        return self.runtime.backend_of(sandbox_id)

    async def freeze(self, sandbox_id: str) -> None:
        await self.runtime.freeze(sandbox_id)

    async def thaw(self, sandbox_id: str) -> None:
        await self.runtime.thaw(sandbox_id)

    async def checkpoint(self, sandbox_id: str) -> None:
        await self.runtime.checkpoint(sandbox_id)

    async def restore(self, sandbox_id: str) -> None:
        await self.runtime.restore(sandbox_id)

    async def snapshot(self, sandbox_id: str, target: Path, memory: bool) -> int:
        return await self.runtime.snapshot(sandbox_id, target, memory)

    async def export_changes(self, sandbox_id: str, target: Path) -> None:
        await self.runtime.export_changes(sandbox_id, target)

    def bytes_used(self, path: Path) -> int:
        return bytes_used(path)

    async def plug(self, sandbox_id: str) -> None:
        if self.network is None:
            return
        pid = self.runtime.init_pid(sandbox_id)
        if pid is None:
            raise BackendError(f"sandbox {sandbox_id} has no init process to give a network")
        await self.network.plug(sandbox_id, pid)

    async def unplug(self, sandbox_id: str) -> None:
        if self.network is not None:
            await self.network.unplug(sandbox_id)

    async def apply_policy(self, sandbox_id: str, policy: NetworkPolicy) -> None:
        if self.network is not None:
            await self.network.apply(sandbox_id, policy)

    async def adopt_network(self, sandbox_id: str, address: str, policy: NetworkPolicy) -> None:
        if self.network is not None:
            await self.network.adopt(sandbox_id, address, policy)

    async def remove_network_leftovers(self, keep: set[str]) -> None:
        if self.network is not None:
            await self.network.remove_leftovers(keep)

    def address_of(self, sandbox_id: str) -> str | None:
        return self.network.address_of(sandbox_id) if self.network is not None else None

    def policy_of(self, sandbox_id: str) -> NetworkPolicy | None:
        return self.network.policy_of(sandbox_id) if self.network is not None else None

    async def status(self, sandbox_id: str) -> RuntimeStatus:
        return await self.runtime.status(sandbox_id)

    async def list(self) -> builtins.list[RuntimeSandbox]:
        return await self.runtime.list()

    async def traces(self, known: set[str]) -> builtins.list[str]:
        found = self.runtime.orphan_traces(known)
        if self.network is not None:
            found += await self.network.traces(known)
        return found

    def usage(self, sandbox_id: str) -> SandboxUsage:
        return self.runtime.usage(sandbox_id)

    def oom_kills(self, sandbox_id: str) -> int:
        return self.runtime.oom_kills(sandbox_id)


def _ignore(sandbox_id: str, name: str) -> None:
    """What a host without networking does with a denied name: there are none."""
