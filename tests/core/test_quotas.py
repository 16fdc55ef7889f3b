from __future__ import annotations

import pytest

from sandlot.core.quotas import Quota, SnapshotQuota, check_quota, check_snapshot_quota
from sandlot.domain.resources import Resources
from sandlot.errors import ResourceExhaustedError


def r(vcpus: int, memory_mb: int) -> Resources:
    return Resources(vcpus=vcpus, memory_mb=memory_mb, disk_mb=1024)


def test_within_quota_passes() -> None:
    check_quota(Quota(3, 4, 2048), r(1, 512), [r(1, 512), r(2, 1024)])


@pytest.mark.parametrize(
    ("wanted", "held", "quota_name"),
    [
        (r(1, 128), [r(1, 128)] * 3, "sandboxes"),
        (r(3, 128), [r(2, 128)], "vcpus"),
        (r(1, 1024), [r(1, 1536)], "memoryMb"),
    ],
)
def test_each_quota_refuses_with_its_name(
    wanted: Resources, held: list[Resources], quota_name: str
) -> None:
    with pytest.raises(ResourceExhaustedError) as err:
        check_quota(Quota(3, 4, 2048), wanted, held)
    assert err.value.details["quota"] == quota_name
    assert err.value.code == "RESOURCE_EXHAUSTED" and not err.value.retryable


def test_snapshot_quota_counts_snapshots_and_storage() -> None:
    quota = SnapshotQuota(max_snapshots=2, max_storage_mb=100)
    check_snapshot_quota(quota, count=1, stored_bytes=50 * 2**20)
    with pytest.raises(ResourceExhaustedError) as by_count:
        check_snapshot_quota(quota, count=2, stored_bytes=0)
    assert by_count.value.details["quota"] == "snapshots"
    assert not by_count.value.retryable
    with pytest.raises(ResourceExhaustedError) as by_size:
        check_snapshot_quota(quota, count=0, stored_bytes=101 * 2**20)
    assert by_size.value.details["quota"] == "snapshotStorageMb"
