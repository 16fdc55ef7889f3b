"""What sandboxes cost: sandbox-seconds by vCPU and memory within a time window."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class UsageRecord:
    sandbox_id: str
    runtime_seconds: float
    vcpu_seconds: float
    memory_mb_seconds: float


def usage_in_window(
    sandboxes: Iterable[tuple[str, int, int, datetime | None, datetime | None]],
    start: datetime,
    end: datetime,
) -> list[UsageRecord]:
    """Each (id, vcpus, memory_mb, started_at, ended_at) clipped to [start, end];
    a sandbox still running counts up to `end`."""
    records = []
    for sandbox_id, vcpus, memory_mb, started, ended in sandboxes:
        if started is None:
            continue
        overlap = (min(ended or end, end) - max(started, start)).total_seconds()
        if overlap <= 0:
            continue
        records.append(UsageRecord(sandbox_id, overlap, overlap * vcpus, overlap * memory_mb))
    return records
