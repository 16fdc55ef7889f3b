"""Run-and-wait commands through the SDK."""

from __future__ import annotations

import httpx
import pytest

from sandlot import Sandbox
from sandlot.errors import CommandTimeoutError
from sandlot.testing import ServerProcess


def test_stdout_stderr_exit_code(sandbox: Sandbox) -> None:
    r = sandbox.commands.run("echo out; echo err >&2; exit 3")
    assert (r.stdout, r.stderr, r.exit_code, r.signal) == ("out\n", "err\n", 3, None)


def test_cwd_and_env(sandbox: Sandbox) -> None:
    r = sandbox.commands.run("pwd; echo $B", cwd="/tmp", env={"B": "two"})
    assert r.stdout == "/tmp\ntwo\n"


def test_default_cwd_and_hostname(sandbox: Sandbox) -> None:
    r = sandbox.commands.run("pwd; hostname")
    assert r.stdout == f"/root\n{sandbox.id}\n"


def test_signal_reported(sandbox: Sandbox) -> None:
    r = sandbox.commands.run("kill -TERM $$")
    assert r.exit_code is None and r.signal == "SIGTERM"


def test_timeout_kills_group_and_returns_output_so_far(sandbox: Sandbox) -> None:
    with pytest.raises(CommandTimeoutError) as err:
        sandbox.commands.run("echo started; sleep 100 & sleep 100", timeout=1)
    assert err.value.code == "SANDBOX_TIMEOUT"
    assert "started" in err.value.stdout
    left = sandbox.commands.run("ps -eo comm | grep -c '^sleep' || true")
    assert left.stdout.strip() == "0"


def test_tools_of_the_base_template(sandbox: Sandbox) -> None:
    r = sandbox.commands.run(
        "python3 --version && node --version && git --version && gcc --version"
    )
    assert r.exit_code == 0, r.stderr
    assert "Python 3" in r.stdout and "git version" in r.stdout


def test_large_output(sandbox: Sandbox) -> None:
    r = sandbox.commands.run("head -c 5000000 /dev/zero | tr '\\0' x")
    assert len(r.stdout) == 5_000_000 and set(r.stdout) == {"x"}


@pytest.mark.parametrize(
    "fields", [{"command": ["echo", "a\0b"]}, {"command": "echo a\0b"}, {"cwd": "/tmp\0x"}]
)
def test_nul_byte_is_a_clear_400(
    sandbox: Sandbox, server: ServerProcess, fields: dict[str, object]
) -> None:
    body = {"command": "true", **fields}
    headers = {"X-API-Key": server.api_key}
    for route in ("exec", "processes"):
        url = f"{server.url}/v1/sandboxes/{sandbox.id}/{route}"
        r = httpx.post(url, json=body, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_CONFIG", r.text
