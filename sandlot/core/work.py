"""Work inside a sandbox: commands, files and background processes, through its agent
connection. A call that finds its sandbox paused resumes it first (unless the server
is set to refuse instead), and every call counts as activity for idle pausing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from sandlot.agent.protocol import EntryInfo, ProcessInfo
from sandlot.core.events import Event, EventBus
from sandlot.core.host import Host
from sandlot.core.lifecycle import Lifecycle
from sandlot.core.live import Live, LiveSandboxes
from sandlot.core.models import CommandOutcome, StartProcess
from sandlot.core.records import Records
from sandlot.core.session import AttachmentLike, ExecResultLike, SandboxSession
from sandlot.errors import CommandTimeoutError, InvalidConfigError

DEFAULT_SHELL = ["/bin/bash", "-l"]
FIRST_ATTACH_GRACE = 5.0
"""Seconds a new process's output waits for its first attachment before it runs free
into the scrollback ring: a client that starts and then attaches loses nothing."""


@dataclass(eq=False, kw_only=True)
class Work:
    records: Records
    live: LiveSandboxes
    lifecycle: Lifecycle
    host: Host
    events: EventBus
    exec_timeout: float = 60.0
    exec_output_limit: int = 64 * 1024 * 1024

    async def session(self, org_id: str, sandbox_id: str) -> SandboxSession:
        """The live agent connection of a running sandbox of `org_id`; counts as activity."""
        return (await self._live_sandbox(org_id, sandbox_id)).session

    async def _live_sandbox(self, org_id: str, sandbox_id: str) -> Live:
        live = self.live.connected(sandbox_id)
        if live is None or live.org_id != org_id:
            view = self.records.get(org_id, sandbox_id)
            await self.lifecycle.ensure_running(org_id, view)
            live = self.live.connected(sandbox_id)
            if live is None:
                live = await self.live.connect(view)
        self.live.last_activity[sandbox_id] = time.monotonic()
        return live

    async def run_command(
        self,
        org_id: str,
        sandbox_id: str,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        user: str | None = None,
    ) -> CommandOutcome:
        live = await self._live_sandbox(org_id, sandbox_id)
        oom_before = self.host.oom_kills(sandbox_id)
        result = await live.session.exec(
            command,
            cwd=cwd,
            env={**live.env, **(env or {})},
            timeout=timeout or self.exec_timeout,
            max_output=self.exec_output_limit,
            user=user or live.user,
        )
        self.record_completion(org_id, sandbox_id, command, result)
        if result.timed_out:
            raise CommandTimeoutError(
                f"command did not finish within {timeout or self.exec_timeout} s and was killed",
                details={
                    "stdout": result.stdout.decode(errors="replace"),
                    "stderr": result.stderr.decode(errors="replace"),
                },
            )
        oom_killed = result.signal == "SIGKILL" and self.host.oom_kills(sandbox_id) > oom_before
        return CommandOutcome(
            stdout=result.stdout,
            stderr=result.stderr,
            exit_code=result.exit_code,
            signal=result.signal,
            duration_ms=result.duration_ms,
            oom_killed=oom_killed,
            truncated=result.truncated,
        )

    async def read_file(self, org_id: str, sandbox_id: str, path: str) -> AsyncIterator[bytes]:
        """Chunks of a file; a missing file raises here, before any byte is promised."""
        session = await self.session(org_id, sandbox_id)
        chunks = session.read_file(path)
        first = await anext(chunks, b"")

        async def stream() -> AsyncIterator[bytes]:
            yield first
            async for chunk in chunks:
                yield chunk

        return stream()

    async def write_file(
        self,
        org_id: str,
        sandbox_id: str,
        path: str,
        chunks: AsyncIterable[bytes],
        mode: int | None = None,
    ) -> EntryInfo:
        session = await self.session(org_id, sandbox_id)
        entry = await session.write_file(path, chunks, mode=mode)
        self.events.publish(
            Event(
                "file.created", sandbox_id, org_id, {"path": entry["path"], "size": entry["size"]}
            )
        )
        return entry

    async def start_process(
        self, org_id: str, sandbox_id: str, request: StartProcess
    ) -> ProcessInfo:
        """Start a process the sandbox's agent owns; it outlives the caller's connection."""
        live = await self._live_sandbox(org_id, sandbox_id)
        command = request.command
        if command is None:
            if request.pty is None:
                raise InvalidConfigError("command is required unless a pty is asked for")
            command = DEFAULT_SHELL
        return await live.session.start_process(
            command,
            cwd=request.cwd,
            env={**live.env, **request.env},
            timeout=request.timeout,
            pty=request.pty,
            max_run_after_disconnect=request.max_run_after_disconnect,
            scrollback=request.scrollback_bytes,
            hold_until_attach=FIRST_ATTACH_GRACE,
            user=request.user or live.user,
        )

    async def attach(self, org_id: str, sandbox_id: str, process_id: str) -> AttachmentLike:
        return await (await self.session(org_id, sandbox_id)).attach(process_id)

    def record_completion(
        self, org_id: str, sandbox_id: str, command: object, result: ExecResultLike
    ) -> None:
        self.events.publish(
            Event(
                "exec.completed",
                sandbox_id,
                org_id,
                {
                    "command": command,
                    "exitCode": result.exit_code,
                    "signal": result.signal,
                    "durationMs": result.duration_ms,
                    "timedOut": result.timed_out,
                },
            )
        )
