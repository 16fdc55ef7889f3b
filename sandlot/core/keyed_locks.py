"""One asyncio lock per key (a sandbox, a snapshot), kept only while it is in use.

A plain `dict.setdefault(key, Lock())` keeps a lock for every key ever locked: on a
long-running server that is one per sandbox or snapshot that ever existed, and any late
caller (a second destroy, a supervisor pass that raced a destroy) puts one back for a
key that is gone for good. Here an entry lives while someone holds or waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    """Holders and waiters."""


class KeyedLocks:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold `key`'s lock for the block, waiting for it if need be."""
        entry = self._entries.setdefault(key, _Entry())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._entries[key]

    def busy(self, key: str) -> bool:
        """Whether someone holds `key`'s lock now (without creating it)."""
        entry = self._entries.get(key)
        return entry is not None and entry.lock.locked()

    def __len__(self) -> int:
        return len(self._entries)
