"""NetworkManager: the one object core talks to about a sandbox's network.

It owns the order of things: lease an address and write the firewall table before the
sandbox starts, give its namespace a veth once it runs (and again after a restore), and
undo the same in reverse, idempotently, so release after a half-made network (or after
a crash) leaves nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sandlot.domain.network_policy import NetworkPolicy
from sandlot.network import firewall, links, netns
from sandlot.network.addresses import AddressPool
from sandlot.network.admissions import AdmissionBatcher
from sandlot.network.resolver import Resolver, Verdict, host_upstreams

log = logging.getLogger(__name__)

DEFAULT_POOL = ipaddress.IPv4Network("10.88.0.0/16")
MIN_ALLOW_SECONDS = 60
"""Answered addresses stay open at least this long: programs cache names past short TTLs."""


@dataclass(frozen=True)
class NetworkConfig:
    run_key: str
    bridge: str = "sandlot0"
    pool: ipaddress.IPv4Network = DEFAULT_POOL
    dns_port: int = 0
    upstreams: list[str] | None = None
    static_hosts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxNetwork:
    """What the runtime needs: the namespace to join and the resolver to name."""

    netns: Path
    address: str
    nameserver: str


@dataclass
class _Attached:
    address: ipaddress.IPv4Interface
    policy: NetworkPolicy
    resolved: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Answered address -> (name asked, monotonic expiry)."""


