"""Core's decisions about workspace volumes over the in-memory host and a real store:
what is recorded and made, what is refused and with which error, how a mount reaches
the sandbox's spec, and what start-up does with whatever a crash left."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from sandlot.core.models import SandboxView
from sandlot.domain.volumes import DEFAULT_VOLUME_MB, VolumeMount, check_mounts
from sandlot.errors import (
    FileNotFoundInSandboxError,
    InvalidConfigError,
    InvalidStateError,
    ResourceExhaustedError,
    VolumeNotFoundError,
)
from sandlot.store import keys
from sandlot.store.tables import Org, VolumeRow
from tests.core.world import REQUEST, World

CODE = VolumeMount("my-code", "/workspace")


def rows(world: World) -> dict[str, str]:
    with world.db.session() as s:
        return {r.name: r.status for r in s.query(VolumeRow).all()}


async def chunks_of(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def mounting_code(world: World) -> SandboxView:
    """A sandbox of the world's organisation with `my-code` at /workspace."""
    return await world.service.sandboxes.create(
        world.org, dataclasses.replace(REQUEST, mounts=(CODE,))
    )


async def test_a_volume_is_recorded_ready_once_its_disk_is_made(world: World) -> None:
    view = await world.service.volumes.create(world.org, "data", 64)
    assert (view.name, view.size_mb, view.used_bytes, view.mounted_by) == ("data", 64, 0, [])
    assert world.host.volumes.made == {view.id: 64} and rows(world) == {"data": "ready"}


@pytest.mark.parametrize(
    ("name", "size"), [("../x", 10), ("a" * 64, 10), ("", 10), ("ok", 0), ("ok", 2**21)]
)
async def test_bad_names_and_sizes_are_refused_before_anything_is_made(
    world: World, name: str, size: int
) -> None:
    with pytest.raises(InvalidConfigError) as refused:
        await world.service.volumes.create(world.org, name, size)
    assert not refused.value.retryable
    assert world.host.volumes.made == {} and rows(world) == {}


async def test_a_name_is_taken_once_per_organisation(world: World) -> None:
    await world.service.volumes.create(world.org, "data", 10)
    with pytest.raises(InvalidConfigError, match="exists already"):
        await world.service.volumes.create(world.org, "data", 10)
    with world.db.session() as s:
        other = keys.create_org(s, "other").id
    theirs = await world.service.volumes.create(other, "data", 10)
    assert theirs.id != world.service.volumes.get(world.org, "data").id
    with pytest.raises(VolumeNotFoundError):
        world.service.volumes.get(other, "missing")


async def test_the_quota_counts_sizes_and_an_organisation_may_have_its_own(
    world: World,
) -> None:
    volumes = world.service.volumes
    volumes.default_quota_mb = 100
    await volumes.create(world.org, "a", 60)
    await volumes.create(world.org, "b", 40)  # exactly at the quota
    with pytest.raises(ResourceExhaustedError) as refused:
        await volumes.create(world.org, "c", 1)
    assert not refused.value.retryable
    assert refused.value.details == {"quota": "volumeMb", "limit": 100, "wouldUse": 101}
    with world.db.session() as s:
        org = s.get(Org, world.org)
        assert org is not None
        org.max_volume_mb = 200
    await volumes.create(world.org, "c", 100)
    assert len(world.host.volumes.made) == 3


async def test_a_disk_the_host_cannot_make_leaves_no_row(world: World) -> None:
    world.host.volumes.failing.add("create")
    with pytest.raises(OSError):
        await world.service.volumes.create(world.org, "data", 10)
    assert rows(world) == {} and world.host.volumes.made == {}


async def test_a_mount_reaches_the_spec_and_an_unknown_name_is_made_at_the_default_size(
    world: World,
) -> None:
    await world.service.volumes.create(world.org, "datasets", 10)
    request = dataclasses.replace(
        REQUEST, mounts=(CODE, VolumeMount("datasets", "/data/", read_only=True))
    )
    view = await world.service.sandboxes.create(world.org, request)
    code = world.service.volumes.get(world.org, "my-code")
    assert code.size_mb == DEFAULT_VOLUME_MB and code.mounted_by == [view.id]
    mounts = world.host.started_with[view.id].mounts
    assert [(m.path, m.read_only) for m in mounts] == [("/workspace", False), ("/data", True)]
    assert all(m.source is None for m in mounts)  # the host fills those in, not core
    assert world.service.volumes.named_mounts(view.id) == [
        VolumeMount("datasets", "/data", True),
        CODE,
    ]


