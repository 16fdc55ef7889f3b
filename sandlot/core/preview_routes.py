"""Where a preview request goes: the sandbox's address, once the port's exposure admits
the request, waking a paused sandbox first (the proxy asks without waking on every
request, and wakes only when that says it must)."""

from __future__ import annotations

from dataclasses import dataclass

from sandlot.core.records import Records
from sandlot.core.sandbox_network import SandboxNetwork
from sandlot.core.work import Work


@dataclass(eq=False)
class PreviewRoutes:
    records: Records
    network: SandboxNetwork
    work: Work

    async def target(self, sandbox_id: str, port: int, token: str | None) -> str:
        """The address a preview request for `port` goes to, once `token` is checked;
        wakes a paused sandbox and counts as activity."""
        address = self.address(sandbox_id, port, token)
        if address is None:
            await self.work.session(self.records.get(None, sandbox_id).org_id, sandbox_id)
            address = self.network.reached(sandbox_id)
        return address

    def address(self, sandbox_id: str, port: int, token: str | None) -> str | None:
        """`target` without waking, for the proxy's per-request check: None when the
        sandbox has to be woken first."""
        self.network.admit_preview(sandbox_id, port, token)
        if self.work.live.connected(sandbox_id) is None:
            return None
        return self.network.reached(sandbox_id)
