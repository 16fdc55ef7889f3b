"""Fixtures that start a real Sandlot server (as a subprocess) and real sandboxes.

Everything here is the real thing: `sandlot serve` on a free loopback port with its own
data directory and SQLite store, runc containers, the in-sandbox agent. The expensive
base template is shared between runs (built once if missing).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandlot.runtime.reaping import PR_SET_CHILD_SUBREAPER
from sandlot.testing import ServerProcess, ensure_base_template


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: sandboxes use namespaces, mounts and cgroups")
    for item in items:
        if "e2e" in item.nodeid.split("/"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _pytest_adopts_no_orphans() -> Iterator[None]:
    """A runtime made in this process (the runtime tests, an in-process server) makes
    it a child subreaper, as a server is. Left so, it would adopt what the servers it
    runs as subprocesses leave when they are killed, and never reap it: a gVisor
    sandbox's processes stayed zombies, and the next server's `runsc delete` waited out
    its minute for them to go."""
    yield
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    ensure_base_template()
    srv = ServerProcess(tmp_path_factory.mktemp("sandlot-data"))
    srv.start()
    yield srv
    srv.destroy_all()
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
    """A server of the test's own, for tests that kill and restart it.

    It keeps no warm sandboxes, so every create takes the cold path the shared server's
    pool usually hides.
    """
    ensure_base_template()
    srv = ServerProcess(tmp_path / "data", extra_env={"SANDLOT_WARM_POOL_SIZE": "0"})
    srv.data_dir.mkdir()
    srv.start()
    yield srv
    if srv.proc is None:
        srv.start()
    srv.destroy_all()
    srv.stop()


@pytest.fixture
def tmux() -> Iterator[str]:
    """A detached 100x30 tmux session, killed afterwards."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/setup installs it)")
    name = f"sandlot-{uuid.uuid4().hex[:8]}"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "100", "-y", "30"], check=True)
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], check=False)
