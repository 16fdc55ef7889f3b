"""The escape suite's fixtures: one server for the whole run that offers both backends,
and every sandbox test run once on each.

`runtime` is "oci" (runc) or "runsc" (gVisor); a test that takes it, or `sandbox`, runs
twice. One server offering both keeps the suite to a single start-up and a warm pool of
oci sandboxes; the runsc half is skipped, with the reason printed, where runsc is not
installed.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandlot import Sandbox, Sandlot
from sandlot.runtime.runsc import runsc_version
from sandlot.testing import ServerProcess, ensure_base_template
from tests.security.probes import other_org_key

RUNTIMES = ["oci", "runsc"]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if os.geteuid() != 0:
        pytest.skip("needs root: sandboxes use namespaces, mounts and cgroups")
    ensure_base_template()
    offered = ["runsc"] if runsc_version() is not None else []
    srv = ServerProcess(
        tmp_path_factory.mktemp("sandlot-security"),
        extra_env={"SANDLOT_RUNTIMES": json.dumps(offered)},
    )
    srv.start()
    yield srv
    srv.destroy_all()
    srv.stop()


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> Iterator[Sandlot]:
    with Sandlot(api_url=server.url, api_key=server.api_key) as c:
        yield c


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if name == "runsc" and runsc_version() is None:
        print("runsc is not installed (scripts/install-runsc installs it): no gVisor run")
        pytest.skip("runsc is not installed")
    return name


@pytest.fixture
def sandbox(client: Sandlot, runtime: str) -> Iterator[Sandbox]:
    sbx = Sandbox.create(client=client, runtime=runtime)
    assert sbx.info.runtime == runtime
    yield sbx
    sbx.kill()


@pytest.fixture
def bystander(client: Sandlot, server: ServerProcess) -> Iterator[Sandbox]:
    """A sandbox of another organisation, whose pace a flood must not change."""
    with Sandlot(server.url, other_org_key(client)) as other, Sandbox.create(client=other) as sbx:
        yield sbx


@pytest.fixture
def host_marker() -> Iterator[Path]:
    """A file only the host has, at a path every sandbox has a directory for too
    (/var/tmp), holding a secret no sandbox may ever read."""
    path = Path("/var/tmp") / f"sandlot-escape-marker-{uuid.uuid4().hex}"
    path.write_text(f"host secret {uuid.uuid4().hex}\n")
    yield path
    path.unlink()
