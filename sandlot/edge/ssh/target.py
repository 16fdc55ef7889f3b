"""The sandbox an SSH connection logged into, and the service that reaches it."""

from __future__ import annotations

from dataclasses import dataclass

from sandlot.core.service import SandboxService


@dataclass(frozen=True)
class Target:
    service: SandboxService
    org_id: str
    sandbox_id: str

    def touch(self) -> None:
        """SSH traffic is activity: it keeps the sandbox from being paused as idle."""
        self.service.live.touch(self.sandbox_id)