async def test_a_sandbox_with_mounts_takes_no_warm_sandbox_and_a_rollback_keeps_them(
    world: World,
) -> None:
    view = await mounting_code(world)
    snap = await world.service.snapshots.snapshot(world.org, view.id, "s", memory=False)
    await world.service.snapshots.rollback(world.org, view.id, snap.id)
    assert [m.path for m in world.host.started_with[view.id].mounts] == ["/workspace"]


async def test_a_branch_mounts_the_volumes_of_the_sandbox_its_snapshot_was_taken_of(
    world: World,
) -> None:
    view = await mounting_code(world)
    snap = await world.service.snapshots.snapshot(world.org, view.id, "s", memory=False)
    branch = await world.service.snapshots.branch(world.org, snap.id)
    assert world.service.volumes.named_mounts(branch.id) == [CODE]
    assert sorted(world.service.volumes.get(world.org, "my-code").mounted_by) == sorted(
        [view.id, branch.id]
    )


async def test_a_mounted_volume_is_deleted_only_once_its_sandboxes_have_ended(
    world: World,
) -> None:
    view = await mounting_code(world)
    with pytest.raises(InvalidStateError) as refused:
        await world.service.volumes.delete(world.org, "my-code")
    assert refused.value.details == {"volume": "my-code", "mountedBy": [view.id]}
    await world.service.sandboxes.destroy(world.org, view.id)
    await world.service.volumes.delete(world.org, "my-code")
    assert rows(world) == {} and world.host.volumes.made == {}


async def test_files_errors_name_the_volume_never_the_host(world: World) -> None:
    await world.service.volumes.create(world.org, "notes", 10)
    volumes = world.service.volumes
    entry = await volumes.write(world.org, "notes", "/a.txt", chunks_of(b"kept"), None)
    assert (entry["path"], entry["size"], entry["mode"]) == ("/a.txt", 4, 0o644)
    read = await volumes.read(world.org, "notes", "/a.txt")
    assert b"".join([c async for c in read]) == b"kept"
    with pytest.raises(FileNotFoundInSandboxError) as missing:
        await volumes.read(world.org, "notes", "/gone")
    assert "/var/lib" not in missing.value.message and "notes" in missing.value.message
    with pytest.raises(VolumeNotFoundError):
        await volumes.read(world.org, "other", "/a.txt")


async def test_start_up_finishes_what_a_crash_left_and_removes_disks_with_no_row(
    world: World,
) -> None:
    volumes = world.service.volumes
    kept = await volumes.create(world.org, "kept", 10)
    doomed = await volumes.create(world.org, "doomed", 10)
    with world.db.session() as s:
        row = s.get(VolumeRow, doomed.id)
        assert row is not None
        row.status = "deleting"
        s.add(
            VolumeRow(
                id="vol-halfmade00",
                org_id=world.org,
                name="half",
                size_mb=10,
                status="creating",
                created_at=datetime.now(UTC),
            )
        )
    await world.host.volumes.create("vol-stray00000", 10)
    world.host.volumes.mounted.clear()  # as after a reboot
    await volumes.settle()
    assert rows(world) == {"kept": "ready"}
    assert set(world.host.volumes.made) == {kept.id} == world.host.volumes.mounted


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/workspace/", "/workspace"),
        ("/a/../b", "/b"),
        ("//data", "/data"),
        ("/home/user/./code", "/home/user/code"),
    ],
)
def test_mount_paths_are_normalised(given: str, kept: str) -> None:
    assert check_mounts([VolumeMount("v", given)]) == [VolumeMount("v", kept)]


@pytest.mark.parametrize(
    "paths",
    [
        ["/"],
        ["/proc"],
        ["/sys/fs"],
        ["/dev/shm"],
        ["/.sandlot"],
        ["/etc/hosts"],
        ["/a", "/a"],
        ["/a", "/a/b"],
        ["/x/../a", "/a/b/c"],
        ["relative"],
    ],
)
def test_mount_paths_that_cannot_be_are_refused(paths: list[str]) -> None:
    with pytest.raises(InvalidConfigError) as refused:
        check_mounts([VolumeMount(f"v{n}", p) for n, p in enumerate(paths)])
    assert not refused.value.retryable


def test_a_sandbox_mounts_at_most_sixteen_volumes() -> None:
    check_mounts([VolumeMount(f"v{n}", f"/m{n}") for n in range(16)])
    with pytest.raises(InvalidConfigError, match="at most 16"):
        check_mounts([VolumeMount(f"v{n}", f"/m{n}") for n in range(17)])
