"""`sandlot sandbox …`: create, list, inspect, run commands in and destroy sandboxes."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, cast

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, Json, open_client
from sandlot.cli.files import files_app
from sandlot.cli.output import (
    print_error,
    print_json,
    process_table,
    reporting_errors,
    sandbox_details,
    sandbox_table,
)
from sandlot.cli.ports import network_request
from sandlot.cli.watch import watch
from sandlot.errors import CommandTimeoutError

if TYPE_CHECKING:
    from sandlot.sdk import CommandHandle, CommandResult, ResourceSpec, SandboxStatus

sandbox_app = typer.Typer(
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Create, inspect, run commands in and destroy sandboxes.",
)
sandbox_app.add_typer(files_app, name="files")
sandbox_app.command("watch")(watch)

SandboxId = Annotated[
    str, typer.Argument(help="Sandbox id, e.g. sbx-7k2m9p4q1x.", metavar="ID", show_default=False)
]

ProcessId = Annotated[
    str, typer.Argument(help="Process id, e.g. proc-…", metavar="PROC_ID", show_default=False)
]

User = Annotated[
    str | None,
    typer.Option(
        "--user",
        "-u",
        help="Run as this user of the sandbox: NAME, UID, NAME:GROUP or UID:GID.",
        show_default="the template's user, root",
    ),
]

# `timeout` exits with this code when a command overran; exec does the same.
TIMEOUT_EXIT_CODE = 124
# What a shell reports for a command ended by Ctrl-C (128 + SIGINT).
INTERRUPTED_EXIT_CODE = 130


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
    password: Annotated[
        str | None,
        typer.Option(help="Password for `ssh SANDBOX_ID@host` (kept hashed).", show_default=False),
    ] = None,
    egress_default: Annotated[
        str | None,
        typer.Option(help="allow or deny: egress not matched by a rule.", show_default="allow"),
    ] = None,
    egress_allow: Annotated[
        list[str] | None,
        typer.Option(help="Domain (*.example.com) or IPv4 CIDR let out, repeatable."),
    ] = None,
    egress_deny: Annotated[
        list[str] | None, typer.Option(help="Domain or IPv4 CIDR kept in, repeatable.")
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="Backend: oci or runsc (gVisor), among those the server offers.",
            show_default="the server's",
        ),
    ] = None,
    mount: Annotated[
        list[str] | None,
        typer.Option(help="VOLUME:PATH[:ro], repeatable; an unknown volume is made."),
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
            password=password,
            network=network_request(egress_default, egress_allow, egress_deny),
            runtime=runtime,
            mounts=[parse_mount(m) for m in mount or []],
        )
    if json_output:
        print_json(sbx.info.to_api())
    else:
        typer.echo(sbx.id)


def parse_mount(text: str) -> dict[str, object]:
    """`my-code:/workspace` or `datasets:/data:ro`."""
    volume, _, rest = text.partition(":")
    path, _, flag = rest.partition(":")
    if not volume or not path.startswith("/") or flag not in ("", "ro", "rw"):
        raise typer.BadParameter(f"{text!r}: write a mount as VOLUME:PATH or VOLUME:PATH:ro")
    return {"workspace_id": volume, "path": path, "read_only": flag == "ro"}


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
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the output as it comes, not at the end.")
    ] = False,
    user: User = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Run a command to completion; its output and exit code become this command's.

    Several words are quoted and run as they are; a single argument holding spaces is
    a shell command line (`sandlot sandbox exec ID -- 'ls | wc -l'`). A command that
    runs past --timeout is killed and exits 124 after printing what it wrote.
    With --stream, stdout and stderr are passed on as they come; Ctrl-C then stops
    the command (SIGTERM).
    """
    env_vars = parse_pairs(env or [], "--env")
    if stream and json_output:
        raise typer.BadParameter("--stream prints raw output; it cannot be combined with --json")
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        sbx = client.sandboxes.get(sandbox_id)
        if stream:
            handle = sbx.commands.run(
                command_line(command),
                background=True,
                cwd=cwd,
                env=env_vars,
                timeout=timeout,
                user=user,
            )
            with handle:
                # Like exec without --stream, the command gets no input.
                handle.close_stdin()
                _follow(handle, on_interrupt="kill")
        try:
            result = sbx.commands.run(
                command_line(command), cwd=cwd, env=env_vars, timeout=timeout, user=user
            )
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


