"""Fixtures that start a real Sandlot server (as a subprocess) and real sandboxes.

Everything here is the real thing: `sandlot serve` on a free loopback port with its own
data directory and SQLite store, runc containers, the in-sandbox agent. The expensive
base template is shared between runs (built once if missing).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

SHARED_DATA_DIR = Path(os.environ.get("SANDLOT_TEST_TEMPLATE_DATA_DIR", "/var/lib/sandlot"))
TEMPLATE_DIR = SHARED_DATA_DIR / "templates"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: sandboxes use namespaces, mounts and cgroups")
    for item in items:
        if "e2e" in item.nodeid.split("/"):
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """One `sandlot serve`, restartable, killable, on its own data directory."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        return (self.data_dir / "admin-key").read_text().strip()

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SANDLOT_TEMPLATE_DIR": str(TEMPLATE_DIR),
            "SANDLOT_BUILD_DEFAULT_TEMPLATE": "false",
            "XDG_CONFIG_HOME": str(self.data_dir / "config"),
        }

    def start(self) -> None:
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandlot",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                "warning",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def log_tail(self) -> str:
        return (self.data_dir / "server.log").read_text(errors="replace")[-4000:]


def destroy_everything(server: ServerProcess) -> None:
    """Leave the host clean even if a test forgot a sandbox."""
    headers = {"X-API-Key": server.api_key}
    page = httpx.get(f"{server.url}/v1/sandboxes?limit=1000", headers=headers).json()
    for sbx in page.get("data", []):
        if sbx["status"] != "terminated":
            httpx.delete(f"{server.url}/v1/sandboxes/{sbx['id']}", headers=headers, timeout=60)


def ensure_base_template() -> None:
    if (TEMPLATE_DIR / "base" / "current").exists():
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sandlot",
            "template",
            "build",
            "base",
            "--data-dir",
            str(SHARED_DATA_DIR),
        ],
        check=True,
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    ensure_base_template()
    srv = ServerProcess(tmp_path_factory.mktemp("sandlot-data"))
    srv.start()
    yield srv
    destroy_everything(srv)
    srv.stop()


@pytest.fixture(scope="session")
def api_env(server: ServerProcess) -> dict[str, str]:
    """Environment for a CLI or SDK process pointed at the test server."""
    return {**server.env, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> Iterator[object]:
    from sandlot import Sandlot

    with Sandlot(api_url=server.url, api_key=server.api_key) as c:
        yield c


@pytest.fixture
def sandbox(client: object) -> Iterator[object]:
    from sandlot import Sandbox

    sbx = Sandbox.create(template="base", client=client)
    yield sbx
    sbx.kill()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for tests that kill and restart it."""
    ensure_base_template()
    srv = ServerProcess(tmp_path / "data")
    srv.data_dir.mkdir()
    srv.start()
    yield srv
    if srv.proc is None:
        srv.start()
    destroy_everything(srv)
    srv.stop()
