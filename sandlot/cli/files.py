"""`sandlot sandbox files …`: read, write, list and remove files inside a sandbox.

Contents stream through in chunks, so `files read ID big.tar > big.tar` and
`files write ID big.tar --from big.tar` work for files of any size.
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path
from typing import Annotated

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, Json, open_client
from sandlot.cli.output import entry_table, print_json, reporting_errors

files_app = typer.Typer(
    rich_markup_mode="markdown", no_args_is_help=True, help="Read, write, list and remove files."
)

SandboxId = Annotated[str, typer.Argument(help="Sandbox id.", metavar="ID", show_default=False)]
FilePath = Annotated[
    str,
    typer.Argument(help="Path in the sandbox: absolute, or relative to /root.", metavar="PATH"),
]


def parse_mode(text: str | None) -> int | None:
    """Permission bits written in octal, as chmod takes them ("644", "0o755")."""
    if text is None:
        return None
    try:
        mode = int(text.removeprefix("0o"), 8)
    except ValueError:
        raise typer.BadParameter(f"expected octal permission bits, got {text!r}") from None
    if not 0 <= mode <= 0o7777:
        raise typer.BadParameter(f"{text!r} is not between 0 and 7777")
    return mode


@files_app.command("read")
def read(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    path: FilePath,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print {path, encoding, content} (base64 if binary).")
    ] = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Write a file's bytes to standard output."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        files = client.sandboxes.get(sandbox_id).files
        if not json_output:
            files.download(path, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        sink = io.BytesIO()
        files.download(path, sink)
    data = sink.getvalue()
    try:
        print_json({"path": path, "encoding": "utf-8", "content": data.decode("utf-8")})
    except UnicodeDecodeError:
        content = base64.b64encode(data).decode("ascii")
        print_json({"path": path, "encoding": "base64", "content": content})


@files_app.command("write")
def write(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    path: FilePath,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Local file to send.",
            exists=True,
            dir_okay=False,
            show_default="standard input",
        ),
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="Permission bits in octal, e.g. 755.", show_default=False)
    ] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Create or overwrite a file (and its parent directories) from a local file or stdin."""
    bits = parse_mode(mode)
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        files = client.sandboxes.get(sandbox_id).files
        if source is None:
            entry = files.upload(path, sys.stdin.buffer, mode=bits)
        else:
            with source.open("rb") as fileobj:
                entry = files.upload(path, fileobj, mode=bits)
    if json_output:
        print_json(entry.to_api())
    else:
        typer.echo(f"{entry.path} ({entry.size} bytes)")


@files_app.command("ls")
def ls(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    path: FilePath,
    depth: Annotated[int, typer.Option(help="Levels to descend.", min=1)] = 1,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List a directory."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        entries = client.sandboxes.get(sandbox_id).files.list(path, depth=depth)
    if json_output:
        print_json([entry.to_api() for entry in entries])
    else:
        entry_table(entries, full_paths=depth > 1)


@files_app.command("stat")
def stat(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    path: FilePath,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Show one file, directory or symlink."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        entry = client.sandboxes.get(sandbox_id).files.stat(path)
    if json_output:
        print_json(entry.to_api())
    else:
        entry_table([entry], full_paths=True)


@files_app.command("mkdir")
def mkdir(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    path: FilePath,
    parents: Annotated[
        bool, typer.Option("--parents", "-p", help="Make missing parent directories.")
    ] = False,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Make a directory."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        entry = client.sandboxes.get(sandbox_id).files.mkdir(path, parents=parents)
    if json_output:
        print_json(entry.to_api())
    else:
        typer.echo(entry.path)


@files_app.command("rm")
def rm(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    path: FilePath,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Remove a directory and its contents.")
    ] = False,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Remove a file, or a directory with --recursive."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        client.sandboxes.get(sandbox_id).files.remove(path, recursive=recursive)
    if json_output:
        print_json({"path": path})
    else:
        typer.echo(f"removed {path}")
