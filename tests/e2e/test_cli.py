"""The `sandlot` command against the real server, as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def sandlot(
    env: dict[str, str], *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sandlot", *args],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def cli_sandbox(api_env: dict[str, str]) -> Iterator[str]:
    out = sandlot(
        api_env,
        "sandbox",
        "create",
        "--template",
        "base",
        "--vcpus",
        "1",
        "--memory",
        "512",
        "--env",
        "A=1",
        "--metadata",
        "user=cli",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    sandbox_id: str = json.loads(out.stdout)["id"]
    yield sandbox_id
    sandlot(api_env, "sandbox", "destroy", sandbox_id)


def test_create_get_list_destroy(api_env: dict[str, str]) -> None:
    created = sandlot(api_env, "sandbox", "create", "--metadata", "user=cli-list")
    assert created.returncode == 0, created.stderr
    sandbox_id = created.stdout.decode().strip()
    assert sandbox_id.startswith("sbx-")
    got = json.loads(sandlot(api_env, "sandbox", "get", sandbox_id, "--json").stdout)
    assert got["status"] == "running" and got["metadata"] == {"user": "cli-list"}
    listed = sandlot(api_env, "sandbox", "list", "--metadata", "user=cli-list", "--json")
    assert [s["id"] for s in json.loads(listed.stdout)] == [sandbox_id]
    table = sandlot(api_env, "sandbox", "list", "--status", "running")
    assert sandbox_id in table.stdout.decode()
    destroyed = sandlot(api_env, "sandbox", "destroy", sandbox_id, "--json")
    assert destroyed.returncode == 0 and json.loads(destroyed.stdout)["status"] == "terminated"


def test_exec_passes_output_and_exit_code(api_env: dict[str, str], cli_sandbox: str) -> None:
    r = sandlot(
        api_env, "sandbox", "exec", cli_sandbox, "--", "sh", "-c", "echo $A; echo oops >&2; exit 7"
    )
    assert r.returncode == 7
    assert r.stdout == b"1\n" and r.stderr == b"oops\n"
    j = sandlot(api_env, "sandbox", "exec", cli_sandbox, "--json", "--", "echo", "hi there")
    assert json.loads(j.stdout)["stdout"] == "hi there\n"


def test_files_commands(api_env: dict[str, str], cli_sandbox: str, tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(bytes(range(256)) * 100)
    w = sandlot(
        api_env, "sandbox", "files", "write", cli_sandbox, "/workspace/a.bin", "--from", str(src)
    )
    assert w.returncode == 0, w.stderr
    r = sandlot(api_env, "sandbox", "files", "read", cli_sandbox, "/workspace/a.bin")
    assert r.stdout == src.read_bytes()
    piped = sandlot(
        api_env, "sandbox", "files", "write", cli_sandbox, "/workspace/p.txt", stdin=b"piped"
    )
    assert piped.returncode == 0
    ls = sandlot(api_env, "sandbox", "files", "ls", cli_sandbox, "/workspace", "--json")
    names = {e["name"] for e in json.loads(ls.stdout)}
    assert {"a.bin", "p.txt"} <= names
    rm = sandlot(api_env, "sandbox", "files", "rm", cli_sandbox, "/workspace/p.txt")
    assert rm.returncode == 0
    gone = sandlot(api_env, "sandbox", "files", "read", cli_sandbox, "/workspace/p.txt")
    assert gone.returncode == 1 and b"FILE_NOT_FOUND" in gone.stderr


def test_errors_have_codes(api_env: dict[str, str]) -> None:
    r = sandlot(api_env, "sandbox", "get", "sbx-0000000000")
    assert r.returncode == 1 and b"SANDBOX_NOT_FOUND" in r.stderr
    j = sandlot(api_env, "sandbox", "get", "sbx-0000000000", "--json")
    assert json.loads(j.stdout or j.stderr)["error"]["code"] == "SANDBOX_NOT_FOUND"
    bad = sandlot(api_env, "sandbox", "create", "--vcpus", "99")
    assert bad.returncode == 1 and b"INVALID_CONFIG" in bad.stderr
    nokey = sandlot({**api_env, "SANDLOT_API_KEY": "sl_wrong"}, "sandbox", "list")
    assert nokey.returncode == 1 and b"UNAUTHENTICATED" in nokey.stderr


def test_runtime_is_chosen_among_those_the_server_offers(api_env: dict[str, str]) -> None:
    """The shared server lists no `runtimes`: it offers its default backend alone."""
    refused = sandlot(api_env, "sandbox", "create", "--runtime", "runsc")
    assert refused.returncode == 1 and b"INVALID_CONFIG" in refused.stderr
    assert b"available: oci" in refused.stderr
    created = sandlot(api_env, "sandbox", "create", "--runtime", "oci", "--json")
    assert created.returncode == 0, created.stderr
    info = json.loads(created.stdout)
    assert info["runtime"] == "oci"
    sandlot(api_env, "sandbox", "destroy", info["id"])


def test_help_lists_commands(api_env: dict[str, str]) -> None:
    out = sandlot(api_env, "--help").stdout.decode()
    for command in ("serve", "sandbox", "template", "doctor"):
        assert command in out


def test_volume_commands_and_mounts(api_env: dict[str, str], tmp_path: Path) -> None:
    name = f"cli-vol-{tmp_path.name[-6:].replace('_', '-')}"
    assert sandlot(api_env, "volume", "create", name, "--size", "64MB").returncode == 0
    source = tmp_path / "in.txt"
    source.write_text("from the cli\n")
    put = sandlot(api_env, "volume", "put", name, "/notes/in.txt", "--from", str(source))
    assert put.returncode == 0, put.stderr
    out = sandlot(api_env, "sandbox", "create", "--mount", f"{name}:/workspace:ro")
    assert out.returncode == 0, out.stderr
    sandbox_id = out.stdout.decode().strip()
    try:
        ran = sandlot(
            api_env, "sandbox", "exec", sandbox_id, "--", "cat", "/workspace/notes/in.txt"
        )
        assert ran.stdout == b"from the cli\n"
        listed = json.loads(sandlot(api_env, "volume", "list", "--json").stdout)
        mine = next(v for v in listed if v["name"] == name)
        assert mine["mountedBy"] == [sandbox_id] and mine["sizeMb"] == 64
        busy = sandlot(api_env, "volume", "rm", name)
        assert busy.returncode != 0 and b"INVALID_STATE" in busy.stderr
    finally:
        sandlot(api_env, "sandbox", "destroy", sandbox_id)
    assert sandlot(api_env, "volume", "cat", name, "/notes/in.txt").stdout == b"from the cli\n"
    assert b"in.txt" in sandlot(api_env, "volume", "ls", name, "/notes").stdout
    bad = sandlot(api_env, "sandbox", "create", "--mount", "no-path")
    assert bad.returncode != 0 and b"VOLUME:PATH" in bad.stderr
    assert sandlot(api_env, "volume", "rm", name).returncode == 0
