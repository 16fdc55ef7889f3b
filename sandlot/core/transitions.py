"""The one writer of a sandbox's status: every transition is checked against the table
in `domain/states.py`, persisted with whatever else changes in the same write, and
published as a `status` event (an ending also as `cost.runtime`, the time it ran).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sandlot.core.events import Event, EventBus
from sandlot.core.models import SandboxView
from sandlot.domain.states import SandboxStatus, check_transition
from sandlot.errors import SandboxNotFoundError
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database


class StatusWriter:
    def __init__(self, db: Database, events: EventBus) -> None:
        self.db = db
        self.events = events

    def set(
        self,
        sandbox_id: str,
        status: SandboxStatus,
        *,
        reason: str | None = None,
        started: bool = False,
        ended: bool = False,
        changes: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> SandboxView:
        """Persist a transition (with other column `changes` in the same write) and
        publish it, with `extra` figures in the event."""
        with self.db.session() as s:
            row = sandbox_rows.get(s, sandbox_id)
            if row is None:
                raise SandboxNotFoundError(f"sandbox {sandbox_id} does not exist")
            check_transition(sandbox_id, SandboxStatus(row.status), status)
            row.status = status.value
            row.status_reason = reason
            for column, value in (changes or {}).items():
                setattr(row, column, value)
            now = datetime.now(UTC)
            if started:
                row.started_at = now
            if ended:
                row.ended_at = now
            view = SandboxView.of(row)
        extra = dict(extra or {})
        if ended and view.started_at is not None and view.ended_at is not None:
            # Time spent running: a paused sandbox holds no CPU (nor, checkpointed, memory).
            wall = (view.ended_at - view.started_at).total_seconds()
            paused_ms = view.paused_ms
            if view.paused_at is not None:  # ended while paused
                paused_ms += int((view.ended_at - view.paused_at).total_seconds() * 1000)
            runtime = max(wall - paused_ms / 1000, 0.0)
            extra["runtimeDurationMs"] = round(runtime * 1000, 1)
            extra["pausedDurationMs"] = paused_ms
            res = view.resources
            self.events.publish(
                Event(
                    "cost.runtime",
                    sandbox_id,
                    view.org_id,
                    {
                        "runtimeSeconds": round(runtime, 3),
                        "vcpuSeconds": round(runtime * res.vcpus, 3),
                        "memoryMbSeconds": round(runtime * res.memory_mb, 3),
                    },
                )
            )
        self.publish(view.org_id, sandbox_id, status, reason, extra)
        return view

    def publish(
        self,
        org_id: str,
        sandbox_id: str,
        status: SandboxStatus,
        reason: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        data = {"status": status.value, "reason": reason, **(extra or {})}
        self.events.publish(Event("status", sandbox_id, org_id, data))
