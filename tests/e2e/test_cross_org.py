"""Every route that names a sandbox, walked from the OpenAPI document, refuses another
organisation's key exactly as it refuses an unknown sandbox."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess

SAMPLE_BODIES: dict[str, Any] = {
    "/exec": {"command": "id"},
    "/processes": {"command": "id"},
    "/files/mkdir": {"path": "/tmp/x"},
    "/files/replace": {"path": "/etc/hostname", "old": "a", "new": "b"},
    "/signal": {"signal": "SIGTERM"},
    "/resize": {"cols": 80, "rows": 24},
    "/timeout": {"timeout": 60},
    "/rollback": {"snapshot": "any"},
    "/branch": {"snapshot": "any"},
    "/snapshots": {"name": "probe"},
    "/patches": {"script": "true"},
    "/network": {},
    "/ports": {"port": 3000},
}


def sample_body(path: str) -> Any:
    return next((body for suffix, body in SAMPLE_BODIES.items() if path.endswith(suffix)), None)


def test_every_sandbox_route_hides_other_organisations(
    client: Sandlot, server: ServerProcess
) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    routes = [
        (method.upper(), path)
        for path, methods in spec["paths"].items()
        if "{sandbox_id}" in path
        for method in methods
    ]
    assert len(routes) >= 15, routes
    other_org = client.orgs.create("cross-org-prober")
    stranger = client.keys.create(other_org.id, ["admin"]).key
    with Sandbox.create(client=client) as victim:
        handle = victim.commands.run("sleep 60", background=True)
        checked = []
        for method, path in routes:
            url = server.url + (
                path.replace("{sandbox_id}", victim.id)
                .replace("{process_id}", handle.id)
                .replace("{ref}", "any")
                .replace("{patch_id}", "any")
                .replace("{port}", "3000")
            )
            r = httpx.request(
                method,
                url,
                params={"path": "/etc/hostname"},
                json=sample_body(path),
                headers={"X-API-Key": stranger},
                timeout=30,
            )
            assert r.status_code == 404, f"{method} {path} answered {r.status_code}: {r.text[:200]}"
            assert r.json()["error"]["code"] == "SANDBOX_NOT_FOUND", f"{method} {path}"
            checked.append(f"{method} {path}")
        # The victim is untouched: still running, its process alive, its hostname intact.
        assert Sandbox.get(victim.id, client=client).status == "running"
        assert handle.id in {p.id for p in victim.commands.list()}
        assert victim.files.read("/etc/hostname") == f"{victim.id}\n"
        handle.kill()
    assert any(re.search(r"DELETE /v1/sandboxes/\{sandbox_id\}$", c) for c in checked)


def test_websocket_routes_hide_other_organisations(client: Sandlot, server: ServerProcess) -> None:
    from websockets.sync.client import connect

    other_org = client.orgs.create("cross-org-ws-prober")
    stranger = client.keys.create(other_org.id).key
    with Sandbox.create(client=client) as victim:
        handle = victim.commands.run("sleep 60", background=True)
        base = server.url.replace("http://", "ws://") + f"/v1/sandboxes/{victim.id}"
        for path in (f"/processes/{handle.id}/attach", "/events?since=0"):
            with connect(base + path, additional_headers={"X-API-Key": stranger}) as ws:
                first = ws.recv(timeout=10)
            assert "SANDBOX_NOT_FOUND" in str(first), (path, first)
        handle.kill()


@pytest.mark.parametrize("path", ["/v1/orgs", "/v1/keys", "/metrics"])
def test_operator_routes_refuse_tenants(client: Sandlot, server: ServerProcess, path: str) -> None:
    org = client.orgs.create(f"tenant-probe-{path.strip('/').replace('/', '-')}")
    tenant = client.keys.create(org.id, ["admin"]).key
    r = httpx.get(server.url + path, headers={"X-API-Key": tenant})
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
