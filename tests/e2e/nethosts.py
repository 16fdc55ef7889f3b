"""Stand-ins for hosts on the internet: network namespaces on this machine, each with
an HTTP server, reached from sandboxes through the host's routing like any outside
address (and masqueraded on the way, as real egress is). They have no default route,
so they cannot send anything beyond the host either.

Each host serves `/` (its name) and `/blob` (2 MiB). Nothing here sends a packet off
this machine: the addresses are private or link-local and routed to our own veths.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

BLOB_BYTES = 2 * 1024 * 1024
SERVER = """
import functools, http.server, socketserver, sys
class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):  # no reverse lookup of our own name: there is no resolver here
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = sys.argv[1], 80
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
Server((sys.argv[1], 80), functools.partial(Quiet, directory=sys.argv[2])).serve_forever()
"""


@dataclass(frozen=True)
class OutsideHost:
    name: str
    address: str
    netns: str
    host_ifname: str

    @property
    def cidr(self) -> str:
        return f"{self.address}/32"

    @property
    def url(self) -> str:
        return f"http://{self.address}/"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def outside_hosts(names_and_prefixes: dict[str, str]) -> Iterator[dict[str, OutsideHost]]:
    """One host per name; the value is the first three octets of its /30, e.g.
    "10.99.7" puts the host's side at .1 and the test host at .2."""
    tag = secrets.token_hex(2)
    made: list[OutsideHost] = []
    servers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as root:
        try:
            for index, (name, prefix) in enumerate(names_and_prefixes.items()):
                host = OutsideHost(
                    name, f"{prefix}.2", f"sandlot-test-{tag}-{index}", f"st{tag}{index}"
                )
                _ip("netns", "add", host.netns)
                made.append(host)
                _ip(
                    "link",
                    "add",
                    host.host_ifname,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    host.netns,
                )
                _ip("addr", "add", f"{prefix}.1/30", "dev", host.host_ifname)
                _ip("link", "set", host.host_ifname, "up")
                for args in (
                    ["addr", "add", f"{host.address}/30", "dev", "eth0"],
                    ["link", "set", "eth0", "up"],
                    ["link", "set", "lo", "up"],
                ):
                    _ip("-n", host.netns, *args)
                site = Path(root, name)
                site.mkdir()
                (site / "index.html").write_text(name)
                (site / "blob").write_bytes(b"x" * BLOB_BYTES)
                servers.append(
                    subprocess.Popen(
                        [
                            "ip",
                            "netns",
                            "exec",
                            host.netns,
                            sys.executable,
                            "-c",
                            SERVER,
                            host.address,
                            str(site),
                        ],
                        stdout=subprocess.DEVNULL,
                    )
                )
            for host in made:
                _wait_serving(host)
            yield {h.name: h for h in made}
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
            for host in made:
                subprocess.run(["ip", "link", "del", host.host_ifname], capture_output=True)
                subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)


def _wait_serving(host: OutsideHost) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(host.url, timeout=1).text == host.name:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"test host {host.name} at {host.address} did not start")
        time.sleep(0.05)
