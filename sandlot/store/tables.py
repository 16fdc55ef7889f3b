"""The SQL schema, as SQLAlchemy 2 declarative tables; Alembic migrations follow it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend: SQLite would hand back naive ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime}


class Org(Base):
    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    # Per-organisation limits; None takes the server's default.
    max_sandboxes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_vcpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_memory_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_volume_mb: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SandboxRow(Base):
    __tablename__ = "sandboxes"
    __table_args__ = (Index("ix_sandboxes_org_status", "org_id", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    template: Mapped[str] = mapped_column(String(128))
    template_digest: Mapped[str] = mapped_column(String(64))
    rootfs: Mapped[str] = mapped_column(Text)
    """The template's layers as an overlayfs lowerdir (top first)."""
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(512), nullable=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_mb: Mapped[int] = mapped_column(Integer)
    cpus: Mapped[str | None] = mapped_column(String(64), nullable=True)
    env: Mapped[dict[str, str]] = mapped_column(JSON)
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSON)
    idle_timeout: Mapped[int] = mapped_column(Integer)
    timeout: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Lifecycle: how the sandbox is paused ("checkpoint" or "freeze"), since when, and the
    # paused time it has accumulated; the snapshot it was branched from.
    pause_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    paused_at: Mapped[datetime | None] = mapped_column(nullable=True)
    paused_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    snapshot_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The backend it runs on; None for sandboxes made before it was recorded.
    runtime: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # SSH: the sandbox's own password, hashed; None refuses password logins.
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # Network: the egress/ingress policy as the API took it, and the sandbox's address.
    network: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def as_dict(self) -> dict[str, Any]:
        return {c.key: getattr(self, c.key) for c in self.__mapper__.column_attrs}


class EventRow(Base):
    """A persisted event; its id is the cursor clients resume from (`since`)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_org_id", "org_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(32))
    sandbox_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column()
    size: Mapped[int] = mapped_column(Integer, default=0)
    """Bytes the event costs the store (its JSON and type), counted against budgets."""


class SnapshotRow(Base):
    """A sandbox's saved state: its writable layer and, where taken, a memory checkpoint.

    It copies what a sandbox needs to be made again (template, resources, env) so a
    branch or rollback never depends on the source sandbox still existing.
    """

    __tablename__ = "snapshots"
    __table_args__ = (
        UniqueConstraint("org_id", "sandbox_id", "name", name="uq_snapshots_name"),
        Index("ix_snapshots_sandbox", "sandbox_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    sandbox_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    template: Mapped[str] = mapped_column(String(128))
    template_digest: Mapped[str] = mapped_column(String(64))
    rootfs: Mapped[str] = mapped_column(Text)
    """The template's layers as an overlayfs lowerdir (top first)."""
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_mb: Mapped[int] = mapped_column(Integer)
    env: Mapped[dict[str, str]] = mapped_column(JSON)
    has_memory: Mapped[bool] = mapped_column(Boolean)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column()


class SnapshotPatchRow(Base):
    """A script run against a snapshot's filesystem, making its next revision."""

    __tablename__ = "snapshot_patches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    snapshot_id: Mapped[str] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), index=True
    )
    revision: Mapped[int] = mapped_column(Integer)
    script: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column()


class SshKeyRow(Base):
    """A public key that may open SSH sessions to any sandbox of its organisation."""

    __tablename__ = "ssh_keys"
    __table_args__ = (
        UniqueConstraint("org_id", "fingerprint", name="uq_ssh_keys_fingerprint"),
        UniqueConstraint("org_id", "name", name="uq_ssh_keys_name"),
        Index("ix_ssh_keys_org", "org_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column()


class PortRow(Base):
    """A port of a sandbox exposed through the preview proxy."""

    __tablename__ = "ports"
    __table_args__ = (PrimaryKeyConstraint("sandbox_id", "port"),)

    sandbox_id: Mapped[str] = mapped_column(ForeignKey("sandboxes.id", ondelete="CASCADE"))
    port: Mapped[int] = mapped_column(Integer)
    auth: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column()


class TemplateBuildRow(Base):
    """A template build or import: queued, running, then ready or failed. Its log is a
    file beside the templates; the template itself lives on disk."""

    __tablename__ = "template_builds"
    __table_args__ = (Index("ix_template_builds_org", "org_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    template: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    """`build` (a Sandlotfile) or `import` (an image archive)."""
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    cached_steps: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class VolumeRow(Base):
    """A workspace volume of an organisation: a disk of its own on the host that
    sandboxes mount. `creating` and `deleting` are what a crash can leave mid-way."""

    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_volumes_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    size_mb: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column()


class VolumeMountRow(Base):
    """A volume mounted into a sandbox, kept after the sandbox ends (a branch of one of
    its snapshots mounts the same volumes)."""

    __tablename__ = "volume_mounts"
    __table_args__ = (PrimaryKeyConstraint("sandbox_id", "path"),)

    sandbox_id: Mapped[str] = mapped_column(ForeignKey("sandboxes.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1024))
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
