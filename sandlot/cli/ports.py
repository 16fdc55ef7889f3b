"""`sandlot sandbox expose|ports|unexpose`: preview URLs of a sandbox's ports, and the
egress options of `sandbox create`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, Json, open_client
from sandlot.cli.output import print_json, reporting_errors

if TYPE_CHECKING:
    from sandlot.sdk import Port

PortArg = Annotated[int, typer.Argument(help="A port the sandbox listens on.", min=1, max=65535)]
SandboxArg = Annotated[str, typer.Argument(help="The sandbox.")]


def network_request(
    default: str | None, allow: list[str] | None, deny: list[str] | None
) -> dict[str, object] | None:
    """The `network` of a create request, or None to take the server's default policy."""
    if default is None and not allow and not deny:
        return None
    egress: dict[str, object] = {"default": default or "allow"}
    egress.update(allow=list(allow or []), deny=list(deny or []))
    return {"egress": egress}


def expose(
    ctx: typer.Context,
    sandbox_id: SandboxArg,
    port: PortArg,
    auth: Annotated[
        str, typer.Option(help="public, or token: callers must show the printed token.")
    ] = "public",
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Give PORT a preview URL and print it (and its token, shown only now)."""
    if auth not in ("public", "token"):
        typer.echo("error: --auth is public or token", err=True)
        raise typer.Exit(2)
    wanted: Literal["public", "token"] = "token" if auth == "token" else "public"
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        exposed = client.sandboxes.get(sandbox_id).ports.expose(port, auth=wanted)
    if json_output:
        print_json(exposed.to_api())
        return
    typer.echo(exposed.url)
    if exposed.token:
        typer.echo(f"token: {exposed.token}  (header X-Sandlot-Token, or ?token=)")


def ports(
    ctx: typer.Context,
    sandbox_id: SandboxArg,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List exposed ports and the automatic preview ports with their URLs."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        listed = client.sandboxes.get(sandbox_id).ports.list()
    if json_output:
        print_json([p.to_api() for p in listed])
        return
    for p in listed:
        typer.echo(f"{p.port}\t{_kind(p)}\t{p.url}")


def unexpose(
    ctx: typer.Context,
    sandbox_id: SandboxArg,
    port: PortArg,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Close PORT's preview URL."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        closed = client.sandboxes.get(sandbox_id).ports.close(port)
    if json_output:
        print_json(closed.to_api())


def _kind(port: Port) -> str:
    return "automatic" if port.automatic else port.auth
