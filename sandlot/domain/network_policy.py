"""The network policy a sandbox runs under, as users write it, validated and matched.

Egress rules are CIDRs (or single addresses) and domain names; `*.example.com` matches
every name below example.com but not example.com itself. Deny wins over allow, and
either wins over the default. Domain rules are enforced by the resolver; CIDR rules by
nftables sets.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sandlot.errors import InvalidConfigError

DEFAULT_PREVIEW_PORTS = (3000, 3001, 5173, 8000, 8080)
MAX_RULES = 256
LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
DOMAIN = re.compile(rf"^(\*\.)?({LABEL}\.)*{LABEL}$")

Decision = Literal["allow", "deny"]


@dataclass(frozen=True)
class Rules:
    """One list of rules, split by kind."""

    networks: tuple[ipaddress.IPv4Network, ...] = ()
    domains: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: list[str], where: str) -> Rules:
        if len(entries) > MAX_RULES:
            raise InvalidConfigError(f"{where} holds at most {MAX_RULES} rules")
        networks: list[ipaddress.IPv4Network] = []
        domains: list[str] = []
        for entry in entries:
            text = entry.strip().lower().rstrip(".")
            network = _network(text)
            if network is not None:
                networks.append(network)
            elif DOMAIN.match(text) and len(text) <= 253:
                domains.append(text)
            else:
                raise InvalidConfigError(
                    f"{where}: {entry!r} is neither an IPv4 address or CIDR nor a domain name "
                    "(wildcards only as a leading '*.')",
                    details={"rule": entry},
                )
        return cls(tuple(networks), tuple(domains))

    def matches_name(self, name: str) -> bool:
        return any(_name_matches(pattern, name) for pattern in self.domains)


@dataclass(frozen=True)
class EgressPolicy:
    default: Decision = "allow"
    allow: Rules = field(default_factory=Rules)
    deny: Rules = field(default_factory=Rules)

    def decide_name(self, name: str) -> Decision:
        """Whether the resolver answers `name` for this sandbox."""
        name = name.lower().rstrip(".")
        if self.deny.matches_name(name):
            return "deny"
        if self.allow.matches_name(name):
            return "allow"
        return self.default


@dataclass(frozen=True)
class NetworkPolicy:
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    preview_ports: tuple[int, ...] = DEFAULT_PREVIEW_PORTS
    """Ports proxied without being exposed first (`ingress.allowPorts`)."""

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> NetworkPolicy:
        """From the API's camelCase form; every mistake is an INVALID_CONFIG."""
        raw = raw or {}
        _only(raw, {"egress", "ingress"}, "network")
        egress_raw = raw.get("egress") or {}
        ingress_raw = raw.get("ingress") or {}
        _only(egress_raw, {"default", "allow", "deny"}, "network.egress")
        _only(ingress_raw, {"allowPorts"}, "network.ingress")
        default = egress_raw.get("default", "allow")
        if default not in ("allow", "deny"):
            raise InvalidConfigError(
                f"network.egress.default must be 'allow' or 'deny', not {default!r}"
            )
        egress = EgressPolicy(
            default=default,
            allow=Rules.parse(_strings(egress_raw, "allow", "network.egress"), "egress.allow"),
            deny=Rules.parse(_strings(egress_raw, "deny", "network.egress"), "egress.deny"),
        )
        ports = ingress_raw.get("allowPorts", list(DEFAULT_PREVIEW_PORTS))
        if not isinstance(ports, list) or not all(_is_port(p) for p in ports):
            raise InvalidConfigError("network.ingress.allowPorts must be a list of ports 1-65535")
        return cls(egress, tuple(sorted(set(ports))))

    def merged(self, changes: dict[str, Any]) -> NetworkPolicy:
        """This policy with `changes` (camelCase, like `parse` takes) laid over it: a
        section or field the changes leave out keeps its value here."""
        raw = self.to_dict()
        _only(changes, {"egress", "ingress"}, "network")
        for section in ("egress", "ingress"):
            given = changes.get(section)
            if given is not None:
                if not isinstance(given, dict):
                    raise InvalidConfigError(f"network.{section} must be an object")
                raw[section] = {**raw[section], **given}
        return NetworkPolicy.parse(raw)

    def to_dict(self) -> dict[str, Any]:
        """The canonical form stored with the sandbox and returned by the API."""
        e = self.egress
        return {
            "egress": {
                "default": e.default,
                "allow": [*map(str, e.allow.networks), *e.allow.domains],
                "deny": [*map(str, e.deny.networks), *e.deny.domains],
            },
            "ingress": {"allowPorts": list(self.preview_ports)},
        }


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


def _network(text: str) -> ipaddress.IPv4Network | None:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if not isinstance(network, ipaddress.IPv4Network):
        raise InvalidConfigError(f"{text!r}: sandboxes have no IPv6, so IPv6 rules cannot apply")
    return network


def _only(raw: object, keys: set[str], where: str) -> None:
    if not isinstance(raw, dict):
        raise InvalidConfigError(f"{where} must be an object")
    unknown = set(raw) - keys
    if unknown:
        raise InvalidConfigError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(sorted(keys))}"
        )


def _strings(raw: dict[str, Any], key: str, where: str) -> list[str]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidConfigError(f"{where}.{key} must be a list of strings")
    return value


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
