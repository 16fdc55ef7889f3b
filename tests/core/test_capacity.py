from __future__ import annotations

from pathlib import Path

import pytest

from sandlot.core.capacity import Capacity, Placed
from sandlot.domain.resources import Resources
from sandlot.errors import ResourceExhaustedError


def capacity(tmp_path: Path, cpus: list[int], memory_mb: int) -> Capacity:
    cap = Capacity(tmp_path, 1.0)
    cap.cpus = cpus
    cap.memory_budget_mb = memory_mb
    return cap


def test_too_many_vcpus_is_exhausted_and_retryable(tmp_path: Path) -> None:
    cap = capacity(tmp_path, [0, 1], 4096)
    with pytest.raises(ResourceExhaustedError) as err:
        cap.admit(Resources(vcpus=4, memory_mb=256, disk_mb=1024), [])
    assert err.value.retryable and err.value.details["field"] == "resources.vcpus"


def test_memory_budget_counts_live_sandboxes(tmp_path: Path) -> None:
    cap = capacity(tmp_path, [0, 1], 1024)
    live = [Placed(512, "0"), Placed(256, "1")]
    cap.admit(Resources(vcpus=1, memory_mb=256, disk_mb=1024), live)
    with pytest.raises(ResourceExhaustedError, match="only 256 MiB"):
        cap.admit(Resources(vcpus=1, memory_mb=512, disk_mb=1024), live)


def test_disk_beyond_free_space_is_exhausted(tmp_path: Path) -> None:
    cap = capacity(tmp_path, [0, 1], 4096)
    with pytest.raises(ResourceExhaustedError, match="disk"):
        cap.admit(Resources(vcpus=1, memory_mb=256, disk_mb=2**40), [])


def test_placement_spreads_over_least_loaded_cpus(tmp_path: Path) -> None:
    cap = capacity(tmp_path, [0, 1, 2, 3], 1 << 20)
    res = Resources(vcpus=1, memory_mb=128, disk_mb=1024)
    assert cap.admit(res, []) == "0"
    assert cap.admit(res, [Placed(128, "0")]) == "1"
    assert cap.admit(Resources(vcpus=2, memory_mb=128, disk_mb=1024), [Placed(128, "0,1")]) == "2,3"
    assert cap.admit(Resources(vcpus=4, memory_mb=128, disk_mb=1024), []) is None


def test_pids_promised_to_sandboxes_stay_within_the_hosts_budget(tmp_path: Path) -> None:
    """Eight sandboxes of 4096 pids each exhausted a host of kernel.pid_max 32768."""
    cap = capacity(tmp_path, [0, 1], 1 << 20)
    cap.pid_max, cap.pids_budget = 32768, 32768 - 8192
    live = [Placed(128, None)] * 5  # 5 x 4096 = 20480 of 24576
    cap.admit(Resources(vcpus=1, memory_mb=128, disk_mb=1024), live)
    with pytest.raises(ResourceExhaustedError, match="pids are all promised") as err:
        cap.admit(Resources(vcpus=1, memory_mb=128, disk_mb=1024), [*live, Placed(128, None)])
    assert err.value.retryable and err.value.details["field"] == "resources.pids"
