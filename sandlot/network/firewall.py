"""nftables rules for one sandbox, written as `nft -j` JSON and applied atomically.

Each sandbox has a table of its own (`sandlot_RUNKEY_ID`), so replacing its policy or
removing it touches nothing else, and leftovers are found by name. The table:

- forward: replies to the sandbox pass; nothing else may open a connection to it.
  From the sandbox: link-local (cloud metadata) and the whole pool (other sandboxes)
  are dropped whatever the policy says, then the deny set, then the allow sets (CIDRs
  and the addresses the resolver answered, which expire with their TTL), then the
  policy's default.
- input: the sandbox may reach the host only at the resolver.
- prerouting: port 53 on the gateway is redirected to the resolver's port.
- postrouting: masquerade whatever leaves the host.

Sandbox-to-sandbox traffic on the bridge itself is stopped by isolated bridge ports
(see links.py); traffic routed through the host by the pool rule here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandlot.domain.network_policy import EgressPolicy

FAMILY = "inet"
METADATA = ipaddress.IPv4Network("169.254.0.0/16")
ESTABLISHED = {
    "match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}
}
ACCEPT: dict[str, Any] = {"accept": None}
DROP: dict[str, Any] = {"drop": None}

Command = dict[str, Any]


class FirewallError(RuntimeError):
    pass


@dataclass(frozen=True)
class SandboxRules:
    table: str
    address: ipaddress.IPv4Address
    gateway: ipaddress.IPv4Address
    pool: ipaddress.IPv4Network
    bridge: str
    dns_port: int
    egress: EgressPolicy


def table_name(run_key: str, sandbox_id: str) -> str:
    return f"sandlot_{run_key}_{sandbox_id.replace('-', '_')}"


def _ip(field: str) -> dict[str, Any]:
    return {"payload": {"protocol": "ip", "field": field}}


def _is(left: dict[str, Any], right: Any, op: str = "==") -> Command:
    return {"match": {"op": op, "left": left, "right": right}}


def _prefix(network: ipaddress.IPv4Network) -> dict[str, Any]:
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def _table(name: str) -> dict[str, Any]:
    return {"family": FAMILY, "name": name}


def _chain(table: str, name: str, kind: str, hook: str, prio: int) -> Command:
    return {
        "add": {
            "chain": {
                "family": FAMILY,
                "table": table,
                "name": name,
                "type": kind,
                "hook": hook,
                "prio": prio,
                "policy": "accept",
            }
        }
    }


def _rule(table: str, chain: str, *expr: Command) -> Command:
    return {"add": {"rule": {"family": FAMILY, "table": table, "chain": chain, "expr": list(expr)}}}


def _set(table: str, name: str, flags: list[str]) -> Command:
    spec: dict[str, Any] = {"family": FAMILY, "table": table, "name": name, "type": "ipv4_addr"}
    spec["flags"] = flags
    if "interval" in flags:
        spec["auto-merge"] = True
    return {"add": {"set": spec}}


def _elements(table: str, name: str, elems: list[Any]) -> Command:
    return {"add": {"element": {"family": FAMILY, "table": table, "name": name, "elem": elems}}}


def ruleset(r: SandboxRules, resolved: Iterable[tuple[str, int]] = ()) -> list[Command]:
    """Commands that (re)create the sandbox's table; `resolved` are (address, seconds
    left) pairs already answered by the resolver, kept across a policy change."""
    t = r.table
    me, gw = str(r.address), str(r.gateway)
    from_me = _is(_ip("saddr"), me)
    egress = r.egress
    commands: list[Command] = [
        {"add": {"table": _table(t)}},
        {"delete": {"table": _table(t)}},
        {"add": {"table": _table(t)}},
        _set(t, "allow_net", ["interval"]),
        _set(t, "deny_net", ["interval"]),
        _set(t, "allow_dns", ["timeout"]),
        _chain(t, "forward", "filter", "forward", 0),
        _chain(t, "input", "filter", "input", 0),
        _chain(t, "prerouting", "nat", "prerouting", -100),
        _chain(t, "postrouting", "nat", "postrouting", 100),
        _rule(t, "forward", _is(_ip("daddr"), me), ESTABLISHED, ACCEPT),
        _rule(t, "forward", _is(_ip("daddr"), me), DROP),
        _rule(t, "forward", from_me, ESTABLISHED, ACCEPT),
        _rule(
            t,
            "forward",
            from_me,
            _is(_ip("daddr"), {"set": [_prefix(METADATA), _prefix(r.pool)]}),
            DROP,
        ),
        _rule(t, "forward", from_me, _is(_ip("daddr"), "@deny_net"), DROP),
        _rule(t, "forward", from_me, _is(_ip("daddr"), "@allow_net"), ACCEPT),
        _rule(t, "forward", from_me, _is(_ip("daddr"), "@allow_dns"), ACCEPT),
        _rule(t, "forward", from_me, ACCEPT if egress.default == "allow" else DROP),
        _rule(t, "input", from_me, ESTABLISHED, ACCEPT),
        _rule(
            t,
            "input",
            from_me,
            _is(_ip("daddr"), gw),
            _is({"meta": {"key": "l4proto"}}, {"set": ["udp", "tcp"]}),
            _is({"payload": {"protocol": "th", "field": "dport"}}, r.dns_port),
            ACCEPT,
        ),
        _rule(t, "input", from_me, DROP),
        _rule(
            t,
            "prerouting",
            from_me,
            _is(_ip("daddr"), gw),
            _is({"meta": {"key": "l4proto"}}, {"set": ["udp", "tcp"]}),
            _is({"payload": {"protocol": "th", "field": "dport"}}, 53),
            {"dnat": {"family": "ip", "addr": gw, "port": r.dns_port}},
        ),
        _rule(
            t,
            "postrouting",
            from_me,
            _is({"meta": {"key": "oifname"}}, r.bridge, "!="),
            {"masquerade": None},
        ),
    ]
    for set_name, rules in (("allow_net", egress.allow), ("deny_net", egress.deny)):
        networks = list(ipaddress.collapse_addresses(rules.networks))
        if networks:
            commands.append(_elements(t, set_name, [_prefix(n) for n in networks]))
    elems = [{"elem": {"val": a, "timeout": s}} for a, s in resolved]
    if elems:
        commands.append(_elements(t, "allow_dns", elems))
    return commands


def allow_resolved(
    table: str, addresses: Iterable[str], seconds: int, refresh: set[str]
) -> list[Command]:
    """Add answered addresses; those in `refresh` are already present and get a new timeout."""
    commands: list[Command] = []
    elem = [{"elem": {"val": a, "timeout": seconds}} for a in sorted(refresh)]
    if elem:
        spec = {"family": FAMILY, "table": table, "name": "allow_dns", "elem": elem}
        commands.append({"delete": {"element": spec}})
    elems = [{"elem": {"val": a, "timeout": seconds}} for a in sorted({*addresses, *refresh})]
    if elems:
        commands.append(_elements(table, "allow_dns", elems))
    return commands


def remove_table(table: str) -> list[Command]:
    """Idempotent: adding an existing table is a no-op, so the delete always finds one."""
    return [{"add": {"table": _table(table)}}, {"delete": {"table": _table(table)}}]


async def apply(commands: list[Command]) -> None:
    """One transaction: all of it applies or none does.

    The rules go through a real pipe: nft opens /dev/stdin by path, which fails on the
    socket pairs uvloop gives subprocesses.
    """
    if not commands:
        return
    read_end, write_end = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            "nft",
            "-j",
            "-f",
            "-",
            stdin=read_end,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(read_end)
    payload = json.dumps({"nftables": commands}).encode()
    await asyncio.to_thread(_write_all, write_end, payload)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise FirewallError(f"nft refused the rules: {err.decode().strip()[:2000]}")


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(data)


async def tables(prefix: str) -> list[str]:
    """Names of the inet tables starting with `prefix`."""
    proc = await asyncio.create_subprocess_exec(
        "nft",
        "-j",
        "list",
        "tables",
        FAMILY,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise FirewallError(f"nft list tables failed: {err.decode().strip()}")
    listed = json.loads(out or b'{"nftables": []}')["nftables"]
    names = [item["table"]["name"] for item in listed if "table" in item]
    return [n for n in names if n.startswith(prefix)]
