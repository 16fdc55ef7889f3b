"""`sandbox.pty`: interactive terminals (a login shell, or any command, on a PTY)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

from sandlot.sdk._http import AsyncTransport, Call, SyncTransport
from sandlot.sdk._models import ProcessInfo
from sandlot.sdk._process import (
    AsyncPtyHandle,
    OutputCallback,
    PtyHandle,
    signal_call,
    start_call,
)

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)

DEFAULT_COLS = 120
DEFAULT_ROWS = 40


class _PtyBase(Generic[TransportT]):
    def __init__(self, sandbox_id: str, transport: TransportT) -> None:
        self._sandbox_id = sandbox_id
        self._transport: TransportT = transport

    def _create_call(
        self,
        cols: int,
        rows: int,
        cwd: str | None,
        env: Mapping[str, str] | None,
        command: str | Sequence[str] | None,
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
            pty=(cols, rows),
            max_run_after_disconnect=max_run_after_disconnect,
            user=user,
        )


class Pty(_PtyBase[SyncTransport]):
    def create(
        self,
        *,
        cols: int = DEFAULT_COLS,
        rows: int = DEFAULT_ROWS,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        command: str | Sequence[str] | None = None,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        max_run_after_disconnect: float | None = None,
        user: str | None = None,
    ) -> PtyHandle:
        """Start `command` (default: a login shell) on a terminal of `cols`×`rows`.

        `on_output` is called with each chunk of bytes as the handle reads them
        (`stream()`, `wait()`). `timeout` kills it after that many seconds. `user` runs
        it as that user of the sandbox (see `Commands.run`); its login shell then starts
        in the user's home when the user may not enter the default directory.
        """
        call = self._create_call(
            cols, rows, cwd, env, command, timeout, max_run_after_disconnect, user
        )
        info = self._transport.send(call)
        try:
            return PtyHandle._attach(
                self._sandbox_id, self._transport, info.id, on_output=on_output
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self._transport.send(signal_call(self._sandbox_id, info.id, "SIGKILL"))
            raise

    def connect(self, process_id: str, *, on_output: OutputCallback | None = None) -> PtyHandle:
        """Re-attach to a terminal: its scrollback is replayed, then live output."""
        return PtyHandle._attach(self._sandbox_id, self._transport, process_id, on_output=on_output)


class AsyncPty(_PtyBase[AsyncTransport]):
    async def create(
        self,
        *,
        cols: int = DEFAULT_COLS,
        rows: int = DEFAULT_ROWS,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        command: str | Sequence[str] | None = None,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
        max_run_after_disconnect: float | None = None,
        user: str | None = None,
    ) -> AsyncPtyHandle:
        """Start a terminal; see `Pty.create`. `on_output` may be a coroutine function."""
        call = self._create_call(
            cols, rows, cwd, env, command, timeout, max_run_after_disconnect, user
        )
        info = await self._transport.send(call)
        try:
            return await AsyncPtyHandle._attach(
                self._sandbox_id, self._transport, info.id, on_output=on_output
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self._transport.send(signal_call(self._sandbox_id, info.id, "SIGKILL"))
            raise

    async def connect(
        self, process_id: str, *, on_output: OutputCallback | None = None
    ) -> AsyncPtyHandle:
        return await AsyncPtyHandle._attach(
            self._sandbox_id, self._transport, process_id, on_output=on_output
        )
