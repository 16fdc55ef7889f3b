"""What the server reads of its sandboxes for people: sampled metrics, counts by
status, an organisation's usage over a window, and one sandbox's cgroup figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandlot.core.host import Host
from sandlot.core.metrics import MetricsSampler, Sampled
from sandlot.core.records import Records
from sandlot.core.usage import UsageRecord, usage_in_window
from sandlot.domain.states import SandboxStatus, require_running
from sandlot.errors import SandboxUnavailableError
from sandlot.store import sandboxes as sandbox_rows


@dataclass(eq=False)
class Readings:
    records: Records
    host: Host
    sampler: MetricsSampler

    def sample_metrics(self) -> None:
        with self.records.db.session() as s:
            running = [
                Sampled(r.id, r.org_id, r.vcpus)
                for r in sandbox_rows.live(s)
                if r.status == SandboxStatus.RUNNING.value
            ]
        self.sampler.sample(running)

    def metrics(self, org_id: str, sandbox_id: str) -> dict[str, Any]:
        """The latest sampled figures (sampling now if none are there yet)."""
        view = self.records.get(org_id, sandbox_id)
        require_running(sandbox_id, view.status)
        latest = self.sampler.latest.get(sandbox_id)
        if latest is None:
            self.sampler.sample([Sampled(sandbox_id, org_id, view.resources.vcpus)], complete=False)
            latest = self.sampler.latest.get(sandbox_id)
        if latest is None:  # its cgroup could not be read: going, or gone
            raise SandboxUnavailableError(
                f"sandbox {sandbox_id}'s figures cannot be read now; try again",
                details={"sandboxId": sandbox_id},
            )
        return latest

    def count_by_status(self) -> dict[str, int]:
        with self.records.db.session() as s:
            return sandbox_rows.count_by_status(s)

    def usage_report(self, org_id: str, start: datetime, end: datetime) -> list[UsageRecord]:
        with self.records.db.session() as s:
            rows = sandbox_rows.overlapping(s, org_id, start, end)
            spans = [(r.id, r.vcpus, r.memory_mb, r.started_at, r.ended_at) for r in rows]
        return usage_in_window(spans, start, end)

    def usage(self, org_id: str, sandbox_id: str) -> dict[str, int]:
        view = self.records.get(org_id, sandbox_id)
        if view.status is not SandboxStatus.PAUSED:  # a paused one reads what it holds
            require_running(sandbox_id, view.status)
        u = self.host.usage(sandbox_id)
        return {
            "cpuNs": u.cpu_ns,
            "memoryBytes": u.memory_bytes,
            "memoryLimitBytes": u.memory_limit_bytes,
            "pids": u.pids,
            "oomKills": u.oom_kills,
            "diskBytes": u.disk_bytes,
            "diskLimitBytes": u.disk_limit_bytes,
        }