class NetworkManager:
    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self.addresses = AddressPool(config.pool, config.run_key)
        self.gateway = self.addresses.gateway
        self.on_denied: Callable[[str, str], None] = lambda sandbox_id, name: None
        self._attached: dict[str, _Attached] = {}
        self._by_address: dict[str, str] = {}
        self.admissions = AdmissionBatcher(firewall.apply)
        upstreams = config.upstreams if config.upstreams is not None else host_upstreams()
        self.resolver = Resolver(
            judge=self._judge,
            admit=self._admit,
            on_denied=lambda sandbox_id, name: self.on_denied(sandbox_id, name),
            upstreams=upstreams,
            static_hosts=config.static_hosts,
        )

    # ---- names for what the host holds per sandbox ----------------------------------

    def netns_path(self, sandbox_id: str) -> Path:
        return netns.NETNS_DIR / f"sandlot-{self.config.run_key}-{sandbox_id}"

    def _table(self, sandbox_id: str) -> str:
        return firewall.table_name(self.config.run_key, sandbox_id)

    def _alias(self, sandbox_id: str) -> str:
        return f"sandlot {self.config.run_key} {sandbox_id}"

    # ---- start and stop ------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(links.ensure_bridge, self.config.bridge, self.gateway)
        await self.resolver.start(str(self.gateway.ip), self.config.dns_port)

    async def close(self) -> None:
        """Stop answering; sandboxes keep their networks and are adopted on next start."""
        await self.resolver.close()
        await self.admissions.close()

    # ---- per sandbox ---------------------------------------------------------------

    async def prepare(self, sandbox_id: str, policy: NetworkPolicy) -> SandboxNetwork:
        """Address and rules, before the sandbox starts; `plug` gives it its interface
        once it runs. On failure nothing is left behind."""
        address = self.addresses.lease(sandbox_id)
        self._attach(sandbox_id, address, policy)
        try:
            await self._write_rules(sandbox_id)
        except BaseException:
            await self.release(sandbox_id, str(address.ip))
            raise
        return SandboxNetwork(self.netns_path(sandbox_id), str(address.ip), str(self.gateway.ip))

    async def plug(self, sandbox_id: str, pid: int) -> None:
        """Give the running sandbox (its init is `pid`) its veth, address and route.

        The namespace is the one the sandbox's runtime made, so it belongs to the
        sandbox's user namespace: CRIU can checkpoint it, and the sandbox can mount its
        own sysfs. A restored sandbox has a new one, so this is done again after every
        restore; the namespace is pinned at `netns_path` for the host's own use.
        """
        attached = self._attached[sandbox_id]
        path = self.netns_path(sandbox_id)
        await asyncio.to_thread(self._make_links, sandbox_id, path, attached.address, pid)

    async def unplug(self, sandbox_id: str) -> None:
        """Take the veth out before a checkpoint (CRIU cannot dump a veth whose peer is
        outside the sandbox); the address, policy and rules stay. Idempotent."""
        await asyncio.to_thread(links.delete_link, links.host_ifname(sandbox_id))
        await asyncio.to_thread(netns.remove, self.netns_path(sandbox_id))

    def _make_links(
        self, sandbox_id: str, path: Path, address: ipaddress.IPv4Interface, pid: int
    ) -> None:
        veth = links.Veth(links.host_ifname(sandbox_id), self._alias(sandbox_id))
        links.delete_link(veth.host_name)
        links.forget_neighbour(self.config.bridge, str(address.ip))  # a new veth, a new MAC
        netns.pin(path, pid)
        links.add_veth(veth, path, self.config.bridge)
        netns.run_inside(path, partial(links.configure_inside, address, self.gateway.ip))

    async def apply(self, sandbox_id: str, policy: NetworkPolicy) -> None:
        """Replace the policy of a running sandbox; names already answered stay open if
        the new policy still allows them."""
        attached = self._attached[sandbox_id]
        attached.policy = policy
        await self._write_rules(sandbox_id)

    async def adopt(self, sandbox_id: str, address: str, policy: NetworkPolicy) -> None:
        """Take back a sandbox a previous run of the server made (rules are re-applied:
        the resolver's port may have changed)."""
        prefix = self.config.pool.prefixlen
        self.addresses.claim(sandbox_id, address)
        self._attach(sandbox_id, ipaddress.IPv4Interface(f"{address}/{prefix}"), policy)
        await self._write_rules(sandbox_id)

    async def release(self, sandbox_id: str, address: str | None = None) -> None:
        """Remove everything of this sandbox's network. Idempotent."""
        attached = self._attached.pop(sandbox_id, None)
        if attached is not None:
            address = str(attached.address.ip)
            self._by_address.pop(address, None)
        if address is None:
            # A crash between leasing the address and storing it leaves only the lease
            # to say whose it is.
            address = next((a for a, owner in self.addresses.owned() if owner == sandbox_id), None)
        await firewall.apply(firewall.remove_table(self._table(sandbox_id)))
        await asyncio.to_thread(links.delete_link, links.host_ifname(sandbox_id))
        await asyncio.to_thread(netns.remove, self.netns_path(sandbox_id))
        if address is not None:
            await asyncio.to_thread(links.forget_neighbour, self.config.bridge, address)
            self.addresses.release(address)

    def address_of(self, sandbox_id: str) -> str | None:
        attached = self._attached.get(sandbox_id)
        return str(attached.address.ip) if attached else None

    def policy_of(self, sandbox_id: str) -> NetworkPolicy | None:
        attached = self._attached.get(sandbox_id)
        return attached.policy if attached else None

    # ---- leftovers -----------------------------------------------------------------

    async def traces(self, known: set[str]) -> list[str]:
        """What this server left on the host for sandboxes not in `known`."""
        found: list[str] = []
        marker = f"sandlot-{self.config.run_key}-"
        for path in netns.NETNS_DIR.glob(f"{marker}*"):
            owner = path.name.removeprefix(marker)
            if owner not in known:
                found.append(f"{owner}: network namespace {path} left behind")
        alias = self._alias("")
        for name, link_alias in await asyncio.to_thread(lambda: list(links.aliased_links(alias))):
            owner = link_alias.removeprefix(alias)
            if owner not in known:
                found.append(f"{owner}: veth {name} left behind")
        table_prefix = self._table("")
        for table in await firewall.tables(table_prefix):
            owner = table.removeprefix(table_prefix).replace("_", "-")
            if owner not in known:
                found.append(f"{owner}: nftables table {table} left behind")
        for address, owner in self.addresses.owned():
            if owner not in known:
                found.append(f"{owner}: address lease {address} left behind")
        return found

    async def remove_leftovers(self, known: set[str]) -> None:
        owners: dict[str, str | None] = {}
        for trace in await self.traces(known):
            owners.setdefault(trace.split(":", 1)[0], None)
        for leased, owner in self.addresses.owned():
            if owner in owners:
                owners[owner] = leased
        for owner, address in owners.items():
            log.info("removing the network left behind by %s", owner)
            await self.release(owner, address)

    # ---- the resolver's view ---------------------------------------------------------

    def _attach(
        self, sandbox_id: str, address: ipaddress.IPv4Interface, policy: NetworkPolicy
    ) -> None:
        self._attached[sandbox_id] = _Attached(address, policy)
        self._by_address[str(address.ip)] = sandbox_id

    def _judge(self, source: str, name: str) -> Verdict:
        sandbox_id = self._by_address.get(source)
        attached = self._attached.get(sandbox_id or "")
        if sandbox_id is None or attached is None:
            return Verdict(None, False)
        return Verdict(sandbox_id, attached.policy.egress.decide_name(name) == "allow")

    async def _admit(self, sandbox_id: str, name: str, addresses: list[str], ttl: int) -> None:
        attached = self._attached.get(sandbox_id)
        if attached is None or attached.policy.egress.default == "allow":
            # Under `allow` the answered-addresses set decides nothing (deny rules come
            # first, everything else passes): no nftables work for the answer at all.
            return
        seconds = max(ttl, MIN_ALLOW_SECONDS)
        now = time.monotonic()
        left = {a: attached.resolved.get(a, ("", 0.0))[1] - now for a in addresses}
        if all(t > seconds / 2 for t in left.values()):
            return  # open for a while yet: spare the answer an nft run (~20 ms)
        present = {a for a, t in left.items() if t > 1}
        commands = firewall.allow_resolved(self._table(sandbox_id), addresses, seconds, present)
        await self.admissions.add(commands)
        for a in addresses:
            attached.resolved[a] = (name, now + seconds)

    async def _write_rules(self, sandbox_id: str) -> None:
        attached = self._attached[sandbox_id]
        now = time.monotonic()
        egress = attached.policy.egress
        attached.resolved = {
            a: (name, t)
            for a, (name, t) in attached.resolved.items()
            if t > now + 1 and egress.decide_name(name) == "allow"
        }
        rules = firewall.SandboxRules(
            table=self._table(sandbox_id),
            address=attached.address.ip,
            gateway=self.gateway.ip,
            pool=self.config.pool,
            bridge=self.config.bridge,
            dns_port=self.resolver.port,
            egress=egress,
        )
        kept = [(a, int(t - now)) for a, (_, t) in attached.resolved.items()]
        await firewall.apply(firewall.ruleset(rules, kept))
