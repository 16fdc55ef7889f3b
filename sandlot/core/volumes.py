"""Workspace volumes: an organisation's named disks that outlive sandboxes, mounted into
any number of them, and read and written without one.

A volume is recorded `creating` before its disk is made and `ready` after, `deleting`
before its disk goes and removed after, so a crash at any point leaves a row that
`settle` finishes at the next start: nothing half-made is ever mounted, and no disk
outlives its row. Names are per organisation; another's volume of the same name is
never found, so a name reveals nothing.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sandlot.agent.protocol import EntryInfo
from sandlot.core.events import Event, EventBus
from sandlot.core.host import Host
from sandlot.domain import ids
from sandlot.domain.host_values import MountSpec
from sandlot.domain.volumes import (
    DEFAULT_VOLUME_MB,
    MAX_VOLUME_MB,
    VolumeMount,
    check_mounts,
    check_volume_name,
)
from sandlot.errors import (
    FileNotFoundInSandboxError,
    FileOperationError,
    InvalidConfigError,
    InvalidStateError,
    ResourceExhaustedError,
    VolumeNotFoundError,
)
from sandlot.store import volumes as volume_rows
from sandlot.store.database import Database
from sandlot.store.keys import get_org
from sandlot.store.tables import VolumeMountRow, VolumeRow

T = TypeVar("T")


@dataclass(frozen=True)
class VolumeView:
    id: str
    name: str
    size_mb: int
    created_at: datetime
    used_bytes: int
    mounted_by: list[str]
    """The sandboxes not yet ended that mount it."""


@dataclass(eq=False)
class Volumes:
    db: Database
    host: Host
    events: EventBus
    default_quota_mb: int

    # ---- the volumes themselves -------------------------------------------------------

    async def create(self, org_id: str, name: str, size_mb: int | None = None) -> VolumeView:
        check_volume_name(name)
        size = DEFAULT_VOLUME_MB if size_mb is None else size_mb
        if not 1 <= size <= MAX_VOLUME_MB:
            raise InvalidConfigError(
                f"a volume's size must be between 1 MiB and {MAX_VOLUME_MB} MiB, not {size}",
                details={"sizeMb": size},
            )
        volume_id = self._insert(org_id, name, size)
        try:
            await self.host.volumes.create(volume_id, size)
        except BaseException:
            await self._forget(volume_id)
            raise
        with self.db.session() as s:
            row = s.get(VolumeRow, volume_id)
            assert row is not None
            row.status = "ready"
        self.events.publish(Event("volume.created", None, org_id, {"name": name, "sizeMb": size}))
        return self.get(org_id, name)

    def get(self, org_id: str, name: str) -> VolumeView:
        with self.db.session() as s:
            return self._view(s, self._ready(s, org_id, name))

    def of_org(self, org_id: str) -> list[VolumeView]:
        with self.db.session() as s:
            return [self._view(s, r) for r in volume_rows.of_org(s, org_id) if r.status == "ready"]

    async def delete(self, org_id: str, name: str) -> None:
        """Refused while a sandbox not yet ended mounts it."""
        with self.db.session() as s:
            row = self._ready(s, org_id, name)
            users = volume_rows.mounted_by(s, row.id)
            if users:
                raise InvalidStateError(
                    f"volume {name!r} is mounted by {', '.join(users)}; destroy "
                    f"{'them' if len(users) > 1 else 'it'} first",
                    details={"volume": name, "mountedBy": users},
                )
            row.status = "deleting"
            volume_id = row.id
        await self._forget(volume_id)
        self.events.publish(Event("volume.deleted", None, org_id, {"name": name}))

    # ---- mounting -----------------------------------------------------------------------

    async def bind(self, org_id: str, mounts: list[VolumeMount]) -> tuple[MountSpec, ...]:
        """What the sandbox's spec mounts; the first mount of an unknown name makes it."""
        specs = []
        for mount in check_mounts(mounts):
            try:
                found = self._id(org_id, mount.volume)
            except VolumeNotFoundError:
                found = await self._create_for_mount(org_id, mount.volume)
            specs.append(MountSpec(found, mount.path, mount.read_only))
        return tuple(specs)

    def record(self, sandbox_id: str, mounts: tuple[MountSpec, ...]) -> None:
        with self.db.session() as s:
            for m in mounts:
                s.add(
                    VolumeMountRow(
                        sandbox_id=sandbox_id,
                        path=m.path,
                        volume_id=m.volume_id,
                        read_only=m.read_only,
                    )
                )

    def mounts_of(self, sandbox_id: str) -> tuple[MountSpec, ...]:
        with self.db.session() as s:
            return tuple(
                MountSpec(v.id, m.path, m.read_only)
                for m, v in volume_rows.mounts_of(s, sandbox_id)
            )

    def named_mounts(self, sandbox_id: str) -> list[VolumeMount]:
        """The sandbox's mounts by volume name, as its owner asked for them."""
        with self.db.session() as s:
            return [
                VolumeMount(v.name, m.path, m.read_only)
                for m, v in volume_rows.mounts_of(s, sandbox_id)
            ]

    # ---- files without a sandbox --------------------------------------------------------

    async def read(self, org_id: str, name: str, path: str) -> AsyncIterator[bytes]:
        volume_id = self._id(org_id, name)
        return await _files(self.host.volumes.read(volume_id, path), name, path)

    async def write(
        self, org_id: str, name: str, path: str, chunks: AsyncIterable[bytes], mode: int | None
    ) -> EntryInfo:
        volume_id = self._id(org_id, name)
        return await _files(
            self.host.volumes.write(volume_id, path, chunks, 0o644 if mode is None else mode),
            name,
            path,
        )

    async def list_files(self, org_id: str, name: str, path: str) -> list[EntryInfo]:
        volume_id = self._id(org_id, name)
        return await _files(self.host.volumes.list(volume_id, path), name, path)

    async def stat_file(self, org_id: str, name: str, path: str) -> EntryInfo:
        volume_id = self._id(org_id, name)
        return await _files(self.host.volumes.stat(volume_id, path), name, path)

    async def mkdir(self, org_id: str, name: str, path: str, parents: bool) -> EntryInfo:
        volume_id = self._id(org_id, name)
        return await _files(self.host.volumes.mkdir(volume_id, path, parents), name, path)

    async def remove_file(self, org_id: str, name: str, path: str, recursive: bool) -> None:
        volume_id = self._id(org_id, name)
        await _files(self.host.volumes.delete(volume_id, path, recursive), name, path)

    # ---- after a restart ----------------------------------------------------------------

    async def settle(self) -> None:
        """Finish what a crash cut short: a volume half-made or half-deleted goes, each
        ready one is mounted again, and a disk with no row is removed."""
        with self.db.session() as s:
            rows = [(r.id, r.status) for r in volume_rows.every(s)]
        for volume_id, status in rows:
            if status == "ready":
                await self.host.volumes.ensure_mounted(volume_id)
            else:
                await self._forget(volume_id)
        known = {volume_id for volume_id, status in rows if status == "ready"}
        for leftover in self.host.volumes.on_host() - known:
            await self.host.volumes.remove(leftover)

    # ---- helpers ------------------------------------------------------------------------

    async def _create_for_mount(self, org_id: str, name: str) -> str:
        try:
            return (await self.create(org_id, name)).id
        except InvalidConfigError as exc:  # made meanwhile by a concurrent create
            try:
                return self._id(org_id, name)
            except VolumeNotFoundError:
                raise exc from None

    def _insert(self, org_id: str, name: str, size_mb: int) -> str:
        volume_id = ids.new_volume_id()
        try:
            with self.db.session() as s:
                org = get_org(s, org_id)
                limit = (org.max_volume_mb if org else None) or self.default_quota_mb
                held = volume_rows.size_held(s, org_id)
                if held + size_mb > limit:
                    raise ResourceExhaustedError(
                        f"this organisation's volumes may hold {limit} MiB together and "
                        f"{held} MiB are taken; a volume of {size_mb} MiB would pass it. "
                        "Delete volumes or ask the operator to raise the quota",
                        details={"quota": "volumeMb", "limit": limit, "wouldUse": held + size_mb},
                        retryable=False,
                    )
                s.add(
                    VolumeRow(
                        id=volume_id,
                        org_id=org_id,
                        name=name,
                        size_mb=size_mb,
                        status="creating",
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            raise InvalidConfigError(
                f"a volume named {name!r} exists already", details={"volume": name}
            ) from None
        return volume_id

    async def _forget(self, volume_id: str) -> None:
        await self.host.volumes.remove(volume_id)
        with self.db.session() as s:
            row = s.get(VolumeRow, volume_id)
            if row is not None:
                s.delete(row)

    def _id(self, org_id: str, name: str) -> str:
        """The ready volume's id, for a file call: no usage read, no mount listing."""
        with self.db.session() as s:
            return self._ready(s, org_id, name).id

    def _ready(self, s: Session, org_id: str, name: str) -> VolumeRow:
        row = volume_rows.get(s, org_id, name)
        if row is None or row.status != "ready":
            raise VolumeNotFoundError(f"no volume named {name!r}", details={"volume": name})
        return row

    def _view(self, s: Session, row: VolumeRow) -> VolumeView:
        used, _ = self.host.volumes.usage(row.id)
        return VolumeView(
            id=row.id,
            name=row.name,
            size_mb=row.size_mb,
            created_at=row.created_at,
            used_bytes=used,
            mounted_by=volume_rows.mounted_by(s, row.id),
        )


async def _files(work: Awaitable[T], name: str, path: str) -> T:
    """Await a file call on a volume, its host errors put in the caller's words."""
    try:
        return await work
    except FileNotFoundError:
        raise FileNotFoundInSandboxError(
            f"volume {name!r} has no {path!r}", details={"volume": name, "path": path}
        ) from None
    except OSError as exc:
        why = errno.errorcode.get(exc.errno or 0, "error")
        raise FileOperationError(
            f"could not do that to {path!r} in volume {name!r}: {exc.strerror or why}",
            details={"volume": name, "path": path, "errno": why},
        ) from None
