"""SSH session channels: a shell, a command or the sftp subsystem, as an agent process.

Each channel starts one background process in the sandbox (on a terminal when the
client asked for a pty) and attaches to it, the way the attach WebSocket does: the
channel's data is the process's stdin, its output comes back as channel data (stderr as
extended data), window changes resize the terminal, signals are delivered to the
process group, and the exit comes back as exit-status or exit-signal.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

import asyncssh

from sandlot.core.models import StartProcess
from sandlot.core.session import AttachmentLike
from sandlot.core.work import DEFAULT_SHELL
from sandlot.edge.ssh.channel import ChannelBridge
from sandlot.errors import SandlotError

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
LINGER_AFTER_DISCONNECT = 2.0
"""Seconds a session's process outlives a dropped connection (it is sent SIGHUP first)."""
PASSED_ENV_PREFIXES = ("LANG", "LC_")
"""Client environment (`SendEnv`) let through to the process: the locale only."""
FAILED_TO_START = 255
"""The exit status of a session that could not run its process, as sshd uses it."""


class ProcessSession(ChannelBridge, asyncssh.SSHServerSession[bytes]):
    _command: str | list[str] | None = None
    _terminal: tuple[str, int, int] | None = None
    _attachment: AttachmentLike | None = None

    # ---- what the client asks for -----------------------------------------------------

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Any
    ) -> bool:
        cols, rows = term_size[0] or 80, term_size[1] or 24
        self._terminal = (term_type or "xterm-256color", cols, rows)
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            return False
        self._command = [SFTP_SERVER]
        return True

    def session_started(self) -> None:
        self.spawn(self._run())

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if not (width and height):
            return
        if self._attachment is not None:
            self.spawn(self._attachment.resize(width, height))
        elif self._terminal is not None:  # not started yet: start at the new size
            self._terminal = (self._terminal[0], width, height)

    def signal_received(self, signal: str) -> None:
        if self._attachment is not None:
            self.spawn(self._attachment.signal(signal))

    def break_received(self, msec: int) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        attachment = self._attachment
        if attachment is not None and attachment.result is None:
            # The client went away mid-run: hang up the process as sshd would; the
            # agent kills what is left once LINGER_AFTER_DISCONNECT passes.
            self.spawn_detached(_hang_up(attachment))

    # ---- the relay --------------------------------------------------------------------

    async def _run(self) -> None:
        chan = cast(asyncssh.SSHServerChannel[bytes], self._chan)
        target = self.target
        try:
            info = await target.service.work.start_process(
                target.org_id, target.sandbox_id, self._request(chan)
            )
            attachment = await target.service.work.attach(
                target.org_id, target.sandbox_id, info["process_id"]
            )
        except SandlotError as exc:
            chan.write_stderr(f"sandlot: {exc.message}\r\n".encode())
            chan.exit(FAILED_TO_START)
            return
        self._attachment = attachment
        self.spawn(self._pump_input(attachment))
        try:
            async for stream, data in attachment:
                await self.write(data, stderr=stream == "stderr")
        except SandlotError as exc:  # the sandbox went away under the session
            chan.write_stderr(f"\r\nsandlot: {exc.message}\r\n".encode())
        result = attachment.result
        if result is None:
            chan.exit(FAILED_TO_START)
        elif result.signal is not None:
            chan.exit_with_signal(result.signal.removeprefix("SIG"))
        else:
            chan.exit(result.exit_code or 0)

    def _request(self, chan: asyncssh.SSHServerChannel[bytes]) -> StartProcess:
        env = {
            name: value
            for name, value in chan.get_environment().items()
            if name.startswith(PASSED_ENV_PREFIXES)
        }
        pty = None
        if self._terminal is not None:
            term, cols, rows = self._terminal
            env["TERM"] = term
            pty = (cols, rows)
        return StartProcess(
            command=self._command if self._command is not None else DEFAULT_SHELL,
            env=env,
            pty=pty,
            max_run_after_disconnect=LINGER_AFTER_DISCONNECT,
            scrollback_bytes=0,
        )

    async def _pump_input(self, attachment: AttachmentLike) -> None:
        try:
            while (data := await self.next_input()) is not None:
                await attachment.send_stdin(data)
            await attachment.close_stdin()
        except SandlotError:
            pass  # the process stopped reading (it exited): what is left has nowhere to go


async def _hang_up(attachment: AttachmentLike) -> None:
    with contextlib.suppress(SandlotError):
        await attachment.signal("SIGHUP")
    await attachment.detach()
