"""Run the attempts of inside.py in a sandbox, and read what the host saw of them."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

from sandlot import Sandbox, Sandlot
from sandlot.runtime.cgroups import cgroup_dirs
from sandlot.runtime.oci import run_root_for
from sandlot.testing import ServerProcess

INSIDE = Path(__file__).with_name("inside.py")
INSIDE_PATH = "/tmp/inside.py"


def probe(sandbox: Sandbox, check: str, *args: str) -> dict[str, Any]:
    """The JSON answer of `inside.py CHECK ARGS` run in the sandbox as its root."""
    sandbox.files.write(INSIDE_PATH, INSIDE.read_bytes())
    result = sandbox.commands.run(["python3", INSIDE_PATH, check, *args], timeout=60)
    assert result.exit_code == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def host_disk(path: Path) -> str:
    """MAJOR:MINOR of the block device `path` lives on (the data directory's disk)."""
    dev = os.stat(path).st_dev
    return f"{os.major(dev)}:{os.minor(dev)}"


def host_cgroup_file(server: ServerProcess, sandbox_id: str, name: str) -> Path:
    """A file of the sandbox's cgroup on the host (`pids.max`, ...), v1 or v2."""
    relative = f"/sandlot/{run_root_for(server.data_dir).name}/{sandbox_id}"
    for directory in cgroup_dirs(relative):
        if (directory / name).exists():
            return directory / name
    raise LookupError(f"no {name} in the cgroup of {sandbox_id}")


def host_memory_limit(server: ServerProcess, sandbox_id: str) -> int:
    """The memory limit the host enforces on the sandbox's cgroup, in bytes."""
    try:
        return int(host_cgroup_file(server, sandbox_id, "memory.max").read_text())
    except LookupError:
        return int(host_cgroup_file(server, sandbox_id, "memory.limit_in_bytes").read_text())


def exec_p50(sbx: Sandbox, runs: int = 5) -> float:
    """Median seconds of `true` through the SDK: a bystander's pace during a flood."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        sbx.commands.run("true")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def other_org_key(admin: Sandlot, prefix: str = "bystander") -> str:
    """An API key of a new organisation, made with the admin key of `admin`'s server."""
    org = admin.orgs.create(f"{prefix}-{secrets.token_hex(4)}")
    return admin.keys.create(org.id, name="k").key
