"""`sandlot ssh-key …`: public keys that open SSH sessions to the organisation's sandboxes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, Json, open_client
from sandlot.cli.output import print_json, reporting_errors

ssh_keys_app = typer.Typer(
    no_args_is_help=True, help="SSH public keys of the organisation (`ssh SANDBOX_ID@host`)."
)


@ssh_keys_app.command("add")
def add_key(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the key, e.g. my-laptop.")],
    public_key: Annotated[
        Path,
        typer.Option(
            "--public-key",
            help="The public key file, e.g. ~/.ssh/id_ed25519.pub.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Register a public key; prints its fingerprint."""
    text = public_key.read_text()
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        key = client.ssh_keys.add(name, text)
    print_json(key.to_api()) if json_output else typer.echo(f"{key.id}\t{key.fingerprint}")


@ssh_keys_app.command("list")
def list_keys(
    ctx: typer.Context, json_output: Json = False, api_url: ApiUrl = None, api_key: ApiKey = None
) -> None:
    """List the organisation's keys."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        keys = client.ssh_keys.list()
    if json_output:
        print_json([k.to_api() for k in keys])
    for key in [] if json_output else keys:
        typer.echo(f"{key.id}\t{key.name}\t{key.fingerprint}")


@ssh_keys_app.command("rm")
def remove_key(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key's name or id.")],
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Remove a key; logins with it are refused from now on."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        removed = client.ssh_keys.delete(key)
    print_json(removed.to_api()) if json_output else typer.echo(f"removed {removed.name}")
