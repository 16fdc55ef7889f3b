"""What the server keeps in memory per sandbox is gone once the sandbox is.

The server runs in this process (uvicorn on a thread of its own, real sandboxes), so the
test reads the service's tables themselves. Each sandbox's life touches everything that
keeps per-sandbox state (activity, locks, holds, metrics, log followers, exposures,
denied-name events, patches), then a few late or odd requests that used to put entries
back for a sandbox already gone: a second destroy, a pause, a port listing, a preview
request for a sandbox that never existed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from sandlot import Sandbox, Sandlot
from sandlot.config import Settings
from sandlot.core.service import SandboxService
from sandlot.host.local import LocalHost
from sandlot.server import build_server, ensure_admin_key
from sandlot.testing import TEMPLATE_DIR, ensure_base_template, free_port

LIVES = 6


@dataclass
class InProcessServer:
    service: SandboxService
    url: str
    api_key: str
    loop: asyncio.AbstractEventLoop

    def tables(self) -> dict[str, int]:
        """Entries per in-memory table, counted on the server's own event loop."""

        async def count() -> dict[str, int]:
            svc = self.service
            host = svc.host
            assert isinstance(host, LocalHost) and host.network is not None
            live, previews = svc.live, svc.network.previews
            assert previews is not None
            return {
                "agent connections": len(live._live),
                "locks": len(live._locks),
                "patch locks": len(svc.patches._locks),
                "activity": len(live.last_activity),
                "holds": len(live.holds),
                "denied names": len(svc.network._denied),
                "metrics": len(svc.sampler.latest) + len(svc.sampler._previous),
                "metrics owners": len(svc.sampler.owners),
                "log followers": len(live.logs._tasks),
                "exposures": len(previews._exposed),
                "networks": len(host.network._attached),
                "event subscribers": svc.events.subscriber_count,
            }

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(timeout=10)


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[InProcessServer]:
    ensure_base_template()
    settings = Settings(
        data_dir=tmp_path / "data",
        template_dir=TEMPLATE_DIR,
        build_default_template=False,
        port=free_port(),
        ssh_port=0,
        warm_pool_size=0,
        metrics_interval=0.5,
    )
    settings.data_dir.mkdir()
    server = build_server(settings)
    ensure_admin_key(server.db, settings.data_dir / "admin-key")
    config = uvicorn.Config(
        server.app,
        host="127.0.0.1",
        port=settings.port,
        log_level="warning",
        http=server.protocol,  # type: ignore[arg-type]
    )
    web = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(web.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not web.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    key = (settings.data_dir / "admin-key").read_text().strip()
    yield InProcessServer(server.service, f"http://127.0.0.1:{settings.port}", key, loop)
    with httpx.Client(base_url=f"http://127.0.0.1:{settings.port}") as http:
        page = http.get("/v1/sandboxes?limit=1000", headers={"X-API-Key": key}).json()
        for sbx in page.get("data", []):
            if sbx["status"] != "terminated":
                http.delete(f"/v1/sandboxes/{sbx['id']}", headers={"X-API-Key": key}, timeout=60)
    web.should_exit = True
    thread.join(timeout=60)
    loop.close()


def one_life(server: InProcessServer, client: Sandlot, http: httpx.Client, number: int) -> None:
    policy = {"egress": {"default": "deny", "allow": ["allowed.test"]}}
    with Sandbox.create(network=policy, client=client) as sbx:
        sbx.files.write("/root/f", "x" * 1000)
        assert sbx.files.read("/root/f") == "x" * 1000
        assert sbx.commands.run("getent hosts denied.test").exit_code != 0
        with sbx.commands.run("sleep 1; echo done", background=True) as process:
            time.sleep(0.5)
            during = server.tables()
            assert process.wait().stdout == "done\n"
        exposed = http.post(f"/v1/sandboxes/{sbx.id}/ports", json={"port": 8000 + number})
        assert exposed.status_code == 201, exposed.text
        assert http.get(f"/v1/sandboxes/{sbx.id}/ports").status_code == 200
        # The life reaches every table: a check that this test tests something.
        for table in ("agent connections", "activity", "holds", "denied names", "networks"):
            assert during[table] >= 1, (table, during)
        assert server.tables()["exposures"] >= 1
        sbx.pause()
        sbx.resume()
        if number == 0:  # a patch starts a sandbox of its own: once is enough
            snap = http.post(f"/v1/sandboxes/{sbx.id}/snapshots", json={"memory": False})
            assert snap.status_code == 201, snap.text
            snap_id = snap.json()["data"]["id"]
            patched = http.post(
                f"/v1/sandboxes/{sbx.id}/snapshots/{snap_id}/patches",
                json={"script": "echo hi > /root/patched"},
            )
            assert patched.status_code == 201, patched.text
            assert http.delete(f"/v1/sandboxes/{sbx.id}/snapshots/{snap_id}").status_code == 200
    # Late and odd requests about a sandbox that is gone.
    assert http.delete(f"/v1/sandboxes/{sbx.id}").status_code == 200
    assert http.post(f"/v1/sandboxes/{sbx.id}/pause").status_code == 409
    assert http.get(f"/v1/sandboxes/{sbx.id}/ports").status_code == 200
    never = f"sbx-{number:010d}"
    host = f"8000-{never}.sandboxes.localhost:{server.url.rsplit(':', 1)[1]}"
    assert httpx.get(server.url, headers={"Host": host}).status_code == 404


def test_per_sandbox_tables_empty_again_after_sandboxes_are_gone(
    in_process: InProcessServer,
) -> None:
    before = in_process.tables()
    assert before["agent connections"] == 0, before
    headers = {"X-API-Key": in_process.api_key}
    with (
        Sandlot(api_url=in_process.url, api_key=in_process.api_key) as client,
        httpx.Client(base_url=in_process.url, headers=headers, timeout=60) as http,
    ):
        for number in range(LIVES):
            one_life(in_process, client, http, number)
    deadline = time.monotonic() + 15  # metrics forget on their next pass, followers end
    while (now := in_process.tables()) != before:
        assert time.monotonic() < deadline, f"left behind: {now}, before: {before}"
        time.sleep(0.25)
