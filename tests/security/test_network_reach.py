"""What a sandbox's network cannot reach: the host's services (the API server, the SSH
gateway, anything listening on every interface), other sandboxes, and link-local
addresses such as the cloud metadata service.

Each target is first shown reachable from where it should be (the host), then tried from
inside with a short TCP connect: the firewall drops the packets, so the attempt times
out; only the sandbox's own loopback answers at once, with nothing listening there.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, free_port
from tests.e2e.nethosts import OutsideHost, outside_hosts
from tests.security.probes import probe


@pytest.fixture(scope="module")
def host_listener() -> Iterator[int]:
    """A port the host listens on, on every interface, like a careless host service."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", free_port()))
        s.listen(64)
        yield int(s.getsockname()[1])


@pytest.fixture(scope="module")
def metadata() -> Iterator[OutsideHost]:
    """A stand-in for a cloud metadata service at a link-local address, routed by the host."""
    with outside_hosts({"metadata": f"169.254.{10 + secrets.randbelow(90)}"}) as made:
        yield made["metadata"]


def gateway_of(sandbox: Sandbox) -> str:
    return sandbox.commands.run("awk '/nameserver/ {print $2}' /etc/resolv.conf").stdout.strip()


def host_address() -> str:
    """The host's own address on its default route."""
    route = subprocess.run(
        ["ip", "-j", "route", "get", "192.0.2.123"], capture_output=True, text=True, check=True
    )
    return str(json.loads(route.stdout)[0]["prefsrc"])


def reachable_from_host(address: str, port: int | str) -> bool:
    try:
        socket.create_connection((address, int(port)), timeout=1.5).close()
    except OSError:
        return False
    return True


def test_host_services_are_unreachable(
    sandbox: Sandbox, server: ServerProcess, host_listener: int
) -> None:
    gateway, host = gateway_of(sandbox), host_address()
    assert reachable_from_host(gateway, host_listener) and reachable_from_host(host, host_listener)
    ports = (server.port, server.ssh_port, host_listener)
    dropped = [f"{address}:{port}" for address in (gateway, host) for port in ports]
    own_loopback = [f"127.0.0.1:{port}" for port in ports]
    assert probe(sandbox, "connect", *dropped, *own_loopback) == {
        **dict.fromkeys(dropped, "timeout"),
        **dict.fromkeys(own_loopback, "ECONNREFUSED"),
    }
    # The sandbox's own namespace holds loopback and its veth end, nothing of the host's.
    ifaces = sandbox.commands.run("cat /proc/net/dev | tail -n +3 | cut -d: -f1").stdout.split()
    assert sorted(ifaces) == ["eth0", "lo"]


def test_other_sandboxes_are_unreachable(client: Sandlot, sandbox: Sandbox, runtime: str) -> None:
    with Sandbox.create(client=client, runtime=runtime) as other:
        other.commands.run("python3 -m http.server 8000 --bind 0.0.0.0", background=True)
        target = f"{other.info.address}:8000"
        deadline = time.monotonic() + 10
        while not reachable_from_host(*target.split(":")):
            assert time.monotonic() < deadline, "the other sandbox's server did not start"
            time.sleep(0.1)
        assert probe(sandbox, "connect", target) == {target: "timeout"}


def test_link_local_metadata_is_unreachable(sandbox: Sandbox, metadata: OutsideHost) -> None:
    assert httpx.get(metadata.url, timeout=2).text == "metadata", "the host itself can"
    targets = [f"{metadata.address}:80", "169.254.169.254:80"]
    assert probe(sandbox, "connect", *targets) == dict.fromkeys(targets, "timeout")
