"""Networking end to end: egress policy by domain and CIDR, isolation nobody can lift,
preview URLs over HTTP and WebSocket, and nothing left on the host after destroy.

"The internet" here is test hosts in network namespaces of this machine (nethosts.py),
named through the server's static zone; the resolver has no upstream, so no query or
packet leaves the machine.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from sandlot import Sandbox, Sandlot
from sandlot.store.database import Database
from sandlot.store.tables import EventRow
from sandlot.testing import ServerProcess, ensure_base_template
from tests.e2e.nethosts import OutsideHost, outside_hosts
from tests.e2e.network_traces import network_traces
from tests.e2e.test_cli import sandlot

pytestmark = pytest.mark.skipif(
    subprocess.run(["nft", "--version"], capture_output=True).returncode != 0,
    reason="nft (nftables) is not installed; scripts/setup installs it",
)

WS_ECHO = r"""
import base64, hashlib, socket, struct
MAGIC = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def header(head, name):
    lines = head.split(b"\r\n")
    return [l.split(b":", 1)[1].strip() for l in lines if l.lower().startswith(name)][0]
srv = socket.create_server(("0.0.0.0", 3001))
while True:
    conn, _ = srv.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(4096)
    accept = base64.b64encode(hashlib.sha1(header(head, b"sec-websocket-key") + MAGIC).digest())
    host = header(head, b"host:")
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    f = conn.makefile("rb")
    while True:
        b0, b1 = f.read(2)
        n = b1 & 127
        if n == 126: n = struct.unpack("!H", f.read(2))[0]
        elif n == 127: n = struct.unpack("!Q", f.read(8))[0]
        mask = f.read(4)
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(f.read(n)))
        if b0 & 15 == 8:
            conn.sendall(b"\x88\x00"); conn.close(); break
        reply = data + b" via " + host
        conn.sendall(bytes([0x81, len(reply)]) + reply)
"""


HTTP_ECHO = r"""
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def body(self):
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("content-length") or 0))
        data = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            data += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return data

    def do_GET(self):
        self.answer(b"")

    def do_POST(self):
        self.answer(self.body())

    def answer(self, body):
        seen = {"path": self.path, "peer": self.client_address[1], "headers": dict(self.headers)}
        self.send_response(200)
        self.send_header("x-seen", json.dumps(seen))
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("0.0.0.0", 8080), Echo).serve_forever()
"""


def _octet() -> int:
    return 100 + secrets.randbelow(150)


@pytest.fixture(scope="module")
def hosts() -> Iterator[dict[str, OutsideHost]]:
    n = _octet()
    with outside_hosts(
        {"allowed": f"10.99.{n}", "denied": f"10.98.{n}", "metadata": f"169.254.{n}"}
    ) as made:
        yield made


@pytest.fixture(scope="module")
def net_server(
    tmp_path_factory: pytest.TempPathFactory, hosts: dict[str, OutsideHost]
) -> Iterator[ServerProcess]:
    ensure_base_template()
    zone = {
        "allowed.test": hosts["allowed"].address,
        "www.allowed.test": hosts["allowed"].address,
        "denied.test": hosts["denied"].address,
    }
    srv = ServerProcess(
        tmp_path_factory.mktemp("sandlot-net"),
        extra_env={
            "SANDLOT_DNS_HOSTS": json.dumps(zone),
            "SANDLOT_DNS_UPSTREAMS": "[]",
            "SANDLOT_WARM_POOL_SIZE": "1",
        },
    )
    srv.start()
    yield srv
    srv.destroy_all()
    srv.stop()


@pytest.fixture(scope="module")
def net_client(net_server: ServerProcess) -> Iterator[Sandlot]:
    with Sandlot(api_url=net_server.url, api_key=net_server.api_key) as c:
        yield c


def fetch(sbx: Sandbox, url: str, timeout: float = 3) -> tuple[int, str]:
    """curl's exit code (6: name refused, 7: refused, 28: dropped) and body."""
    r = sbx.commands.run(f"curl -sS --max-time {timeout} {url}")
    return r.exit_code or 0, r.stdout


