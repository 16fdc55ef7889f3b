"""The sampler's bookkeeping, over a host that reports fixed cgroup readings."""

from __future__ import annotations

from sandlot.core.events import EventBus
from sandlot.core.metrics import MetricsSampler, Sampled
from sandlot.domain.host_values import SandboxUsage


class Readings:
    """A host's usage readings, fixed: all the sampler reads of a host."""

    def __init__(self) -> None:
        self.cpu_ns = 0

    def usage(self, sandbox_id: str) -> SandboxUsage:
        return SandboxUsage(self.cpu_ns, 50, 100, 3, 0)


def test_partial_pass_keeps_other_sandboxes_and_complete_pass_forgets_gone_ones() -> None:
    sampler = MetricsSampler(Readings(), EventBus())
    a, b = Sampled("sbx-a", "org", 1), Sampled("sbx-b", "org", 1)
    sampler.sample([a, b])
    sampler.sample([b], complete=False)
    assert set(sampler.latest) == {"sbx-a", "sbx-b"}
    sampler.sample([b])
    assert set(sampler.latest) == {"sbx-b"}
    assert sampler.latest["sbx-b"]["memPercent"] == 50.0 and sampler.latest["sbx-b"]["pids"] == 3
