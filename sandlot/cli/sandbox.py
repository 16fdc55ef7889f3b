"""`sandlot sandbox …`: create, list, inspect, run commands in and destroy sandboxes."""

from __future__ import annotations

import shlex
import signal
import sys
from typing import TYPE_CHECKING, Annotated, cast

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, Json, open_client
from sandlot.cli.files import files_app
from sandlot.cli.output import (
    print_error,
    print_json,
    reporting_errors,
    sandbox_details,
    sandbox_table,
)
from sandlot.errors import CommandTimeoutError

if TYPE_CHECKING:
    from sandlot.sdk import CommandResult, ResourceSpec, SandboxStatus

sandbox_app = typer.Typer(
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Create, inspect, run commands in and destroy sandboxes.",
)
sandbox_app.add_typer(files_app, name="files")

SandboxId = Annotated[
    str, typer.Argument(help="Sandbox id, e.g. sbx-7k2m9p4q1x.", metavar="ID", show_default=False)
]

# `timeout` exits with this code when a command overran; exec does the same.
TIMEOUT_EXIT_CODE = 124


def parse_pairs(pairs: list[str], option: str) -> dict[str, str]:
    """`["A=1", "B=x=y"]` → `{"A": "1", "B": "x=y"}`."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        parsed[key] = value
    return parsed


def resource_request(vcpus: int | None, memory: str | None, disk: str | None) -> ResourceSpec:
    """Plain numbers are MiB; anything else ("4GB") is a size the server parses."""
    spec: ResourceSpec = {}
    if vcpus is not None:
        spec["vcpus"] = vcpus
    if memory is not None:
        if memory.isdigit():
            spec["memory_mb"] = int(memory)
        else:
            spec["memory"] = memory
    if disk is not None:
        if disk.isdigit():
            spec["disk_mb"] = int(disk)
        else:
            spec["disk"] = disk
    return spec


def command_line(words: list[str]) -> str:
    """One word holding spaces is already a shell command line; several words are
    quoted so the sandbox's shell sees exactly them."""
    if len(words) == 1 and any(ch.isspace() for ch in words[0]):
        return words[0]
    return shlex.join(words)


def exit_code_of(result: CommandResult) -> int:
    """The command's exit code, or 128 + N when signal N ended it, as shells report it."""
    if result.exit_code is not None:
        return result.exit_code
    try:
        return 128 + signal.Signals[result.signal or ""].value
    except KeyError:
        return 1


@sandbox_app.command("create")
def create(
    ctx: typer.Context,
    template: Annotated[str, typer.Option(help="Template to start from.")] = "base",
    vcpus: Annotated[int | None, typer.Option(help="Virtual CPUs.", show_default=False)] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory: MiB, or a size such as 4GB.", show_default=False)
    ] = None,
    disk: Annotated[
        str | None, typer.Option(help="Disk: MiB, or a size such as 10GB.", show_default=False)
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, repeatable.")
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE, repeatable.")
    ] = None,
    idle_timeout: Annotated[int, typer.Option(help="Seconds idle before pausing.")] = 600,
    timeout: Annotated[
        int | None,
        typer.Option(help="Seconds after which it ends.", show_default="never"),
    ] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Start a sandbox and print its id."""
    env_vars = parse_pairs(env or [], "--env")
    labels = parse_pairs(metadata or [], "--metadata")
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        sbx = client.sandboxes.create(
            template,
            resources=resource_request(vcpus, memory, disk),
            env=env_vars,
            metadata=labels,
            idle_timeout=idle_timeout,
            timeout=timeout,
        )
    if json_output:
        print_json(sbx.info.to_api())
    else:
        typer.echo(sbx.id)


@sandbox_app.command("list")
def list_sandboxes(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(help="creating, running, paused, stopping, terminated or error."),
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE to match, repeatable.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
    offset: Annotated[int, typer.Option(help="Skip this many.")] = 0,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List sandboxes."""
    labels = parse_pairs(metadata or [], "--metadata")
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        sandboxes = client.sandboxes.list(
            status=cast("SandboxStatus | None", status),  # the server checks the value
            metadata=labels,
            limit=limit,
            offset=offset,
        )
    if json_output:
        print_json([sbx.to_api() for sbx in sandboxes])
    else:
        sandbox_table(sandboxes)


@sandbox_app.command("get")
def get(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Show one sandbox."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        info = client.sandboxes.get(sandbox_id).info
    if json_output:
        print_json(info.to_api())
    else:
        sandbox_details(info)


@sandbox_app.command("exec")
def exec_command(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    command: Annotated[
        list[str],
        typer.Argument(
            help="The command; put it after `--` when it has options of its own.",
            metavar="CMD",
            show_default=False,
        ),
    ],
    cwd: Annotated[
        str | None, typer.Option(help="Working directory.", show_default="/root")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, repeatable.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before the command is killed.")] = 60.0,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Run a command to completion; its output and exit code become this command's.

    Several words are quoted and run as they are; a single argument holding spaces is
    a shell command line (`sandlot sandbox exec ID -- 'ls | wc -l'`). A command that
    runs past --timeout is killed and exits 124 after printing what it wrote.
    """
    env_vars = parse_pairs(env or [], "--env")
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        sbx = client.sandboxes.get(sandbox_id)
        try:
            result = sbx.commands.run(command_line(command), cwd=cwd, env=env_vars, timeout=timeout)
        except CommandTimeoutError as err:
            if not json_output:
                _echo_output(err.details.get("stdout", ""), err.details.get("stderr", ""))
            print_error(err, as_json=json_output)
            raise typer.Exit(TIMEOUT_EXIT_CODE) from None
    if json_output:
        print_json(result.to_api())
    else:
        _echo_output(result.stdout, result.stderr)
    raise typer.Exit(exit_code_of(result))


@sandbox_app.command("destroy")
def destroy(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Destroy a sandbox and everything in it."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        sbx = client.sandboxes.get(sandbox_id)
        sbx.kill()
    if json_output:
        print_json(sbx.info.to_api())
    else:
        typer.echo(f"{sbx.id} {sbx.status}")


def _echo_output(stdout: str, stderr: str) -> None:
    sys.stdout.write(stdout)
    sys.stdout.flush()
    sys.stderr.write(stderr)
    sys.stderr.flush()
