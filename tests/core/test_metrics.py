"""The sampler's bookkeeping, over a runtime that reports fixed cgroup readings."""

from __future__ import annotations

from pathlib import Path

from sandlot.core.events import EventBus
from sandlot.core.metrics import MetricsSampler, Sampled
from sandlot.domain.resources import Resources
from sandlot.runtime.base import RuntimeSandbox, RuntimeStatus
from sandlot.runtime.spec import SandboxSpec, SandboxUsage


class ReadingsRuntime:
    """Only `usage` is exercised by the sampler; the rest of the interface is unused."""

    name = "readings"
    uid_offset = 0

    def __init__(self) -> None:
        self.cpu_ns = 0

    def usage(self, sandbox_id: str) -> SandboxUsage:
        return SandboxUsage(self.cpu_ns, 50, 100, 3, 0)

    def oom_kills(self, sandbox_id: str) -> int:
        return 0

    async def create(self, spec: SandboxSpec) -> None: ...
    async def destroy(self, sandbox_id: str) -> None: ...
    async def update(self, sandbox_id: str, resources: Resources, cpus: str | None) -> None: ...
    async def status(self, sandbox_id: str) -> RuntimeStatus:
        return RuntimeStatus.RUNNING

    async def list(self) -> list[RuntimeSandbox]:
        return []

    def agent_endpoint(self, sandbox_id: str) -> Path:
        return Path("/nonexistent")

    def orphan_traces(self, known: set[str]) -> list[str]:
        return []

    async def close(self) -> None: ...


def test_partial_pass_keeps_other_sandboxes_and_complete_pass_forgets_gone_ones() -> None:
    sampler = MetricsSampler(ReadingsRuntime(), EventBus())
    a, b = Sampled("sbx-a", "org", 1), Sampled("sbx-b", "org", 1)
    sampler.sample([a, b])
    sampler.sample([b], complete=False)
    assert set(sampler.latest) == {"sbx-a", "sbx-b"}
    sampler.sample([b])
    assert set(sampler.latest) == {"sbx-b"}
    assert sampler.latest["sbx-b"]["memPercent"] == 50.0 and sampler.latest["sbx-b"]["pids"] == 3
