"""The DNS resolver every sandbox uses, run inside the server process.

It knows each query's sandbox by the source address, answers names the sandbox's
policy allows (from the static zone first, then by forwarding to the host's upstream
resolvers) and, before replying, lets the answered addresses through that sandbox's
firewall for their TTL. Names the policy denies get REFUSED. Sandboxes have no IPv6,
so AAAA questions get an empty answer at once rather than a slow failure.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

log = logging.getLogger(__name__)

STATIC_TTL = 60
UPSTREAM_TIMEOUT = 3.0
PORT_ATTEMPTS = 20
"""Free UDP ports tried before giving up on one whose TCP twin is free too."""
MAX_PENDING = 1024
"""Queries being answered at once, across sandboxes, before new ones are dropped."""
MAX_PENDING_PER_SOURCE = 64
"""Queries being answered at once for one sandbox: a flood from one cannot use up the
resolver for the others."""
QUERIES_PER_SECOND = 100.0
QUERY_BURST = 200.0
"""Queries one sandbox may have answered per second, and in one burst: a flood of
distinct names otherwise keeps the server's loop, which also serves the API and every
other sandbox, answering it; a dropped query is retried by the client, as from any
loaded resolver."""
MAX_TCP_PER_SOURCE = 8
"""Open DNS-over-TCP connections one sandbox may hold (thousands used up the server's
descriptors)."""
TCP_IDLE_TIMEOUT = 10.0
"""Seconds a DNS-over-TCP connection may wait for its next query."""


@dataclass(frozen=True)
class Verdict:
    """What the resolver's owner says about a query from `source`."""

    sandbox_id: str | None
    allowed: bool


Judge = Callable[[str, str], Verdict]
"""(source address, name) -> verdict; an unknown source gets sandbox_id None."""
Admit = Callable[[str, str, list[str], int], Awaitable[None]]
"""(sandbox id, name, addresses, ttl): open the firewall before the answer goes out."""
Denied = Callable[[str, str], None]


