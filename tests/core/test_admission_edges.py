"""Admission's edges: exactly at a limit, one past it, and what a refusal tells the caller.

`test_capacity.py`, `test_quotas.py` and `test_admission.py` show that each limit is
enforced. These tests pin down where: a request that lands exactly on a limit is
admitted and one unit more is refused, for every limit the host and a quota have. They
also pin down how the caller learns of a refusal: always RESOURCE_EXHAUSTED (503), but
retryable for the host's shortage (room frees up as anyone's sandboxes end) and not
retryable for a quota (only the tenant's own sandboxes ending helps), with details
naming the limit. And they pin down what holds room: paused and stopping sandboxes do,
other organisations' sandboxes take host room but not quota, and a sandbox that ended
gives both back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from sandlot.core import capacity as capacity_module
from sandlot.core.admission import Admission
from sandlot.core.capacity import HOST_PIDS_RESERVED, Capacity, Placed
from sandlot.core.models import CreateSandbox
from sandlot.core.passwords import verify_password
from sandlot.core.quotas import Quota, SnapshotQuota, check_quota, check_snapshot_quota
from sandlot.domain.resources import SANDBOX_PIDS, Resources
from sandlot.domain.states import SandboxStatus
from sandlot.errors import ResourceExhaustedError
from sandlot.store import keys
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database
from sandlot.store.tables import Org
from sandlot.templates.store import Template

MIB = 1024 * 1024
TEMPLATE = Template("base", "d1", (Path("/layers/base"),))
FREE_DISK_MB = 4096


def res(vcpus: int = 1, memory_mb: int = 128, disk_mb: int = 1024, pids: int = 0) -> Resources:
    return Resources(vcpus, memory_mb, disk_mb, pids or SANDBOX_PIDS)


@pytest.fixture
def free_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The data directory's free space, fixed, so the disk limit has an exact edge."""
    usage = SimpleNamespace(free=FREE_DISK_MB * MIB)
    fixed = SimpleNamespace(disk_usage=lambda _path: usage)
    monkeypatch.setattr(capacity_module, "shutil", fixed)


def host(tmp_path: Path, cpus: int = 4, memory_mb: int = 2048, pid_slots: int = 3) -> Capacity:
    cap = Capacity(tmp_path, 1.0)
    cap.cpus = list(range(cpus))
    cap.memory_budget_mb = memory_mb
    cap.pids_budget = pid_slots * SANDBOX_PIDS
    return cap


def refused(call: Callable[[], object]) -> ResourceExhaustedError:
    with pytest.raises(ResourceExhaustedError) as err:
        call()
    assert (err.value.code, err.value.status) == ("RESOURCE_EXHAUSTED", 503)
    return err.value


# ---- the host's capacity ---------------------------------------------------------------

LIVE = [Placed(1024, "0")]  # half the memory, a third of the pids


@pytest.mark.parametrize(
    ("field", "at_limit", "one_over"),
    [
        ("resources.vcpus", res(vcpus=4), res(vcpus=5)),
        ("resources.memoryMb", res(memory_mb=1024), res(memory_mb=1025)),
        ("resources.pids", res(pids=2 * SANDBOX_PIDS), res(pids=2 * SANDBOX_PIDS + 1)),
        ("resources.diskMb", res(disk_mb=FREE_DISK_MB), res(disk_mb=FREE_DISK_MB + 1)),
    ],
)
@pytest.mark.usefixtures("free_disk")
def test_the_host_admits_exactly_its_room_and_refuses_one_more_retryably(
    tmp_path: Path, field: str, at_limit: Resources, one_over: Resources
) -> None:
    cap = host(tmp_path)
    cap.admit(at_limit, LIVE)
    err = refused(lambda: cap.admit(one_over, LIVE))
    assert err.details["field"] == field
    assert err.retryable is True  # room frees up as any sandbox ends
    assert err.to_dict()["retryable"] is True and err.to_dict()["details"] == err.details


@pytest.mark.usefixtures("free_disk")
def test_the_first_limit_a_request_fails_is_the_one_reported(tmp_path: Path) -> None:
    cap = host(tmp_path)
    wanted = res(vcpus=9, memory_mb=9999, disk_mb=FREE_DISK_MB * 2, pids=10**6)
    order: list[str] = []
    for fix in ({"vcpus": 1}, {"memory_mb": 128}, {"pids": SANDBOX_PIDS}, {"disk_mb": 1024}):
        with pytest.raises(ResourceExhaustedError) as err:
            cap.admit(wanted, LIVE)
        order.append(err.value.details["field"])
        wanted = dataclasses.replace(wanted, **fix)
    assert order == ["resources.vcpus", "resources.memoryMb", "resources.pids", "resources.diskMb"]
    assert cap.admit(wanted, LIVE) == "1"


def test_free_memory_is_never_reported_below_zero(tmp_path: Path) -> None:
    """A restart with a lower overcommit can leave live sandboxes over the new budget."""
    cap = host(tmp_path, memory_mb=1024)
    err = refused(lambda: cap.admit(res(), [Placed(2048, None)]))
    assert "only 0 MiB" in err.message


