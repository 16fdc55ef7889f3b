"""Every periodic loop of the server, started and stopped as one.

Supervision ticks (see `supervision.py`), metric samples and event pruning each run on
their own interval; a failed pass is logged and tried again on the next tick, so one
bad pass never ends a loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0


@dataclass(frozen=True)
class Loop:
    name: str
    interval: float
    """Seconds between the end of one pass and the start of the next."""
    step: Callable[[], Awaitable[object]]


class Supervisor:
    def __init__(self, loops: list[Loop]) -> None:
        self.loops = loops
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(_every(loop), name=f"periodic {loop.name}") for loop in self.loops
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


async def _every(loop: Loop) -> None:
    while True:
        await asyncio.sleep(loop.interval)
        try:
            await loop.step()
        except Exception:
            log.exception("periodic %s failed; retrying next tick", loop.name)
