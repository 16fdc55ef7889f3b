"""A sandbox's network as core sees it: its egress policy (changed live), its preview
ports, the `network.denied` reports of names its policy refused, its address in the
store, and releasing all it holds on the host when it ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sandlot.core.denied_names import DeniedNames
from sandlot.core.events import Event, EventBus
from sandlot.core.host import Host
from sandlot.core.live import LiveSandboxes
from sandlot.core.models import SandboxView
from sandlot.core.previews import Auth, Exposure, Previews
from sandlot.core.records import Records
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.domain.states import require_running
from sandlot.errors import InvalidConfigError, SandboxNotFoundError
from sandlot.store import sandboxes as sandbox_rows


@dataclass(eq=False)
class SandboxNetwork:
    records: Records
    host: Host
    events: EventBus
    live: LiveSandboxes
    previews: Previews | None
    _denied: dict[str, DeniedNames] = field(default_factory=dict, init=False)
    """Per sandbox, the names a `network.denied` event went out for, and until when."""

    def __post_init__(self) -> None:
        self.host.on_denied = self._denied_name

    async def update(self, org_id: str, sandbox_id: str, changes: dict[str, Any]) -> SandboxView:
        """Merge `changes` (the API's camelCase form) into the sandbox's policy and apply
        it at once, without a restart. Under the sandbox's lock, so two concurrent
        changes both count."""
        self._require_network()
        async with self.live.lock(sandbox_id):
            require_running(sandbox_id, self.records.get(org_id, sandbox_id).status)
            with self.records.db.session() as s:
                row = sandbox_rows.get(s, sandbox_id)
                assert row is not None
                policy = NetworkPolicy.parse(row.network).merged(changes)
                row.network = policy.to_dict()
                view = SandboxView.of(row)
            await self.host.apply_policy(sandbox_id, policy)
        return view

    def ports(self, org_id: str, sandbox_id: str) -> list[Exposure]:
        self.records.get(org_id, sandbox_id)
        self._require_network()
        return self._previews().list(sandbox_id, self.host.policy_of(sandbox_id))

    def expose_port(
        self, org_id: str, sandbox_id: str, port: int, auth: Auth
    ) -> tuple[Exposure, str | None]:
        require_running(sandbox_id, self.records.get(org_id, sandbox_id).status)
        return self._previews().expose(org_id, sandbox_id, port, auth)

    def close_port(self, org_id: str, sandbox_id: str, port: int) -> None:
        self.records.get(org_id, sandbox_id)
        self._previews().close(org_id, sandbox_id, port)

    def admit_preview(self, sandbox_id: str, port: int, token: str | None) -> None:
        """Refuses a preview request the port's exposure (or the policy) does not admit."""
        self._require_network()
        self._previews().admit(sandbox_id, port, token, self.host.policy_of(sandbox_id))

    def reached(self, sandbox_id: str) -> str:
        """The sandbox's address, for a request that counts as activity."""
        address = self.host.address_of(sandbox_id)
        if address is None:
            raise SandboxNotFoundError(f"sandbox {sandbox_id} has no network")
        self.live.touch(sandbox_id)
        return address

    def record_address(self, sandbox_id: str) -> None:
        if self.host.networked:
            self.records.record(sandbox_id, address=self.host.address_of(sandbox_id))

    async def release(self, sandbox_id: str) -> None:
        """Everything the sandbox has on the host, its address lease included."""
        await self.host.destroy(sandbox_id, self.records.address(sandbox_id))
        self._denied.pop(sandbox_id, None)
        if self.previews is not None:
            self.previews.forget(sandbox_id)

    async def reconcile(self) -> None:
        """Re-apply the rules of every sandbox still live (the resolver may listen on
        another port now) and remove the networks of any other."""
        if not self.host.networked:
            return
        with self.records.db.session() as s:
            kept = [(r.id, r.address, r.network) for r in sandbox_rows.live(s)]
        for sandbox_id, address, policy in kept:
            if address is not None:
                await self.host.adopt_network(sandbox_id, address, NetworkPolicy.parse(policy))
        await self.host.remove_network_leftovers({sandbox_id for sandbox_id, _, _ in kept})

    def _denied_name(self, sandbox_id: str, name: str) -> None:
        org_id = self.live.owner(sandbox_id)
        if org_id is None:
            return  # a warm sandbox nobody owns yet, or one on its way out
        denied = self._denied.setdefault(sandbox_id, DeniedNames())
        data = denied.report(name, time.monotonic())
        if data is not None:
            self.events.publish(Event("network.denied", sandbox_id, org_id, data))

    def _require_network(self) -> None:
        if not self.host.networked:
            raise InvalidConfigError("networking is turned off on this server (network_enabled)")

    def _previews(self) -> Previews:
        if self.previews is None:
            raise InvalidConfigError("preview URLs are turned off on this server")
        return self.previews
