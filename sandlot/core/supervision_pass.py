"""One supervision pass over every live sandbox: end the expired, notice the ones that
died on their own, pause the idle. What to do to each is decided in `supervision.py`
from what this gathers (the store's rows, this server's connections and samples).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sandlot.core.host import Host
from sandlot.core.lifecycle import Lifecycle
from sandlot.core.live import LiveSandboxes
from sandlot.core.metrics import MetricsSampler
from sandlot.core.records import Records
from sandlot.core.sandboxes import Sandboxes
from sandlot.core.supervision import Watched, decide
from sandlot.domain.host_values import RuntimeStatus
from sandlot.domain.states import SandboxStatus


@dataclass(eq=False, kw_only=True)
class SupervisionPass:
    records: Records
    host: Host
    live: LiveSandboxes
    sandboxes: Sandboxes
    lifecycle: Lifecycle
    sampler: MetricsSampler

    async def run(self) -> None:
        """One tick: end expired sandboxes, notice ones that died on their own, pause
        idle ones (what to do to each is decided in `supervision.py`)."""
        tick = decide(self._watched(), datetime.now(UTC))
        for sandbox in tick.expire:
            await self.sandboxes.destroy(sandbox.org_id, sandbox.id, reason="timeout")
        for sandbox in tick.check_alive:
            if await self.host.status(sandbox.id) is not RuntimeStatus.RUNNING:
                await self.sandboxes.end(
                    sandbox.id, SandboxStatus.ERROR, "sandbox stopped unexpectedly"
                )
        for sandbox in tick.active:
            self.live.touch(sandbox.id)
        await self.lifecycle.pause_idle([sandbox.id for sandbox in tick.pause])

    def _watched(self) -> list[Watched]:
        """Every live sandbox as supervision sees it, from the store and this server."""
        now = time.monotonic()
        return [
            Watched(
                view.id,
                view.org_id,
                view.status,
                expires_at=view.expires_at,
                idle_timeout=view.idle_timeout,
                idle_for=self.live.idle_for(view.id, now),
                cpu_percent=self.sampler.latest.get(view.id, {}).get("cpuPercent", 0.0),
                busy=self.live.busy(view.id),
                connected=self.live.connected(view.id) is not None,
                held=bool(self.live.holds[view.id]),
                pausing=self.lifecycle.pausing(view.id),
            )
            for view in self.records.live()
        ]
