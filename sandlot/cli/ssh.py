"""`sandlot sandbox ssh ID`: OpenSSH pointed at the sandbox's gateway address."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, open_client
from sandlot.cli.output import reporting_errors


def sandbox_ssh(
    ctx: typer.Context,
    sandbox_id: Annotated[str, typer.Argument(help="The sandbox to log into.")],
    command: Annotated[
        list[str] | None,
        typer.Argument(help="A command to run instead of a shell (after --)."),
    ] = None,
    identity: Annotated[
        Path | None,
        typer.Option("--identity", "-i", help="Private key for ssh's -i.", dir_okay=False),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="An ssh -o option (KEY=VALUE), repeatable."),
    ] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Open an SSH session (shell, or COMMAND) with the real `ssh`, on the right host
    and port. The key must be registered (`sandlot ssh-key add`), or the sandbox have
    a password."""
    ssh = shutil.which("ssh")
    if ssh is None:
        typer.echo("error: `ssh` (OpenSSH's client) is not installed", err=True)
        raise typer.Exit(127)
    with reporting_errors(as_json=False), open_client(ctx, api_url, api_key) as client:
        info = client.sandboxes.get(sandbox_id).get_ssh()
    argv = [ssh, "-p", str(info.port)]
    if identity is not None:
        argv += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    for item in option or []:
        argv += ["-o", item]
    argv += [f"{info.username}@{info.host}", *(command or [])]
    os.execv(ssh, argv)
