"""The resolver over real UDP and TCP on loopback: static answers open the firewall
before the reply goes out, denied names are refused and reported, strangers refused."""

from __future__ import annotations

import dns.asyncquery
import dns.message
import dns.rcode

from sandlot.domain.network_policy import NetworkPolicy
from sandlot.network.resolver import Resolver, Verdict

POLICY = NetworkPolicy.parse({"egress": {"default": "deny", "allow": ["*.allowed.test"]}})


async def test_answers_refuses_and_reports() -> None:
    admitted: list[tuple[str, str, list[str], int]] = []
    denied: list[tuple[str, str]] = []

    def judge(source: str, name: str) -> Verdict:
        if source != "127.0.0.1":
            return Verdict(None, False)
        return Verdict("sbx-a", POLICY.egress.decide_name(name) == "allow")

    async def admit(sandbox_id: str, name: str, addresses: list[str], ttl: int) -> None:
        admitted.append((sandbox_id, name, addresses, ttl))

    resolver = Resolver(
        judge=judge,
        admit=admit,
        on_denied=lambda sandbox_id, name: denied.append((sandbox_id, name)),
        upstreams=[],
        static_hosts={"www.allowed.test": "192.0.2.10", "denied.test": "192.0.2.11"},
    )
    await resolver.start("127.0.0.1", 0)
    try:
        ask = dns.message.make_query("www.allowed.test", "A")
        answer = await dns.asyncquery.udp(ask, "127.0.0.1", port=resolver.port, timeout=2)
        assert [r.address for r in answer.answer[0]] == ["192.0.2.10"]
        assert admitted == [("sbx-a", "www.allowed.test", ["192.0.2.10"], 60)]

        over_tcp = await dns.asyncquery.tcp(ask, "127.0.0.1", port=resolver.port, timeout=2)
        assert [r.address for r in over_tcp.answer[0]] == ["192.0.2.10"]

        refused = await dns.asyncquery.udp(
            dns.message.make_query("denied.test", "A"), "127.0.0.1", port=resolver.port, timeout=2
        )
        assert refused.rcode() == dns.rcode.REFUSED and not refused.answer
        assert denied == [("sbx-a", "denied.test")]

        v6 = await dns.asyncquery.udp(
            dns.message.make_query("www.allowed.test", "AAAA"),
            "127.0.0.1",
            port=resolver.port,
            timeout=2,
        )
        assert v6.rcode() == dns.rcode.NOERROR and not v6.answer

        no_upstream = await dns.asyncquery.udp(
            dns.message.make_query("other.allowed.test", "A"),
            "127.0.0.1",
            port=resolver.port,
            timeout=2,
        )
        assert no_upstream.rcode() == dns.rcode.SERVFAIL
    finally:
        await resolver.close()
