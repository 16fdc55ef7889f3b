"""`sandlot orgs …` and `sandlot keys …`: tenants and their API keys (admin keys only)."""

from __future__ import annotations

from typing import Annotated

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, Json, open_client
from sandlot.cli.output import print_json, reporting_errors

orgs_app = typer.Typer(no_args_is_help=True, help="Organisations (needs an admin key).")
keys_app = typer.Typer(no_args_is_help=True, help="API keys (needs an admin key).")


@orgs_app.command("create")
def create_org(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the new organisation.")],
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Create an organisation; prints its id."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        org = client.orgs.create(name)
    print_json(org.to_api()) if json_output else typer.echo(org.id)


@orgs_app.command("list")
def list_orgs(
    ctx: typer.Context, json_output: Json = False, api_url: ApiUrl = None, api_key: ApiKey = None
) -> None:
    """List organisations."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        orgs = client.orgs.list()
    if json_output:
        print_json([o.to_api() for o in orgs])
    for org in [] if json_output else orgs:
        typer.echo(f"{org.id}\t{org.name}")


@orgs_app.command("quota")
def set_quota(
    ctx: typer.Context,
    org: Annotated[str, typer.Argument(help="Organisation id or name.")],
    max_sandboxes: Annotated[int | None, typer.Option(help="Live sandboxes at once.")] = None,
    max_vcpus: Annotated[int | None, typer.Option(help="vCPUs of all its sandboxes.")] = None,
    max_memory: Annotated[int | None, typer.Option(help="MiB of all its sandboxes.")] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Set an organisation's quotas; an option left out restores the server default."""
    from sandlot.sdk import Quotas

    quotas = Quotas(max_sandboxes=max_sandboxes, max_vcpus=max_vcpus, max_memory_mb=max_memory)
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        updated = client.orgs.set_quotas(org, quotas)
    print_json(updated.to_api()) if json_output else typer.echo(updated.quotas.to_api())


@keys_app.command("create")
def create_key(
    ctx: typer.Context,
    org: Annotated[str, typer.Option("--org", help="Organisation id or name.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="sandboxes:read, sandboxes:write or admin; repeatable."),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "key",
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Create an API key; prints the secret, which is shown only this once."""
    scopes = scope or ["sandboxes:read", "sandboxes:write"]
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        key = client.keys.create(org, scopes, name)
    print_json(key.to_api()) if json_output else typer.echo(key.key)


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation's.")] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List active keys (never their secrets)."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        keys = client.keys.list(org)
    if json_output:
        print_json([k.to_api() for k in keys])
    for key in [] if json_output else keys:
        typer.echo(f"{key.id}\t{key.org}\t{key.name}\t{','.join(key.scopes)}")


@keys_app.command("revoke")
def revoke_key(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (not its secret).")],
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Revoke a key; it stops working at once."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        key = client.keys.revoke(key_id)
    print_json(key.to_api()) if json_output else typer.echo(f"revoked {key.id}")
