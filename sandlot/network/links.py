"""Netlink work through pyroute2: the shared bridge, each sandbox's veth pair, and the
interfaces inside its namespace.

Every host-side veth carries an alias `sandlot RUNKEY SANDBOX_ID`, so a server finds its
own leftovers after a crash without touching another server's on the same host.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

ENOENT = 2
EEXIST = 17
SANDBOX_IFNAME = "eth0"
SYSCTLS = {
    # No IPv6 at all: the firewall polices IPv4 only.
    "net/ipv6/conf/all/disable_ipv6": "1",
    "net/ipv6/conf/default/disable_ipv6": "1",
    # The namespace belongs to the host's user namespace, so root inside the sandbox
    # holds no capability over it: let any user bind low ports and ping.
    "net/ipv4/ip_unprivileged_port_start": "0",
    "net/ipv4/ping_group_range": "0 2147483647",
}


@dataclass(frozen=True)
class Veth:
    host_name: str
    alias: str


def host_ifname(sandbox_id: str) -> str:
    """At most 15 characters, as the kernel demands: `sl-` and the id's random part."""
    return f"sl-{sandbox_id.removeprefix('sbx-')}"[:15]


def ensure_bridge(name: str, gateway: ipaddress.IPv4Interface) -> None:
    """Create the bridge with the gateway address if missing, and turn forwarding on."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as exc:
                if exc.code != EEXIST:  # another server made it first
                    raise
            found = ipr.link_lookup(ifname=name)
        index = found[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=2)}
        if str(gateway.ip) not in have:
            try:
                ipr.addr(
                    "add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen
                )
            except NetlinkError as exc:
                if exc.code != EEXIST:
                    raise
        if Path(f"/sys/class/net/{name}/addr_assign_type").read_text().strip() != "3":
            ipr.link("set", index=index, address=bridge_mac(name))
        ipr.link("set", index=index, state="up")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")


def bridge_mac(name: str) -> str:
    """A fixed, locally administered MAC for the bridge. Left unset, a bridge takes the
    lowest MAC of its ports and changes it as veths come and go, and sandboxes holding
    the gateway's old MAC in their ARP cache lose their traffic until it expires."""
    digest = hashlib.sha256(name.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def configure_inside(address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address) -> None:
    """Runs inside the sandbox's namespace: sysctls, loopback, eth0, default route."""
    for key, value in SYSCTLS.items():
        Path("/proc/sys", key).write_text(value)
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        index = ipr.link_lookup(ifname=SANDBOX_IFNAME)[0]
        ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))


def add_veth(veth: Veth, netns_path: Path, bridge: str) -> None:
    """The pair, its sandbox end moved into the namespace as eth0, its host end on the
    bridge as an isolated port (isolated ports cannot reach each other at layer 2)."""
    with IPRoute() as ipr, open(netns_path) as ns:
        ipr.link(
            "add",
            ifname=veth.host_name,
            kind="veth",
            peer={"ifname": SANDBOX_IFNAME, "net_ns_fd": ns.fileno()},
        )
        index = ipr.link_lookup(ifname=veth.host_name)[0]
        master = ipr.link_lookup(ifname=bridge)[0]
        ipr.link("set", index=index, master=master, ifalias=veth.alias)
        ipr.brport("set", index=index, isolated=1)
        ipr.link("set", index=index, state="up")


def delete_link(name: str) -> None:
    """Idempotent; deleting one end of a veth deletes both."""
    with IPRoute() as ipr:
        try:
            ipr.link("del", ifname=name)
        except NetlinkError as exc:
            if exc.code not in (ENOENT, 19):  # ENODEV
                raise


def forget_neighbour(bridge: str, address: str) -> None:
    """Drop the host's ARP entry for a released address. The next sandbox to lease it
    has another MAC, and Linux ignores a new MAC for an entry updated within the last
    second (`locktime`): replies would go to the old one until the entry went stale."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        if not found:
            return
        try:
            ipr.neigh("del", dst=address, ifindex=found[0])
        except NetlinkError as exc:
            if exc.code not in (ENOENT, 19):
                raise


def aliased_links(prefix: str) -> Iterator[tuple[str, str]]:
    """(name, alias) of host links whose alias starts with `prefix`."""
    with IPRoute() as ipr:
        for link in ipr.get_links():
            alias = link.get_attr("IFLA_IFALIAS") or ""
            if alias.startswith(prefix):
                yield link.get_attr("IFLA_IFNAME"), alias
