"""Firewall openings asked for by DNS answers, applied in batches.

An answer for a sandbox under `default: deny` may only go out once its addresses are
let through that sandbox's firewall. Doing that with one `nft` run per answer let a
sandbox resolving random names of a domain it runs fork dozens of nft processes at
once and take the host's CPU from every other tenant. Here every opening asked for
within `BATCH_INTERVAL` becomes one nftables transaction, so the host runs at most one
nft at a time, whatever the rate of answers; each answer waits for its batch (a few
tens of milliseconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sandlot.network.firewall import Command, FirewallError

BATCH_INTERVAL = 0.02
"""Seconds openings are gathered before they are applied together."""

Apply = Callable[[list[Command]], Awaitable[None]]


class AdmissionBatcher:
    def __init__(self, apply: Apply, interval: float = BATCH_INTERVAL) -> None:
        self._apply = apply
        self._interval = interval
        self._queued: list[tuple[list[Command], asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.runs = 0
        """nft transactions made: what the batching saves shows here."""

    async def add(self, commands: list[Command]) -> None:
        """Apply `commands` with whatever else is asked for meanwhile; raises
        FirewallError if they (not another sandbox's) could not be applied."""
        if not commands:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queued.append((commands, done))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run(), name="firewall admissions")
        await asyncio.shield(done)

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
        for _, done in self._queued:
            if not done.done():
                done.set_exception(FirewallError("the network is shutting down"))
        self._queued.clear()

    async def _run(self) -> None:
        while self._queued:
            await asyncio.sleep(self._interval)
            batch, self._queued = self._queued, []
            await self._apply_batch(batch)

    async def _apply_batch(self, batch: list[tuple[list[Command], asyncio.Future[None]]]) -> None:
        try:
            self.runs += 1
            await self._apply([c for commands, _ in batch for c in commands])
        except FirewallError:
            # One transaction is all or nothing: a table removed meanwhile (a sandbox
            # destroyed) fails the lot, so each is tried alone to fail only its own.
            for commands, done in batch:
                try:
                    self.runs += 1
                    await self._apply(commands)
                except FirewallError as exc:
                    _settle(done, exc)
                else:
                    _settle(done, None)
            return
        for _, done in batch:
            _settle(done, None)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
