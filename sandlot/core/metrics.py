"""Resource figures of running sandboxes, sampled once per interval for all of them.

One pass reads each running sandbox's cgroup, disk and network counters, turns the
deltas since the previous pass into rates, keeps the latest figures (for the metrics
route and Prometheus) and publishes them as `metrics` events. Subscribers share the
pass; none of them triggers one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sandlot.core.events import Event, EventBus
from sandlot.domain.host_values import SandboxUsage


class UsageReader(Protocol):
    """Where readings come from: the host (see `core/host.py`)."""

    def usage(self, sandbox_id: str) -> SandboxUsage: ...


@dataclass(frozen=True)
class Sampled:
    """A running sandbox as the sampler needs it."""

    sandbox_id: str
    org_id: str
    vcpus: int


@dataclass(frozen=True)
class _Reading:
    at: float
    usage: SandboxUsage


class MetricsSampler:
    def __init__(self, host: UsageReader, events: EventBus) -> None:
        self.host = host
        self.events = events
        self.latest: dict[str, dict[str, Any]] = {}
        self.owners: dict[str, str] = {}
        self._previous: dict[str, _Reading] = {}

    def sample(self, running: list[Sampled], *, complete: bool = True) -> None:
        """Read `running`; a `complete` pass (all running sandboxes) also forgets the
        state of sandboxes no longer in it, a partial one leaves the others alone."""
        now = time.monotonic()
        seen = set()
        for sbx in running:
            seen.add(sbx.sandbox_id)
            try:
                usage = self.host.usage(sbx.sandbox_id)
            except OSError:
                continue  # destroyed between listing and reading
            figures = self._figures(sbx, usage, self._previous.get(sbx.sandbox_id), now)
            self._previous[sbx.sandbox_id] = _Reading(now, usage)
            self.latest[sbx.sandbox_id] = figures
            self.owners[sbx.sandbox_id] = sbx.org_id
            self.events.publish(Event("metrics", sbx.sandbox_id, sbx.org_id, figures))
        for gone in set(self._previous) - seen if complete else ():
            self._previous.pop(gone, None)
            self.latest.pop(gone, None)
            self.owners.pop(gone, None)

    @staticmethod
    def _figures(
        sbx: Sampled, usage: SandboxUsage, before: _Reading | None, now: float
    ) -> dict[str, Any]:
        cpu = rx = tx = 0.0
        if before is not None and now > before.at:
            elapsed = now - before.at
            cpu = (usage.cpu_ns - before.usage.cpu_ns) / (elapsed * 1e9 * sbx.vcpus) * 100
            rx = (usage.net_rx_bytes - before.usage.net_rx_bytes) / elapsed
            tx = (usage.net_tx_bytes - before.usage.net_tx_bytes) / elapsed
        return {
            "at": datetime.now(UTC).isoformat(),
            "cpuPercent": round(max(cpu, 0.0), 2),
            # No limit read (cgroup "max", or unreadable): no share to give.
            "memPercent": round(usage.memory_bytes / usage.memory_limit_bytes * 100, 2)
            if usage.memory_limit_bytes
            else 0.0,
            "memBytes": usage.memory_bytes,
            "memLimitBytes": usage.memory_limit_bytes,
            "diskBytes": usage.disk_bytes,
            "diskLimitBytes": usage.disk_limit_bytes,
            "netRxBytesPerSec": round(max(rx, 0.0), 1),
            "netTxBytesPerSec": round(max(tx, 0.0), 1),
            "pids": usage.pids,
        }
