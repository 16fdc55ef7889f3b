"""Per-organisation quotas: how much of the host one tenant may hold at once.

A quota is a policy, not a shortage: going over it answers RESOURCE_EXHAUSTED with
`retryable` false (waiting will not help until the tenant's own sandboxes end).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sandlot.domain.resources import Resources
from sandlot.errors import ResourceExhaustedError


@dataclass(frozen=True)
class Quota:
    max_sandboxes: int
    max_vcpus: int
    max_memory_mb: int


def check_quota(quota: Quota, wanted: Resources, held: Iterable[Resources]) -> None:
    """Raise if `wanted` on top of what the organisation `held` passes its quota."""
    live = list(held)
    over = [
        ("sandboxes", len(live) + 1, quota.max_sandboxes),
        ("vcpus", sum(r.vcpus for r in live) + wanted.vcpus, quota.max_vcpus),
        ("memoryMb", sum(r.memory_mb for r in live) + wanted.memory_mb, quota.max_memory_mb),
    ]
    for name, total, limit in over:
        if total > limit:
            raise ResourceExhaustedError(
                f"this organisation's quota allows {limit} {name} at once and this sandbox "
                f"would make {total}; destroy sandboxes or ask the operator to raise it",
                details={"quota": name, "limit": limit, "wouldUse": total},
                retryable=False,
            )


@dataclass(frozen=True)
class SnapshotQuota:
    max_snapshots: int
    max_storage_mb: int


def check_snapshot_quota(quota: SnapshotQuota, count: int, stored_bytes: int) -> None:
    """Raise if one more snapshot would pass the organisation's count, or if the storage
    its snapshots hold (in whole MiB) is past its quota already: a snapshot's size is
    known only once taken, so storage is checked before, against what is held."""
    over = [
        ("snapshots", count + 1, quota.max_snapshots),
        ("snapshotStorageMb", stored_bytes // 2**20, quota.max_storage_mb),
    ]
    for name, total, limit in over:
        if total > limit:
            raise ResourceExhaustedError(
                f"this organisation's quota allows {limit} {name} and a new snapshot would "
                f"make {total}; delete snapshots or ask the operator to raise it",
                details={"quota": name, "limit": limit, "wouldUse": total},
                retryable=False,
            )
