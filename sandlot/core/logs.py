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
import time
from datetime import UTC, datetime
from typing import Any

from sandlot.agent.syslog import FACILITIES, MAX_LINE, SEVERITIES
from sandlot.core.events import Event, EventBus
from sandlot.core.session import SandboxSession
from sandlot.errors import SandlotError

log = logging.getLogger(__name__)

MAX_TAG = 64
"""Characters of a log line's tag kept (syslog's own tags are 32 at most)."""
LINES_PER_SECOND = 200
LINES_BURST = 2000
"""Log lines a sandbox may store per second, and in one burst, whatever its agent sends."""
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
        bucket = _Bucket(LINES_PER_SECOND, LINES_BURST)
        try:
            async for batch in session.follow_log():
                if batch.missed:
                    note = f"{batch.missed} log lines were lost before they could be delivered"
                    self._publish(sandbox_id, org_id, _note(note))
                for line in batch.lines:
                    if bucket.take():
                        self._publish(sandbox_id, org_id, line)
                if dropped := bucket.report():
                    note = f"{dropped} log lines were dropped: more than {LINES_PER_SECOND}/s"
                    self._publish(sandbox_id, org_id, _note(note))
        except SandlotError as exc:
            log.debug("log of %s ends with its agent connection: %s", sandbox_id, exc)

    def _publish(self, sandbox_id: str, org_id: str, line: object) -> None:
        """One line as the agent sent it, checked: the agent is the tenant's to replace,
        so fields are cut to the agent's own limits, names are kept only if they are the
        syslog names, and the time is the host's (a line dated 9999 sorts nowhere)."""
        if not isinstance(line, dict):
            return
        at = datetime.now(UTC)
        severity, facility = line.get("severity"), line.get("facility")
        data = {
            "line": str(line.get("line", ""))[:MAX_LINE],
            "tag": str(line.get("tag", ""))[:MAX_TAG],
            "severity": severity if severity in SEVERITIES else "notice",
            "facility": facility if facility in FACILITIES else "user",
            "at": at.isoformat(),
        }
        self._events.publish(Event("log", sandbox_id, org_id, data, at=at))


class _Bucket:
    """Lines a sandbox may store: a rate with a burst, checked on the host (the agent's
    own limit holds only while the agent is the real one)."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate, self._burst = rate, burst
        self._tokens = burst
        self._last = time.monotonic()
        self._dropped = 0
        self._reported = self._last

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self._dropped += 1
        return False

    def report(self) -> int:
        """Lines dropped since the last report, at most once a second."""
        if not self._dropped or time.monotonic() - self._reported < 1.0:
            return 0
        dropped, self._dropped, self._reported = self._dropped, 0, time.monotonic()
        return dropped


def _note(text: str) -> dict[str, Any]:
    return {
        "line": text,
        "tag": "sandlot",
        "severity": "warning",
        "facility": "syslog",
        "at": datetime.now(UTC).timestamp(),
    }
