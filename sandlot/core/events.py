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

What the store keeps is bounded by age and by size: each sandbox's events, and each
organisation's, have a budget of bytes. A flush that takes one over it deletes that
owner's oldest events down to nine tenths of the budget, so a sandbox logging as fast as
it may cannot grow the store, nor crowd out its organisation's other sandboxes' history
beyond its own share.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

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
SANDBOX_EVENT_BYTES = 64 * 1024 * 1024
ORG_EVENT_BYTES = 1024 * 1024 * 1024
"""Stored bytes of events one sandbox, and one organisation, may hold."""
TRIM_TO = 0.9
"""Share of its budget an owner is trimmed back to, so trims are not once per flush."""
TOTALS_KEPT = 10_000
"""Owners whose stored bytes are remembered; one forgotten is summed from the store again."""


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


@dataclass(frozen=True)
class EventBudget:
    sandbox_bytes: int = SANDBOX_EVENT_BYTES
    org_bytes: int = ORG_EVENT_BYTES


class _Totals:
    """Running stored-byte totals per owner, loaded from the store on first use and kept
    for a bounded number of owners (a sandbox's id is never reused, so old ones would
    otherwise pile up)."""

    def __init__(self) -> None:
        self._bytes: OrderedDict[str, int] = OrderedDict()

    def known(self, key: str) -> bool:
        if key in self._bytes:
            self._bytes.move_to_end(key)
            return True
        return False

    def set(self, key: str, size: int) -> None:
        self._bytes[key] = size
        if len(self._bytes) > TOTALS_KEPT:
            self._bytes.popitem(last=False)

    def add(self, key: str, size: int) -> int:
        self._bytes[key] = self._bytes.get(key, 0) + size
        return self._bytes[key]

    def clear(self) -> None:
        self._bytes.clear()


class EventBus:
    def __init__(
        self,
        db: Database | None = None,
        queue_size: int = LIVE_QUEUE,
        budget: EventBudget | None = None,
    ) -> None:
        self.db = db
        self.queue_size = queue_size
        self.budget = budget or EventBudget()
        self._org_bytes = _Totals()
        self._sandbox_bytes = _Totals()
        self.trimmed = 0
        """Events' bytes deleted to keep owners within their budgets (a figure to watch)."""
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
        sizes = [_size_of(e) for e in batch]
        rows = [
            {
                "org_id": e.org_id,
                "sandbox_id": e.sandbox_id,
                "type": e.type,
                "data": e.data,
                "at": e.at,
                "size": size,
            }
            for e, size in zip(batch, sizes, strict=True)
        ]
        with self.db.session() as s:
            for event in batch:  # totals from before this batch, so it counts once
                if not self._org_bytes.known(event.org_id):
                    self._org_bytes.set(event.org_id, event_rows.stored_bytes(s, event.org_id))
                sandbox = event.sandbox_id
                if sandbox is not None and not self._sandbox_bytes.known(sandbox):
                    stored = event_rows.stored_bytes(s, event.org_id, sandbox)
                    self._sandbox_bytes.set(sandbox, stored)
            ids = event_rows.append(s, rows)
            self._keep_within_budgets(s, batch, sizes)
        for event, event_id in zip(batch, ids, strict=True):
            self._fan_out(replace(event, id=event_id))

    def _keep_within_budgets(self, s: Session, batch: list[Event], sizes: list[int]) -> None:
        over_sandboxes: dict[str, str] = {}
        over_orgs: set[str] = set()
        for event, size in zip(batch, sizes, strict=True):
            if self._org_bytes.add(event.org_id, size) > self.budget.org_bytes:
                over_orgs.add(event.org_id)
            sandbox = event.sandbox_id
            if (
                sandbox is not None
                and self._sandbox_bytes.add(sandbox, size) > self.budget.sandbox_bytes
            ):
                over_sandboxes[sandbox] = event.org_id
        for sandbox, org in over_sandboxes.items():
            self._trim(s, org, sandbox, self.budget.sandbox_bytes)
        for org in over_orgs:
            self._trim(s, org, None, self.budget.org_bytes)

    def _trim(self, s: Session, org: str, sandbox: str | None, budget: int) -> None:
        removed = event_rows.trim(s, org, sandbox, int(budget * TRIM_TO))
        for owner, size in removed.items():
            if owner is not None:
                self._sandbox_bytes.add(owner, -size)
            self._org_bytes.add(org, -size)
            self.trimmed += size
        log.info(
            "events of %s trimmed by %d bytes to keep within its budget",
            sandbox or org,
            sum(removed.values()),
        )

    def prune(self) -> int:
        if self.db is None:
            return 0
        with self.db.session() as s:
            pruned = event_rows.prune(s, datetime.now(UTC) - RETENTION)
        self._org_bytes.clear()  # summed from the store again as owners next publish
        self._sandbox_bytes.clear()
        return pruned

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


def _size_of(event: Event) -> int:
    """What an event costs the store: its data as JSON and its type."""
    return len(json.dumps(event.data, default=str)) + len(event.type)


def _event_of(row: event_rows.EventRow) -> Event:
    return Event(row.type, row.sandbox_id, row.org_id, dict(row.data), row.at, row.id)
