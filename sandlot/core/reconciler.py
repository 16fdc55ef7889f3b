"""Making the store and the host agree when the server starts, after a restart or a
crash: what each sandbox's row and host state call for is decided in
`reconciliation.py`; this carries it out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sandlot.core.host import Host
from sandlot.core.lifecycle import Lifecycle
from sandlot.core.live import LiveSandboxes
from sandlot.core.reconciliation import Action, leftovers, outcome
from sandlot.core.records import Records
from sandlot.core.sandbox_network import SandboxNetwork
from sandlot.core.transitions import StatusWriter
from sandlot.domain.host_values import RuntimeStatus
from sandlot.domain.states import SandboxStatus
from sandlot.errors import SandlotError

log = logging.getLogger(__name__)


@dataclass(eq=False, kw_only=True)
class Reconciler:
    records: Records
    status: StatusWriter
    host: Host
    live: LiveSandboxes
    network: SandboxNetwork
    lifecycle: Lifecycle

    async def run(self) -> None:
        """Make the store and the host agree after a restart or crash.

        Running sandboxes are adopted (their agent reconnected); rows whose sandbox
        vanished become `error`; host leftovers with no live row are removed.
        """
        # Networks first: settling an interrupted pause gives the sandbox its interface
        # back, which needs its address and rules known again.
        await self.network.reconcile()
        on_host = {r.sandbox_id: r.status for r in await self.host.list()}
        live = self.records.live()
        for view in live:
            sandbox_id = view.id
            host_status = on_host.get(sandbox_id, RuntimeStatus.MISSING)
            try:
                if await self.lifecycle.settle(view, host_status):
                    continue
            except Exception:  # one sandbox must not keep the server from starting
                log.exception("sandbox %s could not be settled", sandbox_id)
            decided = outcome(view.status, host_status)
            reason = decided.reason
            if decided.action is Action.ADOPT:
                try:
                    await self.live.connect(view)
                    self.live.last_activity[sandbox_id] = time.monotonic()
                    log.info("adopted running sandbox %s", sandbox_id)
                    continue
                except SandlotError as exc:
                    reason = f"agent unreachable after restart: {exc.message}"
            elif decided.action is Action.FINISH_DESTROY:
                await self.network.release(sandbox_id)
                self.status.set(
                    sandbox_id, SandboxStatus.TERMINATED, reason="destroyed", ended=True
                )
                continue
            await self.network.release(sandbox_id)
            self.status.set(sandbox_id, SandboxStatus.ERROR, reason=reason, ended=True)
            log.warning("sandbox %s: %s", sandbox_id, reason)
        for leftover in sorted(leftovers({view.id for view in live}, set(on_host))):
            log.info("removing leftover sandbox %s", leftover)
            await self.host.destroy(leftover)
