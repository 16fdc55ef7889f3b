"""What the service needs from a live connection to a sandbox's agent.

A Protocol so `core` (and the API above it) never import the transport; the runtime's
AgentClient satisfies it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol


class ExecResultLike(Protocol):
    @property
    def stdout(self) -> bytes: ...
    @property
    def stderr(self) -> bytes: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def signal(self) -> str | None: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def truncated(self) -> bool: ...


class SandboxSession(Protocol):
    @property
    def closed(self) -> bool: ...

    async def exec(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        max_output: int | None = None,
    ) -> ExecResultLike: ...

    def read_file(self, path: str) -> AsyncIterator[bytes]: ...

    async def write_file(
        self, path: str, chunks: AsyncIterable[bytes] | bytes, *, mode: int | None = None
    ) -> dict[str, Any]: ...

    async def list_dir(self, path: str, depth: int = 1) -> list[dict[str, Any]]: ...

    async def stat(self, path: str) -> dict[str, Any]: ...

    async def mkdir(self, path: str, parents: bool = False) -> dict[str, Any]: ...

    async def remove(self, path: str, recursive: bool = False) -> None: ...

    async def replace(self, path: str, old: str, new: str, count: int | None = None) -> int: ...

    async def close(self) -> None: ...
