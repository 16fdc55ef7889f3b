"""The server's periodic loops: each on its own interval, a failed pass retried on the
next tick, all of them stopped by `close`."""

from __future__ import annotations

import asyncio

from sandlot.core.supervisor import Loop, Supervisor


def test_loops_run_on_their_intervals_survive_failures_and_stop() -> None:
    async def run() -> tuple[int, int, int]:
        ticks = {"fast": 0, "failing": 0}

        async def fast() -> None:
            ticks["fast"] += 1

        async def failing() -> None:
            ticks["failing"] += 1
            raise RuntimeError("a bad pass")

        supervisor = Supervisor([Loop("fast", 0.01, fast), Loop("failing", 0.01, failing)])
        supervisor.start()
        await asyncio.sleep(0.2)
        await supervisor.close()
        stopped_at = ticks["fast"]
        await asyncio.sleep(0.05)
        return stopped_at, ticks["fast"], ticks["failing"]

    stopped_at, later, failures = asyncio.run(run())
    assert stopped_at >= 5 and later == stopped_at
    assert failures >= 5  # a failing pass did not end its loop
