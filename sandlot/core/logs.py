"""Each running sandbox's system log, published as `log` events.

One follower per sandbox reads the agent's log stream on the sandbox's current agent
connection. It is never cancelled when the connection is taken out of service (pause,
snapshot, shutdown): it ends by itself once the connection closes, after publishing every
line that had already arrived, since the agent counts a line handed over once it sent it.
The follower started on the next connection waits for that one to finish, so lines are
published in order; the agent's ring holds whatever is written in between.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from sandlot.core.events import Event, EventBus
from sandlot.core.session import SandboxSession
from sandlot.errors import SandlotError

log = logging.getLogger(__name__)

HANDOVER_WAIT = 5.0
"""Seconds a new follower waits for the previous one to publish what it holds."""


class LogFollowers:
    def __init__(self, events: EventBus) -> None:
        self._events = events
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def follow(self, sandbox_id: str, org_id: str, session: SandboxSession) -> None:
        """Publish the sandbox's log from `session`, its agent connection from now on."""
        previous = self._tasks.get(sandbox_id)
        task = asyncio.get_running_loop().create_task(
            self._run(sandbox_id, org_id, session, previous), name=f"log of {sandbox_id}"
        )
        self._tasks[sandbox_id] = task
        task.add_done_callback(lambda _: self._drop(sandbox_id, task))

    async def close(self) -> None:
        """Wait (briefly) for followers whose connections were closed to finish."""
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=HANDOVER_WAIT)
        for task in tasks:
            task.cancel()

    def _drop(self, sandbox_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(sandbox_id) is task:
            del self._tasks[sandbox_id]

    async def _run(
        self,
        sandbox_id: str,
        org_id: str,
        session: SandboxSession,
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous], timeout=HANDOVER_WAIT)
            previous.cancel()
        try:
            async for batch in session.follow_log():
                if batch.missed:
                    note = f"{batch.missed} log lines were lost before they could be delivered"
                    self._publish(sandbox_id, org_id, _note(note))
                for line in batch.lines:
                    self._publish(sandbox_id, org_id, line)
        except SandlotError as exc:
            log.debug("log of %s ends with its agent connection: %s", sandbox_id, exc)

    def _publish(self, sandbox_id: str, org_id: str, line: dict[str, Any]) -> None:
        at = datetime.fromtimestamp(float(line.get("at") or 0.0), UTC)
        data = {
            "line": str(line.get("line", "")),
            "tag": str(line.get("tag", "")),
            "severity": str(line.get("severity", "notice")),
            "facility": str(line.get("facility", "user")),
            "at": at.isoformat(),
        }
        self._events.publish(Event("log", sandbox_id, org_id, data, at=at))


def _note(text: str) -> dict[str, Any]:
    return {
        "line": text,
        "tag": "sandlot",
        "severity": "warning",
        "facility": "syslog",
        "at": datetime.now(UTC).timestamp(),
    }
