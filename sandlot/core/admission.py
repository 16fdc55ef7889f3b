"""Admission: whether a new sandbox may be made, and its record once it may.

One at a time, so two creates never both fit the last room: the organisation's quota
(its live sandboxes' vCPUs and memory, against its own limits or the server's defaults)
and the host's capacity (memory, cpus, pids) are checked against the store's live rows,
and the sandbox is recorded as `creating` in the same write.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from sandlot.core.capacity import Capacity, Placed
from sandlot.core.models import CreateSandbox
from sandlot.core.passwords import hash_password
from sandlot.core.quotas import Quota, check_quota
from sandlot.domain.resources import Resources
from sandlot.domain.states import SandboxStatus
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database
from sandlot.store.tables import Org, SandboxRow
from sandlot.templates.store import Template


class Admission:
    def __init__(self, db: Database, capacity: Capacity, default_quota: Quota) -> None:
        self.db = db
        self.capacity = capacity
        self.default_quota = default_quota
        self._lock = asyncio.Lock()

    async def admit(
        self, org_id: str, sandbox_id: str, template: Template, request: CreateSandbox
    ) -> str | None:
        """Check capacity and record the new sandbox as `creating`; returns its cpuset."""
        now = datetime.now(UTC)
        password_hash = None
        if request.password is not None:  # scrypt is slow on purpose: off the event loop
            password_hash = await asyncio.to_thread(hash_password, request.password)
        async with self._lock:
            with self.db.session() as s:
                rows = sandbox_rows.live(s)
                check_quota(
                    self.quota_of(s, org_id),
                    request.resources,
                    (
                        Resources(r.vcpus, r.memory_mb, r.disk_mb)
                        for r in rows
                        if r.org_id == org_id
                    ),
                )
                live = [Placed(r.memory_mb, r.cpus) for r in rows]
                cpus = self.capacity.admit(request.resources, live)
                s.add(
                    SandboxRow(
                        id=sandbox_id,
                        org_id=org_id,
                        template=template.name,
                        template_digest=template.digest,
                        rootfs=template.lowerdir,
                        status=SandboxStatus.CREATING.value,
                        vcpus=request.resources.vcpus,
                        memory_mb=request.resources.memory_mb,
                        disk_mb=request.resources.disk_mb,
                        cpus=cpus,
                        env=request.env,
                        meta=request.metadata,
                        idle_timeout=request.idle_timeout,
                        timeout=request.timeout,
                        password_hash=password_hash,
                        network=request.network.to_dict(),
                        created_at=now,
                        expires_at=now + timedelta(seconds=request.timeout)
                        if request.timeout
                        else None,
                    )
                )
        return cpus

    def quota_of(self, s: Session, org_id: str) -> Quota:
        org = s.get(Org, org_id)
        default = self.default_quota
        if org is None:
            return default
        return Quota(
            max_sandboxes=org.max_sandboxes or default.max_sandboxes,
            max_vcpus=org.max_vcpus or default.max_vcpus,
            max_memory_mb=org.max_memory_mb or default.max_memory_mb,
        )
