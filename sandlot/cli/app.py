"""The `sandlot` command: the root of every subcommand."""

from __future__ import annotations

from typing import Annotated

import typer

from sandlot import __version__
from sandlot.cli.connection import ApiKey, ApiUrl, GlobalOptions
from sandlot.cli.events import events
from sandlot.cli.host.doctor import doctor
from sandlot.cli.host.serve import serve
from sandlot.cli.keys import keys_app, orgs_app
from sandlot.cli.lifecycle import (
    branch,
    pause,
    resume,
    rollback,
    set_timeout,
    snapshot,
    snapshots,
    unsnapshot,
)
from sandlot.cli.ports import expose, ports, unexpose
from sandlot.cli.sandbox import sandbox_app
from sandlot.cli.ssh import sandbox_ssh
from sandlot.cli.ssh_keys import ssh_keys_app
from sandlot.cli.template import template_app
from sandlot.cli.volume import volume_app

app = typer.Typer(
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Sandlot: isolated Linux sandboxes on your own machines.",
    pretty_exceptions_show_locals=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sandlot {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version),
    ] = False,
) -> None:
    """Sandlot: isolated Linux sandboxes on your own machines."""
    ctx.obj = GlobalOptions(api_url=api_url, api_key=api_key)


app.add_typer(sandbox_app, name="sandbox")
app.command("serve")(serve)
app.add_typer(template_app, name="template")
app.command("doctor")(doctor)
app.command("events")(events)
app.add_typer(orgs_app, name="orgs")
app.add_typer(keys_app, name="keys")
app.add_typer(ssh_keys_app, name="ssh-key")
app.add_typer(volume_app, name="volume")
sandbox_app.command("ssh")(sandbox_ssh)
sandbox_app.command("expose")(expose)
sandbox_app.command("ports")(ports)
sandbox_app.command("unexpose")(unexpose)
sandbox_app.command("pause")(pause)
sandbox_app.command("resume")(resume)
for command in (snapshot, snapshots, unsnapshot, rollback, branch):
    sandbox_app.command(command.__name__)(command)
sandbox_app.command("set-timeout")(set_timeout)


def main() -> None:
    app()
