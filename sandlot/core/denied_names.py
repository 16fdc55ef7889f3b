"""Which refused DNS names of one sandbox become `network.denied` events.

A sandbox asking for the same denied name again and again yields one event per
`REPEAT_SECONDS`; one asking for endless distinct names (random subdomains) yields at
most `PER_WINDOW` events per `WINDOW_SECONDS`, and the next event says how many names
went unreported. What one sandbox's queries cost the store and the event stream is
bounded either way.
"""

from __future__ import annotations

from typing import Any

REPEAT_SECONDS = 10.0
WINDOW_SECONDS = 10.0
PER_WINDOW = 20


class DeniedNames:
    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._window_start = 0.0
        self._in_window = 0
        self._unreported = 0

    def report(self, name: str, now: float) -> dict[str, Any] | None:
        """The event's data if this refusal is to be published, else None."""
        if self._until.get(name, 0.0) > now:
            return None
        if now - self._window_start >= WINDOW_SECONDS:
            self._window_start, self._in_window = now, 0
            self._until = {n: t for n, t in self._until.items() if t > now}
        if self._in_window >= PER_WINDOW:
            self._unreported += 1
            return None
        self._in_window += 1
        self._until[name] = now + REPEAT_SECONDS
        data: dict[str, Any] = {"name": name}
        if self._unreported:
            data["unreported"], self._unreported = self._unreported, 0
        return data