@sandbox_app.command("ps")
def ps(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    include_exited: Annotated[
        bool, typer.Option("--all", "-a", help="Include processes that have exited.")
    ] = False,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List the processes started in a sandbox through Sandlot (background and shells)."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        processes = client.sandboxes.get(sandbox_id).commands.list(include_exited=include_exited)
    if json_output:
        print_json([proc.to_api() for proc in processes])
    else:
        process_table(processes)


@sandbox_app.command("shell")
def shell(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    cwd: Annotated[
        str | None, typer.Option(help="Working directory.", show_default="/root")
    ] = None,
    command: Annotated[
        str | None,
        typer.Option(help="Run this instead of a login shell.", show_default="bash -l"),
    ] = None,
    user: User = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Open an interactive terminal in a sandbox; exits with the shell's status.

    The terminal keeps the size of yours. With stdin not a terminal, its contents
    are typed into the shell (`echo 'uname -a; exit' | sandlot sandbox shell ID`).
    """
    from sandlot.cli.terminal import run_terminal, terminal_size

    cols, rows = terminal_size()
    with reporting_errors(as_json=False), open_client(ctx, api_url, api_key) as client:
        sbx = client.sandboxes.get(sandbox_id)
        term = sbx.pty.create(
            cols=cols,
            rows=rows,
            cwd=cwd,
            env={"TERM": os.environ.get("TERM") or "xterm-256color"},
            command=command,
            user=user,
        )
        with term:
            _exit_with(lambda: run_terminal(term))


@sandbox_app.command("attach")
def attach(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    process_id: ProcessId,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Re-attach to a process: its recent output, then live output until it exits.

    A terminal process (one started by `shell`) becomes interactive again when
    stdin is a terminal. Ctrl-C detaches from a process without a terminal, which
    keeps running.
    """
    from sandlot.cli.terminal import run_terminal, terminal_size

    with reporting_errors(as_json=False), open_client(ctx, api_url, api_key) as client:
        sbx = client.sandboxes.get(sandbox_id)
        if sbx.commands.get(process_id).pty and sys.stdin.isatty():
            with sbx.pty.connect(process_id) as term:
                term.resize(*terminal_size())
                _exit_with(lambda: run_terminal(term))
        with sbx.commands.connect(process_id) as handle:
            _follow(handle, on_interrupt="detach")


def _follow(handle: CommandHandle, *, on_interrupt: str) -> NoReturn:
    """Copy the output to the matching file descriptors, then exit as the process did."""

    def copy_output() -> CommandResult:
        for chunk in handle.stream():
            target = sys.stderr.buffer if chunk.stream == "stderr" else sys.stdout.buffer
            target.write(chunk.data)
            target.flush()
        return handle.wait()

    try:
        _exit_with(copy_output)
    except KeyboardInterrupt:
        if on_interrupt == "kill":
            handle.kill("SIGTERM")
        else:
            typer.echo(f"\ndetached; {handle.id} keeps running", err=True)
        raise typer.Exit(INTERRUPTED_EXIT_CODE) from None


def _exit_with(follow: Callable[[], CommandResult]) -> NoReturn:
    """Run `follow` to the process's end and exit with its status (124 if it timed out)."""
    try:
        result = follow()
    except CommandTimeoutError as err:
        print_error(err, as_json=False)
        raise typer.Exit(TIMEOUT_EXIT_CODE) from None
    raise typer.Exit(exit_code_of(result))


def _echo_output(stdout: str, stderr: str) -> None:
    sys.stdout.write(stdout)
    sys.stdout.flush()
    sys.stderr.write(stderr)
    sys.stderr.flush()
