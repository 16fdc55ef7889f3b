"""Sandbox events: published without blocking, persisted in order, replayable by cursor.

`publish` only queues. A writer task stores queued events in batches (the store gives
each its id, the cursor clients resume from with `since`) and then fans them out to
subscribers. Metrics are too frequent to keep: they skip the store and carry no id.
Each subscriber owns a small bounded queue of live events. A replay (`since`) is read
from the store a page at a time as the subscriber consumes it, so what a stream holds in
memory does not grow with the backlog it asked for, and a query never loads more than a
page. A subscriber that falls behind the live events does not slow anyone down: its queue
is dropped and it goes back to reading pages from the store after the last id it
delivered, so it still misses no stored event (only transient metrics).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sandlot.store import events as event_rows
from sandlot.store.database import Database

log = logging.getLogger(__name__)

TRANSIENT_TYPES = frozenset({"metrics"})
RETENTION = timedelta(days=7)
MAX_PENDING = 100_000
REPLAY_PAGE = 200
"""Stored events read per query of a replay."""
LIVE_QUEUE = 256
"""Live events a subscriber may hold unread before it falls back to the store."""


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
    def __init__(self, db: Database | None = None, queue_size: int = LIVE_QUEUE) -> None:
        self.db = db
        self.queue_size = queue_size
        self._subscribers: dict[asyncio.Queue[Event], EventFilter] = {}
        self._behind: set[asyncio.Queue[Event]] = set()
        """Queues that overflowed: their subscriber reads from the store again."""
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
                # Emptied, not trimmed: the subscriber reads what it missed from the
                # store, where every event it could miss already is.
                while not queue.empty():
                    queue.get_nowait()
                self._behind.add(queue)
            queue.put_nowait(event)

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions: a figure that returns to its baseline once clients leave."""
        return len(self._subscribers)

    def subscribe(self, wanted: EventFilter, since: int | None = None) -> Subscription:
        """Stored events after `since` (in order), then live ones, without gaps or repeats.

        The subscription joins the bus on its first read, so a stream never read holds
        nothing; `close` (or leaving its `with` block) takes it out again."""
        return Subscription(self, wanted, since)

    def _add(self, queue: asyncio.Queue[Event], wanted: EventFilter) -> None:
        self._subscribers[queue] = wanted

    def _remove(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.pop(queue, None)
        self._behind.discard(queue)

    def _newest_id(self) -> int:
        if self.db is None:
            return 0
        with self.db.session() as s:
            return event_rows.last_id(s)

    def _fell_behind(self, queue: asyncio.Queue[Event]) -> bool:
        """Whether the queue overflowed since last asked (and forget that it did)."""
        if queue in self._behind:
            self._behind.discard(queue)
            return True
        return False

    def _stored(self, wanted: EventFilter, since: int) -> list[Event] | None:
        """The next page of stored events after `since`; None if nothing is stored for
        this filter (no store, or no organisation to scope it)."""
        if self.db is None or wanted.org_id is None:
            return None
        with self.db.session() as s:
            rows = event_rows.after(
                s,
                wanted.org_id,
                since,
                sandbox_id=wanted.sandbox_id,
                types=wanted.types,
                limit=REPLAY_PAGE,
            )
            return [_event_of(row) for row in rows]


class Subscription:
    """One subscriber's events, read with `next` or `async for`, ended with `close`.

    Not an async generator, on purpose: a stream that waits for an event with a timeout
    (to send keepalives) or is cancelled because its client hung up must leave the
    subscription usable or cleanly closable. A generator suspended inside a read cannot
    be closed from outside ("aclose(): asynchronous generator is already running"), and
    its cleanup waits for the event loop to collect it. `close` here is synchronous, so
    any `finally`, even a cancelled task's, takes the subscriber out of the bus at once.
    """

    def __init__(self, bus: EventBus, wanted: EventFilter, since: int | None) -> None:
        self._bus = bus
        self._wanted = wanted
        self._queue: asyncio.Queue[Event] = asyncio.Queue(bus.queue_size)
        self._page: deque[Event] = deque()
        self._last = since or 0
        self._replaying = since is not None
        self._opened = self._closed = False

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event, or None if none comes within `timeout` seconds (or it is closed)."""
        if self._closed:
            return None
        if not self._opened:
            self._opened = True
            self._bus._add(self._queue, self._wanted)  # before the replay: nothing falls between
            if not self._replaying:  # live only: should it fall behind, it resumes from here
                self._last = self._bus._newest_id()
        if self._bus._fell_behind(self._queue):
            self._replaying = True
        if not self._page and self._replaying:
            self._read_page()
        if self._page:
            event = self._page.popleft()
            self._last = event.id or self._last
            return event
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await self._queue.get()
                    if event.id is None or event.id > self._last:
                        self._last = event.id or self._last
                        return event
        except TimeoutError:
            return None

    def _read_page(self) -> None:
        page = self._bus._stored(self._wanted, self._last)
        if page is None:
            self._replaying = False
            return
        self._page.extend(page)
        if len(page) < REPLAY_PAGE:
            self._replaying = False  # caught up: the live queue holds what comes next

    def close(self) -> None:
        self._closed = True
        self._bus._remove(self._queue)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.next()
        if event is None:  # without a timeout, only closing ends the wait empty-handed
            raise StopAsyncIteration
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _event_of(row: event_rows.EventRow) -> Event:
    return Event(row.type, row.sandbox_id, row.org_id, dict(row.data), row.at, row.id)
