"""The client-side CLI without a server: help, argument parsing and error reports."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sandlot.cli.app import app
from sandlot.cli.files import parse_mode
from sandlot.cli.sandbox import command_line, exit_code_of, parse_pairs, resource_request
from sandlot.sdk import CommandResult

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["sandbox"],
        ["sandbox", "create"],
        ["sandbox", "list"],
        ["sandbox", "get"],
        ["sandbox", "exec"],
        ["sandbox", "destroy"],
        ["sandbox", "files"],
        ["sandbox", "files", "read"],
        ["sandbox", "files", "write"],
        ["sandbox", "files", "ls"],
        ["sandbox", "files", "rm"],
    ],
)
def test_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_commands_take_json_and_connection_options() -> None:
    for args in (["sandbox", "list"], ["sandbox", "exec"], ["sandbox", "files", "ls"]):
        output = runner.invoke(app, [*args, "--help"]).output
        assert "--json" in output and "--api-url" in output and "--api-key" in output


def test_missing_key_is_reported_as_an_error_line() -> None:
    result = runner.invoke(app, ["sandbox", "list"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error[UNAUTHENTICATED]: ")
    assert "sandlot serve" in result.stderr


def test_json_errors_are_json() -> None:
    result = runner.invoke(app, ["sandbox", "get", "sbx-0000000000", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stderr)["error"]["code"] == "UNAUTHENTICATED"


def test_unreachable_server_through_the_global_options() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = runner.invoke(app, ["--api-url", url, "--api-key", "k", "sandbox", "list"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error[INTERNAL]: cannot reach the Sandlot server at " + url)


def test_bad_pair_is_a_usage_error() -> None:
    result = runner.invoke(app, ["sandbox", "create", "--env", "NOVALUE"])
    assert result.exit_code == 2


def test_command_line() -> None:
    assert command_line(["echo", "hi there"]) == "echo 'hi there'"
    assert command_line(["echo $A | wc -c"]) == "echo $A | wc -c"
    assert command_line(["ls"]) == "ls"


def test_pairs_and_resources() -> None:
    assert parse_pairs(["A=1", "B=x=y", "C="], "--env") == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(typer.BadParameter):
        parse_pairs(["=1"], "--env")
    assert resource_request(2, "512", "4GB") == {"vcpus": 2, "memory_mb": 512, "disk": "4GB"}
    assert resource_request(None, None, None) == {}


def test_exit_codes() -> None:
    def result(exit_code: int | None, signal: str | None = None) -> CommandResult:
        return CommandResult(
            stdout="", stderr="", exit_code=exit_code, signal=signal, duration_ms=1.0
        )

    assert exit_code_of(result(3)) == 3
    assert exit_code_of(result(None, "SIGKILL")) == 137
    assert exit_code_of(result(None, "SIGWHAT")) == 1


def test_parse_mode() -> None:
    assert parse_mode("755") == 0o755 and parse_mode("0o644") == 0o644 and parse_mode(None) is None
    with pytest.raises(typer.BadParameter):
        parse_mode("9")


def test_startup_does_not_load_the_sdk_or_the_server() -> None:
    code = (
        "import sys, sandlot.cli.app; "
        "print([m for m in ('httpx', 'websockets', 'fastapi', 'sqlalchemy', 'uvicorn') "
        "if m in sys.modules])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_import_sandlot_is_cheap_and_lazy() -> None:
    code = (
        "import sys, sandlot; assert 'httpx' not in sys.modules; "
        "from sandlot import Sandbox; print(Sandbox.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "sandlot.sdk._sandbox"
