"""The bounded memory of a background process's output, replayed to whoever attaches.

Output is kept as the chunks it was read in, each tagged with its stream ("stdout",
"stderr" or "pty"), so a replay keeps the order across streams. When the total passes
the limit, the oldest bytes are dropped (and counted): a process nobody watches never
blocks and never makes the agent grow.
"""

from __future__ import annotations

from collections import deque

DEFAULT_SCROLLBACK = 1024 * 1024
MAX_SCROLLBACK = 64 * 1024 * 1024


class Scrollback:
    def __init__(self, limit: int = DEFAULT_SCROLLBACK) -> None:
        self.limit = limit
        self._chunks: deque[tuple[str, bytes]] = deque()
        self.size = 0
        self.dropped = 0
        """Bytes dropped from the front since the process started."""

    def append(self, fd: str, data: bytes) -> None:
        if len(data) >= self.limit:
            self.dropped += self.size + len(data) - self.limit
            self._chunks.clear()
            self.size = 0
            data = data[len(data) - self.limit :]
            if not data:
                return
        self._chunks.append((fd, data))
        self.size += len(data)
        while self.size > self.limit:
            excess = self.size - self.limit
            head_fd, head = self._chunks[0]
            if len(head) <= excess:
                self._chunks.popleft()
                self.size -= len(head)
                self.dropped += len(head)
            else:
                self._chunks[0] = (head_fd, head[excess:])
                self.size -= excess
                self.dropped += excess

    def snapshot(self) -> list[tuple[str, bytes]]:
        """The chunks held now (the bytes are shared, not copied)."""
        return list(self._chunks)