def preview(
    server: ServerProcess, sandbox_id: str, port: int, path: str = "/", **kw: object
) -> httpx.Response:
    host = f"{port}-{sandbox_id}.sandboxes.localhost:{server.port}"
    headers = {"Host": host, **kw.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", headers=headers, **kw)  # type: ignore[arg-type]


def serve_http(sbx: Sandbox, port: int) -> None:
    sbx.commands.run(f"cd /etc && exec python3 -m http.server {port}", background=True)
    deadline = time.monotonic() + 10
    while sbx.commands.run(f"curl -s -o /dev/null http://127.0.0.1:{port}/").exit_code != 0:
        assert time.monotonic() < deadline, f"http.server on {port} did not start"
        time.sleep(0.1)


def stored_events(server: ServerProcess, sandbox_id: str, kind: str) -> list[dict[str, Any]]:
    db = Database(f"sqlite:///{server.data_dir / 'sandlot.db'}")
    with db.session() as s:
        rows = s.query(EventRow).filter_by(sandbox_id=sandbox_id, type=kind).all()
        return [dict(r.data) for r in rows]


def wait_for_event(server: ServerProcess, sandbox_id: str, kind: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while not (found := stored_events(server, sandbox_id, kind)):
        assert time.monotonic() < deadline, f"no {kind} event"
        time.sleep(0.2)
    return found


def test_domain_rules_allow_some_names_and_refuse_the_rest(
    net_client: Sandlot, net_server: ServerProcess, hosts: dict[str, OutsideHost]
) -> None:
    policy = {"egress": {"default": "deny", "allow": ["allowed.test"]}}
    with Sandbox.create(network=policy, client=net_client) as sbx:
        assert fetch(sbx, "http://allowed.test/") == (0, "allowed")
        code, _ = fetch(sbx, "http://denied.test/")
        assert code == 6, "a denied name must not resolve"
        assert fetch(sbx, hosts["denied"].url)[0] != 0, "nor its address be reachable"
        denied = wait_for_event(net_server, sbx.id, "network.denied")
        assert [e["name"] for e in denied] == ["denied.test"]


def test_wildcards_cidrs_and_deny_lists(net_client: Sandlot, hosts: dict[str, OutsideHost]) -> None:
    policy = {"egress": {"default": "deny", "allow": ["*.allowed.test", hosts["denied"].cidr]}}
    with Sandbox.create(network=policy, client=net_client) as sbx:
        assert fetch(sbx, "http://www.allowed.test/") == (0, "allowed")
        assert fetch(sbx, "http://allowed.test/")[0] == 6, "*.x matches below x, not x"
        assert fetch(sbx, hosts["denied"].url) == (0, "denied"), "an allowed CIDR"
    open_but = {"egress": {"default": "allow", "deny": [hosts["denied"].cidr, "www.allowed.test"]}}
    with Sandbox.create(network=open_but, client=net_client) as sbx:
        assert fetch(sbx, hosts["allowed"].url) == (0, "allowed")
        assert fetch(sbx, "http://allowed.test/") == (0, "allowed")
        assert fetch(sbx, "http://www.allowed.test/")[0] == 6
        assert fetch(sbx, hosts["denied"].url)[0] != 0, "a denied CIDR"


def test_policy_update_applies_to_a_running_sandbox(
    net_client: Sandlot, hosts: dict[str, OutsideHost]
) -> None:
    with Sandbox.create(network={"egress": {"default": "deny"}}, client=net_client) as sbx:
        sbx.files.write("/tmp/marker", "still here")
        assert fetch(sbx, hosts["allowed"].url)[0] != 0
        info = sbx.update_network(egress={"default": "deny", "allow": [hosts["allowed"].cidr]})
        assert info.network is not None and info.network["egress"]["allow"] == [
            hosts["allowed"].cidr
        ]
        assert fetch(sbx, hosts["allowed"].url) == (0, "allowed")
        sbx.update_network(egress={"default": "deny", "allow": []})
        assert fetch(sbx, hosts["allowed"].url)[0] != 0
        assert sbx.files.read("/tmp/marker") == "still here", "no restart"
        stored = Sandbox.get(sbx.id, client=net_client).info.network
        assert stored is not None and stored["egress"]["allow"] == []


def test_isolation_no_policy_can_lift(
    net_client: Sandlot, net_server: ServerProcess, hosts: dict[str, OutsideHost]
) -> None:
    everything = {"egress": {"default": "allow", "allow": ["0.0.0.0/0"]}}
    with (
        Sandbox.create(network=everything, client=net_client) as a,
        Sandbox.create(network=everything, client=net_client) as b,
    ):
        serve_http(a, 8000)
        assert a.info.address and b.info.address and a.info.address != b.info.address
        assert preview(net_server, a.id, 8000, "/hostname").text.strip() == a.id
        assert fetch(b, f"http://{a.info.address}:8000/hostname")[0] != 0, "sandbox to sandbox"
        gateway = b.commands.run("awk '/nameserver/ {print $2}' /etc/resolv.conf").stdout.strip()
        assert fetch(b, f"http://{gateway}:{net_server.port}/health")[0] != 0, "host API"
        assert fetch(b, f"http://{gateway}:{net_server.ssh_port}/")[0] != 0, "SSH gateway"
        host_ip = socket.gethostbyname(socket.gethostname())
        assert fetch(b, f"http://{host_ip}:{net_server.port}/health")[0] != 0, "host address"
        assert fetch(b, hosts["metadata"].url)[0] != 0, "link-local (metadata) addresses"
        assert httpx.get(hosts["metadata"].url).text == "metadata", "the host itself can"
        assert fetch(b, hosts["allowed"].url) == (0, "allowed"), "ordinary egress works"
        v6 = b.commands.run("cat /proc/sys/net/ipv6/conf/all/disable_ipv6").stdout.strip()
        assert v6 == "1"


def test_preview_urls_public_token_and_automatic_ports(
    net_client: Sandlot, net_server: ServerProcess
) -> None:
    with Sandbox.create(client=net_client) as sbx:
        serve_http(sbx, 8000)
        serve_http(sbx, 9000)
        r = preview(net_server, sbx.id, 8000, "/hostname")
        assert r.status_code == 200 and r.text.strip() == sbx.id
        url = sbx.get_url(8000)
        assert url == f"http://8000-{sbx.id}.sandboxes.localhost:{net_server.port}"
        curl = subprocess.run(["curl", "-sS", f"{url}/hostname"], capture_output=True, text=True)
        assert curl.stdout.strip() == sbx.id, curl.stderr  # curl resolves *.localhost itself
        refused = preview(net_server, sbx.id, 9000)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "PORT_NOT_EXPOSED"
        port = sbx.ports.expose(9000, auth="token")
        assert port.token and port.url.startswith("http://9000-")
        assert preview(net_server, sbx.id, 9000).status_code == 401
        assert (
            preview(net_server, sbx.id, 9000, headers={"X-Sandlot-Token": "wrong"}).status_code
            == 401
        )
        ok = preview(net_server, sbx.id, 9000, "/hostname", headers={"X-Sandlot-Token": port.token})
        assert ok.status_code == 200 and ok.text.strip() == sbx.id
        via_query = preview(net_server, sbx.id, 9000, f"/hostname?token={port.token}")
        assert via_query.status_code == 200 and "sandlot-token=" in via_query.headers["set-cookie"]
        cookie = {"Cookie": f"sandlot-token={port.token}"}
        assert preview(net_server, sbx.id, 9000, "/hostname", headers=cookie).status_code == 200
        listed = {p.port: p for p in sbx.ports.list()}
        assert listed[9000].auth == "token" and listed[8000].automatic
        assert listed[9000].token is None, "a token is shown once"
        sbx.ports.close(9000)
        assert preview(net_server, sbx.id, 9000).status_code == 404
        assert wait_for_event(net_server, sbx.id, "port.exposed")[0]["auth"] == "token"
        assert wait_for_event(net_server, sbx.id, "port.closed") == [{"port": 9000}]
    no_auto = {"ingress": {"allowPorts": []}}
    with Sandbox.create(network=no_auto, client=net_client) as sbx:
        serve_http(sbx, 8000)
        assert preview(net_server, sbx.id, 8000).status_code == 404
        assert sbx.ports.list() == []


def test_a_preview_request_wakes_a_paused_sandbox(
    net_client: Sandlot, net_server: ServerProcess
) -> None:
    with Sandbox.create(client=net_client) as sbx:
        serve_http(sbx, 8000)
        assert sbx.pause().status == "paused"
        r = preview(net_server, sbx.id, 8000, "/hostname", timeout=60)
        assert r.status_code == 200 and r.text.strip() == sbx.id
        assert sbx.refresh().status == "running"


def test_preview_requests_reach_the_sandbox_intact(
    net_client: Sandlot, net_server: ServerProcess
) -> None:
    """One caller connection is one upstream connection; heads are rewritten, bodies
    (chunked or not, larger than any buffer) arrive as sent."""
    with Sandbox.create(client=net_client) as sbx:
        sbx.files.write("/tmp/echo.py", HTTP_ECHO)
        sbx.commands.run("exec python3 /tmp/echo.py", background=True)
        host = f"8080-{sbx.id}.sandboxes.localhost:{net_server.port}"
        base = f"http://127.0.0.1:{net_server.port}"
        with httpx.Client(headers={"Host": host}, trust_env=False, timeout=10) as http:
            deadline = time.monotonic() + 10
            while (first := http.get(f"{base}/")).status_code != 200:
                assert time.monotonic() < deadline, first.text
                time.sleep(0.2)
            r = http.get(f"{base}/q?a=1&token=t0k&b=%20x", headers={"X-Sandlot-Token": "t1"})
            seen = json.loads(r.headers["x-seen"])
            assert seen["path"] == "/q?a=1&b=%20x"
            assert "sandlot-token=t0k" in r.headers["set-cookie"]
            headers = {k.lower(): v for k, v in seen["headers"].items()}
            assert headers["host"] == "localhost:8080"
            assert headers["x-forwarded-host"] == host
            assert headers["x-forwarded-for"] == "127.0.0.1"
            assert "x-sandlot-token" not in headers
            big = secrets.token_bytes(3 * 1024 * 1024)
            assert http.post(f"{base}/", content=big).content == big
            chunks = [secrets.token_bytes(n) for n in (1, 70_000, 5)]
            assert http.post(f"{base}/", content=iter(chunks)).content == b"".join(chunks)
            peers = {json.loads(http.get(f"{base}/").headers["x-seen"])["peer"] for _ in range(5)}
            assert peers == {seen["peer"]}, "one upstream connection per caller connection"
            other = http.get(f"{base}/health", headers={"Host": "127.0.0.1"})
            assert other.status_code == 400, "a preview connection stays with its preview"
            assert other.json()["error"]["code"] == "INVALID_CONFIG"
        assert httpx.get(f"{base}/health", trust_env=False).status_code == 200


def test_websocket_through_the_preview_proxy(
    net_client: Sandlot, net_server: ServerProcess
) -> None:
    with Sandbox.create(client=net_client) as sbx:
        sbx.files.write("/tmp/ws.py", WS_ECHO)
        sbx.commands.run("exec python3 /tmp/ws.py", background=True)
        host = f"3001-{sbx.id}.sandboxes.localhost:{net_server.port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", net_server.port))
                with ws_connect(f"ws://{host}/echo", sock=sock, open_timeout=5) as ws:
                    ws.send("hello")
                    assert ws.recv(timeout=5) == "hello via localhost:3001"
                    ws.send("again")
                    assert ws.recv(timeout=5) == "again via localhost:3001"
                break
            except (OSError, InvalidStatus, TimeoutError) as exc:
                assert time.monotonic() < deadline, f"no WebSocket through the proxy: {exc!r}"
                time.sleep(0.2)


