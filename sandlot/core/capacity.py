"""Admission and placement on one host: is there room, and which CPUs should it use.

vCPUs are time-shared, so many sandboxes may share a core; a single sandbox cannot
have more vCPUs than the host has. Memory limits are reserved: their sum may not pass
host RAM times the configured overcommit factor. Pids are reserved too: every
sandbox's `pids.max` is promised, and their sum may not pass the host's
`kernel.pid_max` less a reserve for the host itself, so a tenant running sandboxes
within its quota cannot leave the host (and every other tenant) unable to fork.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sandlot.domain.resources import SANDBOX_PIDS, Resources
from sandlot.errors import ResourceExhaustedError

HOST_PIDS_RESERVED = 8192
"""Pids never promised to sandboxes: the server, its helpers and the host's own."""


@dataclass(frozen=True)
class Placed:
    """A live sandbox's claim: its memory, the CPUs it is pinned to, its pids."""

    memory_mb: int
    cpus: str | None
    pids: int = SANDBOX_PIDS


def host_pid_max() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())


def host_memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("/proc/meminfo has no MemTotal")


class Capacity:
    def __init__(self, data_dir: Path, memory_overcommit: float) -> None:
        self.data_dir = data_dir
        self.cpus = sorted(os.sched_getaffinity(0))
        self.memory_budget_mb = int(host_memory_mb() * memory_overcommit)
        self.pid_max = host_pid_max()
        self.pids_budget = max(self.pid_max - HOST_PIDS_RESERVED, 0)

    def admit(self, wanted: Resources, live: Iterable[Placed]) -> str | None:
        """Raise RESOURCE_EXHAUSTED if `wanted` does not fit; else return its cpuset."""
        placed = list(live)
        if wanted.vcpus > len(self.cpus):
            raise ResourceExhaustedError(
                f"{wanted.vcpus} vCPUs requested but this host has {len(self.cpus)}",
                details={"field": "resources.vcpus", "available": len(self.cpus)},
            )
        used_mb = sum(p.memory_mb for p in placed)
        if used_mb + wanted.memory_mb > self.memory_budget_mb:
            raise ResourceExhaustedError(
                f"{wanted.memory_mb} MiB requested but only "
                f"{max(self.memory_budget_mb - used_mb, 0)} MiB of sandbox memory is free",
                details={"field": "resources.memoryMb"},
            )
        used_pids = sum(p.pids for p in placed)
        if used_pids + wanted.pids > self.pids_budget:
            raise ResourceExhaustedError(
                f"the host's pids are all promised to running sandboxes ({used_pids} of "
                f"{self.pids_budget}, kernel.pid_max {self.pid_max} less "
                f"{HOST_PIDS_RESERVED} kept for the host); the operator can raise "
                "kernel.pid_max (scripts/setup does)",
                details={"field": "resources.pids", "available": self.pids_budget - used_pids},
            )
        free_disk_mb = shutil.disk_usage(self.data_dir).free // (1024 * 1024)
        if wanted.disk_mb > free_disk_mb:
            raise ResourceExhaustedError(
                f"{wanted.disk_mb} MiB of disk requested but {free_disk_mb} MiB is free",
                details={"field": "resources.diskMb"},
            )
        return self._place(wanted.vcpus, placed)

    def _place(self, vcpus: int, placed: list[Placed]) -> str | None:
        """Pin to the least-loaded CPUs, so `nproc` inside shows the vCPUs it was given."""
        if vcpus >= len(self.cpus):
            return None
        load: Counter[int] = Counter({cpu: 0 for cpu in self.cpus})
        for p in placed:
            for cpu in _parse_cpuset(p.cpus) if p.cpus else self.cpus:
                load[cpu] += 1
        chosen = sorted(self.cpus, key=lambda cpu: (load[cpu], cpu))[:vcpus]
        return ",".join(str(cpu) for cpu in sorted(chosen))


def _parse_cpuset(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus
