"""`sandbox.commands`: run commands to completion or in the background, list the
processes started through Sandlot, and re-attach to them."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar, overload

from sandlot.sdk._http import UNSET, AsyncTransport, Call, SyncTransport, _Unset, sandbox_path
from sandlot.sdk._models import CommandResult, ProcessInfo
from sandlot.sdk._process import (
    DEFAULT_SIGNAL,
    AsyncCommandHandle,
    CommandHandle,
    LineCallback,
    get_call,
    list_call,
    signal_call,
    start_call,
    user_field,
    wire_command,
)

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)

DEFAULT_COMMAND_TIMEOUT = 60.0
# The server answers only once the command has ended or been killed at its deadline,
# so waiting for that answer must outlast the command by a margin.
_READ_MARGIN = 30.0

Timeout = float | None | Literal[_Unset.UNSET]


def _effective_timeout(timeout: Timeout, background: bool) -> float | None:
    """An unset timeout is 60 s for a command waited on, none for a background one."""
    if timeout is UNSET:
        return None if background else DEFAULT_COMMAND_TIMEOUT
    return timeout


def _wait_limit(timeout: float | None) -> float | None:
    return None if timeout is None else timeout + _READ_MARGIN


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
        user: str | None,
    ) -> Call[CommandResult]:
        return Call(
            "POST",
            sandbox_path(self._sandbox_id, "/exec"),
            parse=CommandResult.model_validate,
            json={
                "command": wire_command(command),
                "cwd": cwd,
                "env": dict(env or {}),
                "timeout": timeout,
                **user_field(user),
            },
            read_timeout=_wait_limit(timeout),
        )

    def _start_call(
        self,
        command: str | Sequence[str],
        cwd: str | None,
        env: Mapping[str, str] | None,
        timeout: float | None,
        max_run_after_disconnect: float | None,
        user: str | None,
    ) -> Call[ProcessInfo]:
        return start_call(
            self._sandbox_id,
            command,
            cwd=cwd,
            env=env,
            timeout=timeout,
            max_run_after_disconnect=max_run_after_disconnect,
            user=user,
        )


class Commands(_CommandsBase[SyncTransport]):
    @overload
    def run(
        self,
        command: str | Sequence[str],
        *,
        background: Literal[False] = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
        max_run_after_disconnect: float | None = None,
        user: str | None = None,
    ) -> CommandResult: ...

    @overload
    def run(
        self,
        command: str | Sequence[str],
        *,
        background: Literal[True],
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
        max_run_after_disconnect: float | None = None,
        user: str | None = None,
    ) -> CommandHandle: ...

    @overload
    def run(
        self,
        command: str | Sequence[str],
        *,
        background: bool,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
        max_run_after_disconnect: float | None = None,
        user: str | None = None,
    ) -> CommandResult | CommandHandle: ...

    def run(
        self,
        command: str | Sequence[str],
        *,
        background: bool = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
        max_run_after_disconnect: float | None = None,
        user: str | None = None,
    ) -> CommandResult | CommandHandle:
        """Run `command`; wait for it to end, or with `background=True` return at once.

        A string is a shell command line; a sequence of strings is an argv run
        without a shell.

        A non-zero exit code is returned, not raised. Past `timeout` seconds (default:
        60 for a command waited on, none for a background one; `None`: no limit) the
        server kills the command and `CommandTimeoutError` is raised, carrying the
        output so far as `.stdout`/`.stderr`.

        `on_stdout`/`on_stderr` are called with each line (without its line ending)
        as it arrives: while this call waits, or, for a background command, while
        its handle is read (`stream()`, `wait()`). `max_run_after_disconnect` kills
        the process that many seconds after its last attachment closes.

        `user` runs the command as that user of the sandbox: a name or uid, optionally
        with a group (`"alice"`, `"1000:1000"`), with the user's HOME, USER and LOGNAME
        unless `env` sets them. An unknown user raises `InvalidConfigError`.
        """
        limit = _effective_timeout(timeout, background)
        if not background and on_stdout is None and on_stderr is None:
            return self._transport.send(self._run_call(command, cwd, env, limit, user))
        info = self._transport.send(
            self._start_call(command, cwd, env, limit, max_run_after_disconnect, user)
        )
        handle = self._attach_started(info, on_stdout=on_stdout, on_stderr=on_stderr)
        if background:
            return handle
        with handle:
            try:
                return handle.wait(_wait_limit(limit))
            except BaseException:
                # Nobody else holds a handle on a command run in the foreground.
                if handle.exit_code is None:
                    with contextlib.suppress(Exception):
                        handle.kill()
                raise

    def list(self, *, include_exited: bool = False) -> builtins.list[ProcessInfo]:
        """Processes started through Sandlot that still run; `include_exited` adds
        those that ended recently and are still retained."""
        return self._transport.send(list_call(self._sandbox_id, include_exited))

    def get(self, process_id: str) -> ProcessInfo:
        return self._transport.send(get_call(self._sandbox_id, process_id))

    def kill(self, process_id: str, signal: str = DEFAULT_SIGNAL) -> ProcessInfo:
        """Send `signal` to a process's whole group without attaching to it."""
        return self._transport.send(signal_call(self._sandbox_id, process_id, signal))

    def connect(
        self,
        process_id: str,
        *,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
    ) -> CommandHandle:
        """Attach to a running (or recently exited) process: its scrollback is
        replayed first, then the live output follows."""
        return CommandHandle._attach(
            self._sandbox_id, self._transport, process_id, on_stdout=on_stdout, on_stderr=on_stderr
        )

    def _attach_started(self, info: ProcessInfo, **callbacks: Any) -> CommandHandle:
        try:
            return CommandHandle._attach(self._sandbox_id, self._transport, info.id, **callbacks)
        except BaseException:
            # Without an attachment the caller has no handle to stop it with.
            with contextlib.suppress(Exception):
                self.kill(info.id)
            raise


class AsyncCommands(_CommandsBase[AsyncTransport]):
    @overload
    async def run(
        self,
        command: str | Sequence[str],
        *,
        background: Literal[False] = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
        max_run_after_disconnect: float | None = None,
        user: str | None = None,
    ) -> CommandResult: ...

    @overload
    async def run(
        self,
        command: str | Sequence[str],
        *,
        background: Literal[True],
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
        max_run_after_disconnect: float | None = None,
        user: str | None = None,
    ) -> AsyncCommandHandle: ...

    @overload
    async def run(
        self,
        command: str | Sequence[str],
        *,
        background: bool,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
        max_run_after_disconnect: float | None = None,
        user: str | None = None,
    ) -> CommandResult | AsyncCommandHandle: ...

    async def run(
        self,
        command: str | Sequence[str],
        *,
        background: bool = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
        max_run_after_disconnect: float | None = None,
        user: str | None = None,
    ) -> CommandResult | AsyncCommandHandle:
        """Run `command`; see `Commands.run`. Callbacks may also be coroutine functions."""
        limit = _effective_timeout(timeout, background)
        if not background and on_stdout is None and on_stderr is None:
            return await self._transport.send(self._run_call(command, cwd, env, limit, user))
        info = await self._transport.send(
            self._start_call(command, cwd, env, limit, max_run_after_disconnect, user)
        )
        handle = await self._attach_started(info, on_stdout=on_stdout, on_stderr=on_stderr)
        if background:
            return handle
        async with handle:
            try:
                return await handle.wait(_wait_limit(limit))
            except BaseException:
                if handle.exit_code is None:
                    with contextlib.suppress(Exception):
                        await handle.kill()
                raise

    async def list(self, *, include_exited: bool = False) -> builtins.list[ProcessInfo]:
        return await self._transport.send(list_call(self._sandbox_id, include_exited))

    async def get(self, process_id: str) -> ProcessInfo:
        return await self._transport.send(get_call(self._sandbox_id, process_id))

    async def kill(self, process_id: str, signal: str = DEFAULT_SIGNAL) -> ProcessInfo:
        return await self._transport.send(signal_call(self._sandbox_id, process_id, signal))

    async def connect(
        self,
        process_id: str,
        *,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
    ) -> AsyncCommandHandle:
        """Attach to a process; see `Commands.connect`."""
        return await AsyncCommandHandle._attach(
            self._sandbox_id, self._transport, process_id, on_stdout=on_stdout, on_stderr=on_stderr
        )

    async def _attach_started(self, info: ProcessInfo, **callbacks: Any) -> AsyncCommandHandle:
        try:
            return await AsyncCommandHandle._attach(
                self._sandbox_id, self._transport, info.id, **callbacks
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.kill(info.id)
            raise
