"""The policy model: parsing, name matching, precedence, the canonical form."""

from __future__ import annotations

import pytest

from sandlot.domain.network_policy import DEFAULT_PREVIEW_PORTS, NetworkPolicy
from sandlot.errors import InvalidConfigError


def policy(**egress: object) -> NetworkPolicy:
    return NetworkPolicy.parse({"egress": egress})


def test_defaults_allow_everything_and_preview_the_usual_ports() -> None:
    p = NetworkPolicy.parse(None)
    assert p.egress.default == "allow"
    assert p.egress.decide_name("example.com") == "allow"
    assert p.preview_ports == DEFAULT_PREVIEW_PORTS


@pytest.mark.parametrize(
    ("name", "decision"),
    [
        ("pypi.org", "allow"),
        ("PyPI.org.", "allow"),  # case and the final dot do not matter
        ("files.pypi.org", "deny"),  # an exact rule covers no subdomain
        ("api.github.com", "allow"),
        ("a.b.github.com", "allow"),  # wildcards cover every depth below
        ("github.com", "deny"),  # but not the apex
        ("evilgithub.com", "deny"),
        ("gist.github.com", "deny"),  # deny wins over a matching allow
    ],
)
def test_name_matching(name: str, decision: str) -> None:
    p = policy(default="deny", allow=["pypi.org", "*.github.com"], deny=["gist.github.com"])
    assert p.egress.decide_name(name) == decision


def test_default_allow_with_a_deny_list() -> None:
    p = policy(default="allow", deny=["*.ads.example"])
    assert p.egress.decide_name("x.ads.example") == "deny"
    assert p.egress.decide_name("example.org") == "allow"


def test_cidrs_and_addresses_are_split_from_domains() -> None:
    p = policy(allow=["10.20.0.0/16", "1.2.3.4", "10.20.1.7/16", "pypi.org"])
    assert [str(n) for n in p.egress.allow.networks] == [
        "10.20.0.0/16",
        "1.2.3.4/32",
        "10.20.0.0/16",
    ]
    assert p.egress.allow.domains == ("pypi.org",)


def test_canonical_form_round_trips() -> None:
    raw = {
        "egress": {"default": "deny", "allow": ["10.0.0.0/8", "*.github.com"], "deny": []},
        "ingress": {"allowPorts": [3000, 8080]},
    }
    p = NetworkPolicy.parse(raw)
    assert p.to_dict() == raw
    assert NetworkPolicy.parse(p.to_dict()) == p


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ({"egress": {"default": "maybe"}}, "'allow' or 'deny'"),
        ({"egress": {"allow": ["has space.com"]}}, "neither"),
        ({"egress": {"allow": ["*.*.example.com"]}}, "neither"),
        ({"egress": {"allow": ["exa*mple.com"]}}, "neither"),
        ({"egress": {"allow": ["-bad.example.com"]}}, "neither"),
        ({"egress": {"allow": ["10.0.0.0/33"]}}, "neither"),
        ({"egress": {"allow": ["2001:db8::/32"]}}, "IPv6"),
        ({"egress": {"allow": "pypi.org"}}, "list of strings"),
        ({"egress": {"allow": ["a.com"] * 257}}, "at most"),
        ({"egress": {"alow": []}}, "unknown field"),
        ({"ingress": {"allowPorts": [0]}}, "ports 1-65535"),
        ({"ingress": {"allowPorts": [True]}}, "ports 1-65535"),
        ({"wifi": {}}, "unknown field"),
    ],
)
def test_mistakes_are_invalid_config(raw: dict[str, object], complaint: str) -> None:
    with pytest.raises(InvalidConfigError) as caught:
        NetworkPolicy.parse(raw)
    assert complaint in caught.value.message
