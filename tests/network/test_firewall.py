"""The nftables ruleset a sandbox gets, read as nft's JSON: the isolation rules come
before any rule a policy controls, whatever the policy."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from sandlot.domain.network_policy import NetworkPolicy
from sandlot.network import firewall

POOL = ipaddress.IPv4Network("10.88.0.0/16")


def rules_for(raw: dict[str, Any]) -> list[dict[str, Any]]:
    r = firewall.SandboxRules(
        table="t",
        address=ipaddress.IPv4Address("10.88.0.9"),
        gateway=ipaddress.IPv4Address("10.88.0.1"),
        pool=POOL,
        bridge="sandlot0",
        dns_port=5353,
        egress=NetworkPolicy.parse(raw).egress,
    )
    return firewall.ruleset(r, [("192.0.2.7", 30)])


def forward_rules(commands: list[dict[str, Any]]) -> list[str]:
    return [
        json.dumps(c["add"]["rule"]["expr"])
        for c in commands
        if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == "forward"
    ]


def test_isolation_comes_before_every_allow_even_for_allow_all() -> None:
    forward = forward_rules(rules_for({"egress": {"default": "allow", "allow": ["0.0.0.0/0"]}}))
    isolation = next(i for i, r in enumerate(forward) if "169.254.0.0" in r and "10.88.0.0" in r)
    first_allow = next(i for i, r in enumerate(forward) if "@allow_net" in r)
    assert isolation < first_allow
    assert '"drop"' in forward[isolation]


def test_default_decides_the_last_rule() -> None:
    assert '"drop"' in forward_rules(rules_for({"egress": {"default": "deny"}}))[-1]
    assert '"accept"' in forward_rules(rules_for({"egress": {"default": "allow"}}))[-1]


def test_overlapping_cidrs_are_merged_and_answers_kept_with_their_time() -> None:
    commands = rules_for({"egress": {"allow": ["10.0.0.0/8", "10.20.0.0/16", "1.2.3.4"]}})
    elements = {
        c["add"]["element"]["name"]: c["add"]["element"]["elem"]
        for c in commands
        if "element" in c.get("add", {})
    }
    assert elements["allow_net"] == [
        {"prefix": {"addr": "1.2.3.4", "len": 32}},
        {"prefix": {"addr": "10.0.0.0", "len": 8}},
    ]
    assert elements["allow_dns"] == [{"elem": {"val": "192.0.2.7", "timeout": 30}}]


def test_replacing_is_one_transaction_that_starts_from_an_empty_table() -> None:
    commands = rules_for({})
    assert commands[:3] == [
        {"add": {"table": {"family": "inet", "name": "t"}}},
        {"delete": {"table": {"family": "inet", "name": "t"}}},
        {"add": {"table": {"family": "inet", "name": "t"}}},
    ]
