"""What the service needs from a live connection to a sandbox's agent.

A Protocol so `core` (and the API above it) never import the transport; the runtime's
AgentClient satisfies it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol

from sandlot.agent.protocol import EntryInfo, ProcessInfo


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


class AttachmentLike(Protocol):
    """A live view of one background process: replayed scrollback, then live output."""

    @property
    def info(self) -> ProcessInfo: ...
    @property
    def dropped_bytes(self) -> int: ...
    @property
    def result(self) -> ExecResultLike | None: ...

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]: ...

    async def send_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def signal(self, sig: str | int) -> None: ...

    async def resize(self, cols: int, rows: int) -> None: ...

    async def detach(self) -> None: ...


class TcpConnectionLike(Protocol):
    """A TCP connection opened from inside the sandbox: the peer's bytes until it
    half-closes, and ours the other way."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def send(self, data: bytes) -> None: ...

    async def close_write(self) -> None: ...

    async def close(self) -> None: ...


class LogBatchLike(Protocol):
    """System log lines from the agent (`seq`, `at`, `severity`, `facility`, `tag`,
    `line`), and how many lines before them the agent's ring lost."""

    @property
    def lines(self) -> list[dict[str, Any]]: ...
    @property
    def missed(self) -> int: ...


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
        user: str | None = None,
    ) -> ExecResultLike: ...

    def read_file(self, path: str) -> AsyncIterator[bytes]: ...

    def follow_log(self) -> AsyncIterator[LogBatchLike]: ...

    async def write_file(
        self, path: str, chunks: AsyncIterable[bytes] | bytes, *, mode: int | None = None
    ) -> EntryInfo: ...

    async def list_dir(self, path: str, depth: int = 1) -> list[EntryInfo]: ...

    async def stat(self, path: str) -> EntryInfo: ...

    async def mkdir(self, path: str, parents: bool = False) -> EntryInfo: ...

    async def remove(self, path: str, recursive: bool = False) -> None: ...

    async def replace(self, path: str, old: str, new: str, count: int | None = None) -> int: ...

    async def start_process(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        pty: tuple[int, int] | None = None,
        max_run_after_disconnect: float | None = None,
        scrollback: int | None = None,
        hold_until_attach: float | None = None,
        user: str | None = None,
    ) -> ProcessInfo: ...

    async def list_processes(self, include_exited: bool = False) -> list[ProcessInfo]: ...

    async def process_info(self, process_id: str) -> ProcessInfo: ...

    async def signal_process(self, process_id: str, sig: str | int) -> None: ...

    async def resize(self, process_id: str, cols: int, rows: int) -> None: ...

    async def attach(self, process_id: str) -> AttachmentLike: ...

    async def open_tcp(self, host: str, port: int) -> TcpConnectionLike: ...

    async def quiesce(self) -> None:
        """Let the sandbox be checkpointed: the agent stops serving; closes the session."""

    async def close(self) -> None: ...
