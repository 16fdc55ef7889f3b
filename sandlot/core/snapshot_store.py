"""Snapshots as stored: their rows and directories, per organisation, and what a sandbox
created from one starts from. Taking, rolling back to and branching from them is
`snapshots.py`; this is the bookkeeping both it and patches share.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from sandlot.core.catalog import Catalog
from sandlot.core.events import Event, EventBus
from sandlot.core.models import SandboxView
from sandlot.core.records import Records
from sandlot.domain.resources import Resources
from sandlot.errors import InvalidConfigError, InvalidStateError, SnapshotNotFoundError
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store import snapshots as snapshot_rows
from sandlot.store.database import Database
from sandlot.store.tables import SnapshotRow
from sandlot.templates.store import Template

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotView:
    id: str
    sandbox_id: str
    name: str
    description: str | None
    template: str
    resources: Resources
    has_memory: bool
    size_bytes: int
    revision: int
    created_at: datetime
    env: dict[str, str]
    """The sandbox's environment when it was taken; a branch starts with it."""

    @classmethod
    def of(cls, row: SnapshotRow) -> SnapshotView:
        return cls(
            id=row.id,
            sandbox_id=row.sandbox_id,
            name=row.name,
            description=row.description,
            template=row.template,
            resources=Resources(row.vcpus, row.memory_mb, row.disk_mb),
            has_memory=row.has_memory,
            size_bytes=row.size_bytes,
            revision=row.revision,
            created_at=row.created_at,
            env=dict(row.env),
        )


@dataclass(eq=False)
class SnapshotStore:
    @property
    def db(self) -> Database:
        return self.records.db

    records: Records
    catalog: Catalog
    events: EventBus
    root: Path

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def insert(
        self,
        view: SandboxView,
        snapshot_id: str,
        name: str,
        description: str | None,
        memory: bool,
    ) -> None:
        with self.db.session() as s:
            sandbox = sandbox_rows.get(s, view.id)
            assert sandbox is not None
            s.add(
                SnapshotRow(
                    id=snapshot_id,
                    org_id=view.org_id,
                    sandbox_id=view.id,
                    name=name,
                    description=description,
                    status="creating",
                    template=sandbox.template,
                    template_digest=sandbox.template_digest,
                    rootfs=sandbox.rootfs,
                    vcpus=sandbox.vcpus,
                    memory_mb=sandbox.memory_mb,
                    disk_mb=sandbox.disk_mb,
                    env=dict(sandbox.env),
                    has_memory=memory,
                    size_bytes=0,
                    revision=1,
                    created_at=datetime.now(UTC),
                )
            )
            try:
                s.flush()
            except IntegrityError:
                raise InvalidConfigError(
                    f"sandbox {view.id} already has a snapshot named {name!r}; pick another "
                    "name or delete that snapshot first",
                    details={"name": name},
                ) from None

    def snapshot_dir(self, snapshot_id: str) -> Path:
        return self.root / snapshot_id

    def list_snapshots(self, org_id: str, sandbox_id: str | None = None) -> list[SnapshotView]:
        if sandbox_id is not None:
            self.records.get(org_id, sandbox_id)
        with self.db.session() as s:
            rows = snapshot_rows.of_org(s, org_id, sandbox_id)
            return [SnapshotView.of(r) for r in rows if r.status == "ready"]

    def get_snapshot(self, org_id: str, ref: str, sandbox_id: str | None = None) -> SnapshotView:
        if sandbox_id is not None:
            self.records.get(org_id, sandbox_id)  # another organisation's: SANDBOX_NOT_FOUND
        with self.db.session() as s:
            row = snapshot_rows.find(s, org_id, ref, sandbox_id)
            if row is None:
                where = f" of sandbox {sandbox_id}" if sandbox_id else ""
                raise SnapshotNotFoundError(
                    f"no snapshot {ref!r}{where} (or it belongs to another organisation)",
                    details={"snapshot": ref},
                )
            return SnapshotView.of(row)

    def delete_snapshot(self, org_id: str, ref: str, sandbox_id: str | None = None) -> None:
        snap = self.get_snapshot(org_id, ref, sandbox_id)
        self.drop(snap.id)
        self.publish("snapshot.deleted", snap, org_id)

    def drop(self, snapshot_id: str) -> None:
        with self.db.session() as s:
            row = s.get(SnapshotRow, snapshot_id)
            if row is not None:
                s.delete(row)
        shutil.rmtree(self.snapshot_dir(snapshot_id), ignore_errors=True)

    def drop_unfinished(self) -> None:
        """Snapshots a crash cut short are incomplete: remove them at start-up."""
        with self.db.session() as s:
            unfinished = [r.id for r in snapshot_rows.unfinished(s)]
        for snapshot_id in unfinished:
            log.info("removing snapshot %s, interrupted while being taken", snapshot_id)
            self.drop(snapshot_id)

    def publish(self, kind: str, snap: SnapshotView, org_id: str) -> None:
        data = {"snapshotId": snap.id, "name": snap.name, "hasMemory": snap.has_memory}
        self.events.publish(Event(kind, snap.sandbox_id, org_id, data))

    def own(self, org_id: str, view: SandboxView, ref: str) -> SnapshotView:
        """One of the sandbox's snapshots, or the one it was branched from."""
        try:
            return self.get_snapshot(org_id, ref, view.id)
        except SnapshotNotFoundError:
            if view.snapshot_id is not None and ref == view.snapshot_id:
                return self.get_snapshot(org_id, ref)
            raise

    def source_of(self, org_id: str, snapshot_id: str) -> tuple[Template, Path]:
        """What a sandbox created from a snapshot starts from: the snapshot's template
        version (kept even if the template was rebuilt since) and its directory."""
        snap_row = self._row(org_id, snapshot_id)
        template = self.catalog.stack_of(snap_row)
        if not all(layer.is_dir() for layer in template.layers):
            raise InvalidStateError(
                f"snapshot {snapshot_id} was taken on template {snap_row.template} version "
                f"{snap_row.template_digest}, which has been removed"
            )
        return template, self.snapshot_dir(snapshot_id)

    def _row(self, org_id: str, snapshot_id: str) -> SnapshotRow:
        with self.db.session() as s:
            row = snapshot_rows.find(s, org_id, snapshot_id)
            if row is None:
                raise SnapshotNotFoundError(
                    f"no snapshot {snapshot_id!r} (or it belongs to another organisation)",
                    details={"snapshot": snapshot_id},
                )
            s.expunge(row)
            return row
