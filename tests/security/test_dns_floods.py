"""A sandbox flooding the server's DNS resolver: random names under a domain its policy
allows (each answer a new address to let through), denied names, and idle TCP
connections. The host runs at most one nft at a time, the store gets a bounded number
of denied-name events, the TCP connections are capped and closed when idle, and a
bystander sandbox of another organisation answers throughout.

The upstream is a stand-in DNS server run by this test on the host (there is no other
here): it answers every name under flood.test with a fresh address.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import dns.message
import dns.rrset
import pytest

from sandlot import Sandbox, Sandlot
from sandlot.network.resolver import MAX_TCP_PER_SOURCE, TCP_IDLE_TIMEOUT
from sandlot.testing import ServerProcess, ensure_base_template
from tests.security.probes import exec_p50, other_org_key


class StandInUpstream:
    """Answers A questions for any name with a new 198.18.x.y address."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answered = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            n = self.answered
            self.answered += 1
            address = f"198.18.{(n >> 8) & 255}.{n & 255}"
            response.answer.append(
                dns.rrset.from_text(query.question[0].name, 300, "IN", "A", address)
            )
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[StandInUpstream]:
    stand_in = StandInUpstream()
    yield stand_in
    stand_in.close()


@pytest.fixture(scope="module")
def dns_server(
    tmp_path_factory: pytest.TempPathFactory, upstream: StandInUpstream
) -> Iterator[ServerProcess]:
    if os.geteuid() != 0:
        pytest.skip("needs root: sandboxes use namespaces, mounts and cgroups")
    ensure_base_template()
    srv = ServerProcess(
        tmp_path_factory.mktemp("sandlot-dns"),
        extra_env={"SANDLOT_DNS_UPSTREAMS": json.dumps([f"127.0.0.1#{upstream.port}"])},
    )
    srv.start()
    yield srv
    srv.destroy_all()
    srv.stop()


@pytest.fixture(scope="module")
def dns_client(dns_server: ServerProcess) -> Iterator[Sandlot]:
    with Sandlot(api_url=dns_server.url, api_key=dns_server.api_key) as c:
        yield c


NAMESERVER = (
    "ns = [l.split()[1] for l in open('/etc/resolv.conf') if l.startswith('nameserver')][0]"
)
FLOOD = f"""
import random, socket, string, struct, sys, time
{NAMESERVER}
suffix, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
sent = 0
end = time.time() + seconds
while time.time() < end:
    label = ''.join(random.choices(string.ascii_lowercase, k=12))
    q = struct.pack('!HHHHHH', sent & 0xffff, 0x0100, 1, 0, 0, 0)
    for part in (label + '.' + suffix).split('.'):
        q += bytes([len(part)]) + part.encode()
    q += b'\\0' + struct.pack('!HH', 1, 1)
    try:
        s.sendto(q, (ns, 53)); sent += 1
    except BlockingIOError:
        time.sleep(0.001)
    try:
        while True: s.recv(4096)
    except BlockingIOError:
        pass
    time.sleep(0.0005)
print(sent)
"""


def nft_processes(server: ServerProcess) -> int:
    """nft processes the server under test runs now: its children, not yet exited (other
    servers on the host, the suite's own among them, run theirs)."""
    assert server.proc is not None
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    # "pid (comm) state ppid ...": comm may hold spaces, so split after it
                    comm, _, rest = f.read().partition(")")
                    state, ppid = rest.split()[:2]
                    running = state != "Z"  # one that has exited but is not yet reaped is not
                    count += comm.endswith("(nft") and running and int(ppid) == server.proc.pid
            except (OSError, ValueError, IndexError):
                pass
    return count


@pytest.fixture(scope="module")
def bystander(dns_client: Sandlot, dns_server: ServerProcess) -> Iterator[Sandbox]:
    with (
        Sandlot(dns_server.url, other_org_key(dns_client)) as other,
        Sandbox.create(client=other) as sbx,
    ):
        yield sbx


@pytest.mark.parametrize("default", ["deny", "allow"])
def test_a_flood_of_new_names_runs_one_nft_at_a_time(
    dns_server: ServerProcess,
    dns_client: Sandlot,
    upstream: StandInUpstream,
    bystander: Sandbox,
    default: str,
) -> None:
    idle = exec_p50(bystander, 15)
    egress = {"default": default, "allow": ["*.flood.test"]}
    with Sandbox.create(client=dns_client, network={"egress": egress}) as sbx:
        sbx.files.write("/tmp/flood.py", FLOOD)
        # The warm pool refills behind this create: the new sandbox's firewall is set up
        # with nft of its own, which is not what is counted here, so let it finish first.
        time.sleep(2)
        before = upstream.answered
        flood = sbx.commands.run("python3 /tmp/flood.py flood.test 8", background=True)
        most = 0
        during = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            most = max(most, nft_processes(dns_server))
            during.append(exec_p50(bystander, 3))
        flood.wait(timeout=30)
        answered = upstream.answered - before
    assert answered > 500, f"the flood got only {answered} answers through"
    assert most <= 1, f"{most} nft processes at once"
    assert statistics.median(during) < max(3 * idle, 0.05), (idle, during)


def test_denied_names_make_a_bounded_number_of_events(dns_client: Sandlot) -> None:
    with Sandbox.create(client=dns_client, network={"egress": {"default": "deny"}}) as sbx:
        sbx.files.write("/tmp/flood.py", FLOOD)
        sent = int(sbx.commands.run("python3 /tmp/flood.py denied.test 5", timeout=60).stdout)
        time.sleep(1)
        with sbx.events(since=0, types="network.denied", idle_timeout=2) as stream:
            denied = [e.data for e in stream]
    assert sent > 1000
    # Five seconds of distinct names: at most 20 events a 10 s window, and the count of
    # the names left out rides on the next event of a later window.
    assert 1 <= len(denied) <= 40, len(denied)
    assert all(d["name"].endswith(".denied.test") for d in denied)


def test_dns_over_tcp_connections_are_capped_and_closed_when_idle(
    dns_client: Sandlot,
) -> None:
    with Sandbox.create(client=dns_client) as sbx:
        script = (
            "import socket, time\n"
            f"{NAMESERVER}\n"
            "socks = [socket.create_connection((ns, 53), timeout=5) for _ in range(40)]\n"
            "time.sleep(1)\n"
            "def open_(s):\n"
            "    s.setblocking(False)\n"
            "    try:\n"
            "        return s.recv(1) != b''\n"
            "    except BlockingIOError:\n"
            "        return True\n"
            "    except OSError:\n"
            "        return False\n"
            "print(sum(open_(s) for s in socks))\n"
            f"time.sleep({TCP_IDLE_TIMEOUT + 2})\n"
            "print(sum(open_(s) for s in socks))\n"
        )
        sbx.files.write("/tmp/tcp.py", script)
        r = sbx.commands.run("python3 /tmp/tcp.py", timeout=60)
        assert r.exit_code == 0, r.stderr
        assert r.stdout.split() == [str(MAX_TCP_PER_SOURCE), "0"]
