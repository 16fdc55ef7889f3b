"""`sandlot volume …`: the organisation's workspace volumes, and their files without a
sandbox."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, Json, open_client
from sandlot.cli.output import entry_table, print_json, reporting_errors

volume_app = typer.Typer(
    no_args_is_help=True, help="Workspace volumes: storage that outlives sandboxes."
)

Name = Annotated[str, typer.Argument(help="The volume's name, e.g. my-code.")]
InVolume = Annotated[str, typer.Argument(help="A path inside the volume, e.g. /notes.txt.")]


@volume_app.command("create")
def create(
    ctx: typer.Context,
    name: Name,
    size: Annotated[
        str | None, typer.Option(help="e.g. 20GB, or MiB.", show_default="the server's")
    ] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Make a volume."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        volume = client.volumes.create(name, int(size) if size and size.isdigit() else size)
    print_json(volume.info.to_api()) if json_output else typer.echo(volume.name)


@volume_app.command("list")
def list_volumes(
    ctx: typer.Context, json_output: Json = False, api_url: ApiUrl = None, api_key: ApiKey = None
) -> None:
    """List the organisation's volumes: size, bytes used, sandboxes mounting each."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        volumes = client.volumes.list()
    if json_output:
        print_json([v.to_api() for v in volumes])
    for v in [] if json_output else volumes:
        mounted = ",".join(v.mounted_by) or "-"
        typer.echo(f"{v.name}\t{v.size_mb} MiB\t{v.used_bytes} bytes used\t{mounted}")


@volume_app.command("get")
def get(
    ctx: typer.Context,
    name: Name,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """One volume, as JSON."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        print_json(client.volumes.get(name).info.to_api())


@volume_app.command("rm")
def remove(
    ctx: typer.Context,
    name: Name,
    force: Annotated[bool, typer.Option(help="Destroy the sandboxes mounting it first.")] = False,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Delete a volume and everything in it."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        client.volumes.delete(name, force=force)
    print_json({"deleted": name}) if json_output else typer.echo(f"deleted {name}")


@volume_app.command("ls")
def ls(
    ctx: typer.Context,
    name: Name,
    path: Annotated[str, typer.Argument(help="A directory inside the volume.")] = "/",
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List a directory of the volume."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        entries = client.volumes.get(name).files.list(path)
    print_json([e.to_api() for e in entries]) if json_output else entry_table(
        entries, full_paths=False
    )


@volume_app.command("put")
def put(
    ctx: typer.Context,
    name: Name,
    path: InVolume,
    source: Annotated[
        Path | None,
        typer.Option("--from", exists=True, dir_okay=False, show_default="standard input"),
    ] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Write a file into the volume from a local file or stdin."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        files = client.volumes.get(name).files
        if source is None:
            entry = files.upload(path, sys.stdin.buffer)
        else:
            with source.open("rb") as fileobj:
                entry = files.upload(path, fileobj)
    print_json(entry.to_api()) if json_output else typer.echo(f"{entry.path} ({entry.size} bytes)")


@volume_app.command("cat")
def cat(
    ctx: typer.Context, name: Name, path: InVolume, api_url: ApiUrl = None, api_key: ApiKey = None
) -> None:
    """Write a file of the volume to standard output."""
    with reporting_errors(as_json=False), open_client(ctx, api_url, api_key) as client:
        client.volumes.get(name).files.download(path, sys.stdout.buffer)
        sys.stdout.buffer.flush()
