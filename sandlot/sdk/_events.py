"""The events protocol: which socket to open, what its messages mean, where a stream
stands. Pure bookkeeping, no I/O; `_event_stream` does the reading.

Each WebSocket text message is one event as JSON. On (re)connecting, `since=<id>`
asks the server to replay the persisted events after that id before the live ones,
so a stream that remembers the last id it saw loses nothing across a dropped
connection (metrics carry no id and are not replayed). The server closing the socket
normally (code 1000) means the stream is over; any other end is a reason to reconnect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlencode

from sandlot.errors import InternalError
from sandlot.sdk._http import sandbox_path
from sandlot.sdk._models import Event

NORMAL_CLOSURE = 1000
# Waits between reconnection attempts, in seconds; the last one repeats.
RECONNECT_DELAYS = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0)


def events_path(sandbox_id: str | None) -> str:
    """The events endpoint of one sandbox, or of the whole organisation."""
    return "/v1/events" if sandbox_id is None else sandbox_path(sandbox_id, "/events")


def normalize_types(types: str | Iterable[str] | None) -> frozenset[str] | None:
    """`None` (or "*") means every type."""
    if types is None:
        return None
    wanted = frozenset([types] if isinstance(types, str) else types)
    return None if not wanted or "*" in wanted else wanted


def decode_event(message: str | bytes) -> Event:
    try:
        return Event.model_validate(json.loads(message))
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError included
        raise InternalError(f"malformed event from the server: {message!r:.200}") from exc


class EventCursor:
    """Where one stream of events stands: what to ask for when (re)connecting, which
    messages to pass on, and whether the stream is over.

    A sandbox's stream is over once it reports a final status ("terminated" or
    "error"): nothing can follow it.
    """

    def __init__(
        self,
        sandbox_id: str | None,
        since: int | None = None,
        types: str | Iterable[str] | None = None,
    ) -> None:
        self.sandbox_id = sandbox_id
        self.last_id = since
        self.types = normalize_types(types)
        self.finished = False

    def path(self) -> str:
        """The socket to open now: replay from the last id seen, if any."""
        query: dict[str, str | int] = {}
        if self.last_id is not None:
            query["since"] = self.last_id
        if self.types is not None:
            query["types"] = ",".join(sorted(self.types))
        suffix = f"?{urlencode(query, safe=',')}" if query else ""
        return events_path(self.sandbox_id) + suffix

    def accept(self, message: str | bytes) -> Event | None:
        """The event `message` carries, or `None` for one already seen (a replay
        overlapping what arrived before the connection dropped) or not asked for."""
        event = decode_event(message)
        if event.id is not None:
            if self.last_id is not None and event.id <= self.last_id:
                return None
            self.last_id = event.id
        if self.sandbox_id is not None and event.sandbox_id in (None, self.sandbox_id):
            self.finished = self.finished or event.is_final
        if self.types is not None and event.type not in self.types:
            return None
        return event


def reconnect_delay(attempt: int) -> float:
    """How long to wait before reconnection attempt `attempt` (0 for the first)."""
    return RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