def test_refused_pids_say_how_many_are_still_free(tmp_path: Path) -> None:
    cap = host(tmp_path, pid_slots=2)
    err = refused(lambda: cap.admit(res(pids=SANDBOX_PIDS + 1), LIVE))
    assert err.details["available"] == SANDBOX_PIDS


@pytest.mark.parametrize(("factor", "budget"), [(0.5, 500), (1.0, 1000), (1.5, 1500), (3.0, 3000)])
def test_memory_overcommit_scales_the_budget_and_its_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factor: float, budget: int
) -> None:
    monkeypatch.setattr(capacity_module, "host_memory_mb", lambda: 1000)
    cap = Capacity(tmp_path, factor)
    assert cap.memory_budget_mb == budget
    live = [Placed(budget // 2, None, 0)]
    cap.admit(res(memory_mb=budget - budget // 2), live)
    refused(lambda: cap.admit(res(memory_mb=budget - budget // 2 + 1), live))


@pytest.mark.parametrize(
    ("pid_max", "budget"), [(4096, 0), (HOST_PIDS_RESERVED, 0), (40960, 32768)]
)
def test_the_pids_budget_keeps_the_hosts_reserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pid_max: int, budget: int
) -> None:
    monkeypatch.setattr(capacity_module, "host_pid_max", lambda: pid_max)
    cap = Capacity(tmp_path, 1.0)
    assert (cap.pid_max, cap.pids_budget) == (pid_max, budget)
    if budget == 0:  # a host whose pid_max was never raised takes no sandbox at all
        assert refused(lambda: cap.admit(res(), [])).details["field"] == "resources.pids"


@pytest.mark.parametrize(
    ("live", "vcpus", "cpus"),
    [
        ([Placed(128, "0-2")], 1, "3"),  # a range counts each CPU in it
        ([Placed(128, "0-1,3")], 2, "2,4"),
        ([Placed(128, None)], 2, "0,1"),  # unpinned loads every CPU alike
        ([Placed(128, "4"), Placed(128, "0")], 3, "1,2,3"),
        ([Placed(128, "1")], 6, None),  # the whole host: not pinned
    ],
)
def test_placement_counts_ranges_and_unpinned_sandboxes(
    tmp_path: Path, live: list[Placed], vcpus: int, cpus: str | None
) -> None:
    cap = host(tmp_path, cpus=6, memory_mb=1 << 20, pid_slots=100)
    assert cap.admit(res(vcpus=vcpus), live) == cpus


# ---- quotas ----------------------------------------------------------------------------

QUOTA = Quota(max_sandboxes=3, max_vcpus=4, max_memory_mb=1024)
HELD = [res(vcpus=1, memory_mb=256), res(vcpus=1, memory_mb=256)]


@pytest.mark.parametrize(
    ("name", "limit", "at_limit", "one_over", "held"),
    [
        ("sandboxes", 3, res(), None, HELD),
        ("vcpus", 4, res(vcpus=2), res(vcpus=3), HELD),
        ("memoryMb", 1024, res(memory_mb=512), res(memory_mb=513), HELD),
        ("vcpus", 4, res(vcpus=4), res(vcpus=5), []),  # one sandbox alone past it
    ],
)
def test_a_quota_admits_exactly_its_limit_and_refuses_one_more_for_good(
    name: str, limit: int, at_limit: Resources, one_over: Resources | None, held: list[Resources]
) -> None:
    check_quota(QUOTA, at_limit, held)
    wanted, holding = (one_over, held) if one_over else (at_limit, [*held, at_limit])
    err = refused(lambda: check_quota(QUOTA, wanted, holding))
    assert err.details == {"quota": name, "limit": limit, "wouldUse": limit + 1}
    assert err.retryable is False  # waiting for others' sandboxes will not help
    assert f"allows {limit} {name}" in err.message


def test_the_sandbox_count_is_checked_before_vcpus_and_memory() -> None:
    err = refused(lambda: check_quota(Quota(1, 1, 128), res(vcpus=8, memory_mb=8192), [res()]))
    assert err.details["quota"] == "sandboxes"


@pytest.mark.parametrize(("count", "admitted"), [(0, True), (4, True), (5, False), (9, False)])
def test_a_snapshot_quota_of_five_takes_a_fifth_but_not_a_sixth(count: int, admitted: bool) -> None:
    quota = SnapshotQuota(max_snapshots=5, max_storage_mb=100)
    if admitted:
        check_snapshot_quota(quota, count, stored_bytes=0)
        return
    err = refused(lambda: check_snapshot_quota(quota, count, stored_bytes=0))
    assert err.details == {"quota": "snapshots", "limit": 5, "wouldUse": count + 1}
    assert err.retryable is False


# ---- admission over the store ----------------------------------------------------------


def add_org(db: Database, name: str) -> str:
    with db.session() as s:
        return keys.create_org(s, name).id


def gate(db: Database, tmp_path: Path, quota: Quota = QUOTA, memory_mb: int = 1 << 20) -> Admission:
    return Admission(db, host(tmp_path, cpus=2, memory_mb=memory_mb, pid_slots=100), quota)


def ask(
    memory_mb: int = 256, *, password: str | None = None, timeout: int | None = 60
) -> CreateSandbox:
    return CreateSandbox("base", Resources(1, memory_mb, 1024), password=password, timeout=timeout)


def set_status(db: Database, sandbox_id: str, status: SandboxStatus) -> None:
    with db.session() as s:
        row = sandbox_rows.get(s, sandbox_id)
        assert row is not None
        row.status = status.value


@pytest.mark.parametrize(
    ("status", "frees"),
    [
        (SandboxStatus.TERMINATED, True),
        (SandboxStatus.ERROR, True),
        (SandboxStatus.PAUSED, False),  # a paused sandbox comes back with its room
        (SandboxStatus.STOPPING, False),
        (SandboxStatus.RUNNING, False),
    ],
)
async def test_only_a_sandbox_that_ended_gives_its_quota_back(
    db: Database, tmp_path: Path, status: SandboxStatus, frees: bool
) -> None:
    org = add_org(db, "acme")
    admission = gate(db, tmp_path, Quota(1, 4, 4096))
    await admission.admit(org, "sbx-1", TEMPLATE, ask())
    set_status(db, "sbx-1", status)
    if frees:
        await admission.admit(org, "sbx-2", TEMPLATE, ask())
    else:
        with pytest.raises(ResourceExhaustedError) as quota:
            await admission.admit(org, "sbx-2", TEMPLATE, ask())
        assert quota.value.details["quota"] == "sandboxes" and not quota.value.retryable
    with db.session() as s:
        assert (sandbox_rows.get(s, "sbx-2") is not None) is frees


async def test_a_sandbox_that_ended_gives_its_host_room_and_cpus_back(
    db: Database, tmp_path: Path
) -> None:
    org = add_org(db, "acme")
    admission = gate(db, tmp_path, Quota(10, 10, 10_000), memory_mb=512)
    assert await admission.admit(org, "sbx-1", TEMPLATE, ask()) == "0"
    assert await admission.admit(org, "sbx-2", TEMPLATE, ask()) == "1"
    with pytest.raises(ResourceExhaustedError) as full:
        await admission.admit(org, "sbx-3", TEMPLATE, ask())
    assert full.value.details["field"] == "resources.memoryMb" and full.value.retryable
    set_status(db, "sbx-1", SandboxStatus.TERMINATED)
    assert await admission.admit(org, "sbx-3", TEMPLATE, ask()) == "0"  # the freed CPU
    with db.session() as s:
        assert [(r.id, r.cpus) for r in sandbox_rows.live(s)] == [("sbx-2", "1"), ("sbx-3", "0")]


async def test_other_organisations_take_host_room_but_not_quota(
    db: Database, tmp_path: Path
) -> None:
    acme, globex = add_org(db, "acme"), add_org(db, "globex")
    admission = gate(db, tmp_path, Quota(1, 4, 4096), memory_mb=768)
    await admission.admit(acme, "sbx-a", TEMPLATE, ask(memory_mb=512))
    await admission.admit(globex, "sbx-g", TEMPLATE, ask(memory_mb=256))  # not acme's quota
    with pytest.raises(ResourceExhaustedError) as full:
        await admission.admit(add_org(db, "initech"), "sbx-i", TEMPLATE, ask())
    assert full.value.details["field"] == "resources.memoryMb"
    assert full.value.retryable is True  # the host is full: a shortage, not a policy


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        ((None, None, None), QUOTA),
        ((7, None, None), Quota(7, 4, 1024)),
        ((None, 16, 65536), Quota(3, 16, 65536)),
        ((1, 1, 128), Quota(1, 1, 128)),
    ],
)
def test_an_organisations_own_limits_replace_the_defaults_one_by_one(
    db: Database, tmp_path: Path, own: tuple[int | None, int | None, int | None], expected: Quota
) -> None:
    org = add_org(db, "acme")
    with db.session() as s:
        row = s.get(Org, org)
        assert row is not None
        row.max_sandboxes, row.max_vcpus, row.max_memory_mb = own
    admission = gate(db, tmp_path)
    with db.session() as s:
        assert admission.quota_of(s, org) == expected
        assert admission.quota_of(s, "org-unknown") == QUOTA


@pytest.mark.parametrize(("password", "timeout"), [("hunter22", 60), (None, None)])
async def test_the_record_keeps_a_password_hash_and_an_expiry_only_when_asked(
    db: Database, tmp_path: Path, password: str | None, timeout: int | None
) -> None:
    org = add_org(db, "acme")
    request = ask(password=password, timeout=timeout)
    await gate(db, tmp_path).admit(org, "sbx-1", TEMPLATE, request)
    with db.session() as s:
        row = sandbox_rows.get(s, "sbx-1")
        assert row is not None
        assert (row.expires_at is not None) is (timeout is not None)
        if timeout is not None and row.expires_at is not None:
            assert (row.expires_at - row.created_at).total_seconds() == timeout
        if password is None:
            assert row.password_hash is None
        else:
            assert row.password_hash is not None and password not in row.password_hash
            assert verify_password(password, row.password_hash)
