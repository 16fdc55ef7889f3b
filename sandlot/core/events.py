"""Sandbox events: published without blocking, persisted in order, replayable by cursor.

`publish` only queues. A writer task stores queued events in batches (the store gives
each its id, the cursor clients resume from with `since`) and then fans them out to
subscribers. Metrics are too frequent to keep: they skip the store and carry no id.
Each subscriber owns a bounded queue; one that falls behind loses its oldest events
(and can resume from the last id it saw) rather than slowing anyone down.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sandlot.store import events as event_rows
from sandlot.store.database import Database

log = logging.getLogger(__name__)

TRANSIENT_TYPES = frozenset({"metrics"})
RETENTION = timedelta(days=7)
MAX_PENDING = 100_000


@dataclass(frozen=True)
class Event:
    type: str
    sandbox_id: str | None
    org_id: str
    data: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: int | None = None


@dataclass(frozen=True)
class EventFilter:
    org_id: str | None = None
    sandbox_id: str | None = None
    types: frozenset[str] | None = None

    def matches(self, event: Event) -> bool:
        return (
            (self.org_id is None or event.org_id == self.org_id)
            and (self.sandbox_id is None or event.sandbox_id == self.sandbox_id)
            and (not self.types or event.type in self.types)
        )


class EventBus:
    def __init__(self, db: Database | None = None, queue_size: int = 1000) -> None:
        self.db = db
        self._queue_size = queue_size
        self._subscribers: dict[asyncio.Queue[Event], EventFilter] = {}
        self._pending: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self.published = 0

    def publish(self, event: Event) -> None:
        """Never blocks: transient events go out now, the rest once stored."""
        self.published += 1
        if self.db is None or event.type in TRANSIENT_TYPES:
            self._fan_out(event)
            return
        if len(self._pending) >= MAX_PENDING:
            log.warning("event queue full; dropping the oldest unsaved event")
            self._pending.popleft()
        self._pending.append(event)
        self._wakeup.set()

    async def run(self) -> None:
        """Store and deliver queued events until cancelled (then flush what is left)."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                self.flush()
        finally:
            self.flush()

    def flush(self) -> None:
        if not self._pending or self.db is None:
            return
        batch = list(self._pending)
        self._pending.clear()
        rows = [
            {
                "org_id": e.org_id,
                "sandbox_id": e.sandbox_id,
                "type": e.type,
                "data": e.data,
                "at": e.at,
            }
            for e in batch
        ]
        with self.db.session() as s:
            ids = event_rows.append(s, rows)
        for event, event_id in zip(batch, ids, strict=True):
            self._fan_out(replace(event, id=event_id))

    def prune(self) -> int:
        if self.db is None:
            return 0
        with self.db.session() as s:
            return event_rows.prune(s, datetime.now(UTC) - RETENTION)

    def _fan_out(self, event: Event) -> None:
        for queue, wanted in self._subscribers.items():
            if not wanted.matches(event):
                continue
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    async def subscribe(
        self, wanted: EventFilter, since: int | None = None
    ) -> AsyncGenerator[Event, None]:
        """Stored events after `since` (in order), then live ones, without gaps or repeats."""
        queue: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        self._subscribers[queue] = wanted  # before the replay, so nothing falls between
        try:
            last = since or 0
            if since is not None and self.db is not None and wanted.org_id is not None:
                with self.db.session() as s:
                    stored = [
                        _event_of(row)
                        for row in event_rows.after(
                            s,
                            wanted.org_id,
                            since,
                            sandbox_id=wanted.sandbox_id,
                            types=wanted.types,
                        )
                    ]
                for event in stored:
                    last = event.id or last
                    yield event
            while True:
                event = await queue.get()
                if event.id is not None and event.id <= last:
                    continue
                yield event
        finally:
            self._subscribers.pop(queue, None)


def _event_of(row: event_rows.EventRow) -> Event:
    return Event(row.type, row.sandbox_id, row.org_id, dict(row.data), row.at, row.id)