def host_upstreams(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    return [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]


class Resolver:
    def __init__(
        self,
        *,
        judge: Judge,
        admit: Admit,
        on_denied: Denied,
        upstreams: list[str],
        static_hosts: dict[str, str],
    ) -> None:
        self._judge = judge
        self._admit = admit
        self._on_denied = on_denied
        self._upstreams = upstreams
        self._static = {k.lower().rstrip("."): v for k, v in static_hosts.items()}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[str, int] = {}
        self._rates = _QueryRates(QUERIES_PER_SECOND, QUERY_BURST)
        self._tcp_open: dict[str, int] = {}
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on UDP and TCP at one port; with `port` 0, one free for both (the
        kernel picks a free UDP port, whose TCP twin may be taken: then try another)."""
        loop = asyncio.get_running_loop()
        for attempt in range(PORT_ATTEMPTS):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            chosen = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, chosen)
            except OSError as exc:
                transport.close()
                if port != 0 or exc.errno != errno.EADDRINUSE or attempt == PORT_ATTEMPTS - 1:
                    raise
                continue
            self._udp, self.port = transport, chosen
            return

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, wire: bytes, source: str, reply: Callable[[bytes], None]) -> None:
        mine = self._pending.get(source, 0)
        if len(self._tasks) >= MAX_PENDING or mine >= MAX_PENDING_PER_SOURCE:
            return  # a flood: drop the query as a loaded resolver would; clients retry
        if not self._rates.take(source):
            return
        self._pending[source] = mine + 1
        task = asyncio.get_running_loop().create_task(self._reply(wire, source, reply))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._done(done, source))

    def _done(self, task: asyncio.Task[None], source: str) -> None:
        self._tasks.discard(task)
        left = self._pending.get(source, 1) - 1
        if left > 0:
            self._pending[source] = left
        else:
            self._pending.pop(source, None)

    async def _reply(self, wire: bytes, source: str, reply: Callable[[bytes], None]) -> None:
        try:
            answer = await self.answer(wire, source)
        except Exception:
            log.exception("resolver failed on a query from %s", source)
            return
        if answer is not None:
            reply(answer)

    async def answer(self, wire: bytes, source: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if len(query.question) != 1:
            return _empty(query, dns.rcode.FORMERR)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        verdict = self._judge(source, name)
        if verdict.sandbox_id is None:
            return _empty(query, dns.rcode.REFUSED)
        if not verdict.allowed:
            self._on_denied(verdict.sandbox_id, name)
            return _empty(query, dns.rcode.REFUSED)
        if question.rdtype == dns.rdatatype.AAAA:
            return _empty(query, dns.rcode.NOERROR)
        static = self._static.get(name)
        if static is not None:
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA | dns.flags.RA
            if question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
                response.answer.append(
                    dns.rrset.from_text(question.name, STATIC_TTL, "IN", "A", static)
                )
                await self._admit(verdict.sandbox_id, name, [static], STATIC_TTL)
            return bytes(response.to_wire())
        upstream = await self._forward(query)
        if upstream is None:
            return _empty(query, dns.rcode.SERVFAIL)
        addresses, ttl = _addresses(upstream)
        if addresses:
            await self._admit(verdict.sandbox_id, name, addresses, ttl)
        upstream.id = query.id
        return bytes(upstream.to_wire())

    async def _forward(self, query: dns.message.Message) -> dns.message.Message | None:
        for upstream in self._upstreams:
            host, _, port = upstream.partition("#")
            try:
                return await dns.asyncquery.udp(
                    query, host, timeout=UPSTREAM_TIMEOUT, port=int(port or 53)
                )
            except (dns.exception.DNSException, OSError) as exc:
                log.warning("upstream resolver %s failed: %s", upstream, exc)
        return None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = writer.get_extra_info("peername")[0]
        if self._tcp_open.get(source, 0) >= MAX_TCP_PER_SOURCE:
            writer.close()
            return
        self._tcp_open[source] = self._tcp_open.get(source, 0) + 1
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    wire = await reader.readexactly(size)
                answer = await self.answer(wire, source)
                if answer is None:
                    break
                writer.write(struct.pack("!H", len(answer)) + answer)
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            left = self._tcp_open.get(source, 1) - 1
            if left > 0:
                self._tcp_open[source] = left
            else:
                self._tcp_open.pop(source, None)
            writer.close()


class _QueryRates:
    """A token bucket per source address. Buckets that have refilled are forgotten
    once many are held, so the table stays as small as the sandboxes asking."""

    KEPT = 4096

    def __init__(self, rate: float, burst: float) -> None:
        self._rate, self._burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        """source -> (tokens, when they were counted)"""

    def take(self, source: str) -> bool:
        now = time.monotonic()
        tokens = self._tokens(source, now)
        if tokens < 1:
            self._buckets[source] = (tokens, now)
            return False
        self._buckets[source] = (tokens - 1, now)
        if len(self._buckets) > self.KEPT:
            self._buckets = {
                kept: bucket
                for kept, bucket in self._buckets.items()
                if self._tokens(kept, now) < self._burst
            }
        return True

    def _tokens(self, source: str, now: float) -> float:
        tokens, then = self._buckets.get(source, (self._burst, now))
        return min(self._burst, tokens + (now - then) * self._rate)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport has sendto without subclassing DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self.transport
        if transport is None:
            return
        self.resolver._spawn(data, addr[0], lambda answer: transport.sendto(answer, addr))


def _empty(query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    response.set_rcode(rcode)
    return bytes(response.to_wire())


def _addresses(response: dns.message.Message) -> tuple[list[str], int]:
    found: list[str] = []
    ttls: list[int] = []
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.A and rrset.rdclass == dns.rdataclass.IN:
            found += [r.address for r in rrset]
            ttls.append(rrset.ttl)
    return found, min(ttls, default=STATIC_TTL)