def test_destroy_leaves_no_network_behind(net_client: Sandlot, net_server: ServerProcess) -> None:
    sbx = Sandbox.create(network={"egress": {"default": "deny"}}, client=net_client)
    assert len(network_traces(sbx.id, net_server.data_dir)) == 4  # netns, veth, table, lease
    sbx.kill()
    assert network_traces(sbx.id, net_server.data_dir) == []


def test_cli_egress_flags_and_ports(net_server: ServerProcess) -> None:
    env = {
        **net_server.env,
        "SANDLOT_API_URL": net_server.url,
        "SANDLOT_API_KEY": net_server.api_key,
    }
    created = sandlot(
        env,
        "sandbox",
        "create",
        "--egress-default",
        "deny",
        "--egress-allow",
        "allowed.test",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    assert info["network"]["egress"] == {"default": "deny", "allow": ["allowed.test"], "deny": []}
    sandbox_id = info["id"]
    try:
        exposed = sandlot(env, "sandbox", "expose", sandbox_id, "9000", "--auth", "token")
        assert exposed.returncode == 0, exposed.stderr
        url, token_line = exposed.stdout.decode().splitlines()
        assert url == f"http://9000-{sandbox_id}.sandboxes.localhost:{net_server.port}"
        assert token_line.startswith("token: ")
        listed = sandlot(env, "sandbox", "ports", sandbox_id, "--json")
        ports = {p["port"]: p for p in json.loads(listed.stdout)}
        assert ports[9000]["auth"] == "token" and ports[3000]["automatic"]
        assert sandlot(env, "sandbox", "unexpose", sandbox_id, "9000").returncode == 0
        again = sandlot(env, "sandbox", "unexpose", sandbox_id, "9000", "--json")
        assert again.returncode != 0 and b"PORT_NOT_EXPOSED" in again.stdout + again.stderr
    finally:
        sandlot(env, "sandbox", "destroy", sandbox_id)


def test_restarted_server_keeps_policies_and_removes_strays(
    net_client: Sandlot, net_server: ServerProcess
) -> None:
    policy = {"egress": {"default": "deny", "allow": ["allowed.test"]}}
    kept = Sandbox.create(network=policy, client=net_client)
    net_server.stop(signal.SIGKILL)
    net_server.start()  # the resolver listens on another port now
    with Sandlot(api_url=net_server.url, api_key=net_server.api_key) as client:
        again = Sandbox.get(kept.id, client=client)
        assert fetch(again, "http://allowed.test/") == (0, "allowed")
        assert fetch(again, "http://denied.test/")[0] == 6
        again.kill()
    assert network_traces(kept.id, net_server.data_dir) == []


@pytest.mark.parametrize(
    "network",
    [
        {"egress": {"default": "maybe"}},
        {"egress": {"allow": ["not a domain!"]}},
        {"egress": {"allow": ["2001:db8::/32"]}},
        {"egress": {"deny": ["*.*.example.com"]}},
        {"egress": {"allow": ["10.0.0.0/33"]}},
        {"ingress": {"allowPorts": [0]}},
        {"egress": {"unknown": []}},
    ],
)
def test_bad_policies_are_rejected(net_server: ServerProcess, network: dict[str, object]) -> None:
    headers = {"X-API-Key": net_server.api_key}
    r = httpx.post(f"{net_server.url}/v1/sandboxes", headers=headers, json={"network": network})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "INVALID_CONFIG"
