"""`sandlot sandbox pause|resume|snapshot|snapshots|rollback|branch|unsnapshot|set-timeout`."""

from __future__ import annotations

import json
from typing import Any

from sandlot import Sandbox, Sandlot
from tests.e2e.test_cli import sandlot


def run_json(env: dict[str, str], *args: str) -> Any:
    done = sandlot(env, "sandbox", *args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_lifecycle_commands(api_env: dict[str, str], sandbox: Sandbox, client: Sandlot) -> None:
    sid = sandbox.id
    sandbox.files.write("/root/v", "1\n")
    paused = run_json(api_env, "pause", sid)
    assert paused["status"] == "paused" and paused["pauseMode"] in ("checkpoint", "freeze")
    assert run_json(api_env, "resume", sid)["status"] == "running"

    snap = run_json(api_env, "snapshot", sid, "--name", "v1", "--no-memory")
    assert (snap["name"], snap["hasMemory"]) == ("v1", False)
    assert [s["name"] for s in run_json(api_env, "snapshots", sid)] == ["v1"]
    table = sandlot(api_env, "sandbox", "snapshots", sid).stdout.decode()
    assert "v1" in table and "MiB" in table

    sandbox.files.write("/root/v", "2\n")
    assert run_json(api_env, "rollback", sid, "v1")["id"] == sid
    assert sandbox.files.read("/root/v") == "1\n"

    child = run_json(api_env, "branch", sid, "v1", "--name", "cli-branch")
    assert child["metadata"]["name"] == "cli-branch"
    Sandbox.get(child["id"], client=client).kill()

    assert run_json(api_env, "set-timeout", sid, "3600")["timeout"] == 3600
    run_json(api_env, "unsnapshot", sid, "v1")
    assert run_json(api_env, "snapshots", sid) == []

    missing = sandlot(api_env, "sandbox", "rollback", sid, "v1", "--json")
    assert missing.returncode != 0
    assert json.loads(missing.stderr)["error"]["code"] == "SNAPSHOT_NOT_FOUND"
