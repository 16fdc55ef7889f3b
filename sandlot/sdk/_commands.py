"""`sandbox.commands`: run a command to completion and get its output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

from sandlot.sdk._http import AsyncTransport, Call, SyncTransport, sandbox_path
from sandlot.sdk._models import CommandResult

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)

DEFAULT_COMMAND_TIMEOUT = 60.0
# The server answers only once the command has ended or been killed at its deadline,
# so the HTTP read must outlast the command by a margin.
_READ_MARGIN = 30.0


def _wire_command(command: str | Sequence[str]) -> str | list[str]:
    return command if isinstance(command, str) else list(command)


class _CommandsBase(Generic[TransportT]):
    def __init__(self, sandbox_id: str, transport: TransportT) -> None:
        self._sandbox_id = sandbox_id
        self._transport: TransportT = transport

    def _run_call(
        self,
        command: str | Sequence[str],
        cwd: str | None,
        env: Mapping[str, str] | None,
        timeout: float | None,
    ) -> Call[CommandResult]:
        return Call(
            "POST",
            sandbox_path(self._sandbox_id, "/exec"),
            parse=CommandResult.model_validate,
            json={
                "command": _wire_command(command),
                "cwd": cwd,
                "env": dict(env or {}),
                "timeout": timeout,
            },
            read_timeout=None if timeout is None else timeout + _READ_MARGIN,
        )


class Commands(_CommandsBase[SyncTransport]):
    def run(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
    ) -> CommandResult:
        """Run `command` and wait for it to end.

        A string is a shell command line; a sequence of strings is an argv run
        without a shell.

        A non-zero exit code is returned, not raised. Past `timeout` seconds the
        command is killed and `CommandTimeoutError` raised, carrying the output so
        far as `.stdout`/`.stderr`. `timeout=None` leaves the limit to the server.
        """
        return self._transport.send(self._run_call(command, cwd, env, timeout))


class AsyncCommands(_CommandsBase[AsyncTransport]):
    async def run(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
    ) -> CommandResult:
        """Run `command` and wait for it to end; see `Commands.run`."""
        return await self._transport.send(self._run_call(command, cwd, env, timeout))
