"""`sandlot template list|get|build|import|rm|logs`.

`build` takes either a context directory and `--name` (a Sandlotfile build, through the
API, like everything else here) or the name of one of Sandlot's recipes (`base`,
`python`, `node`), which is built on this host from Debian packages before any server
runs; that is how set-up makes the default template.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, Json, open_client
from sandlot.cli.output import human_bytes, print_json, reporting_errors

if TYPE_CHECKING:
    from sandlot.sdk import BuildInfo

template_app = typer.Typer(
    no_args_is_help=True, help="Templates: build from a Sandlotfile, import images, list, remove."
)

DataDir = Annotated[
    Path | None,
    typer.Option(help="Server data directory, for recipe builds [default: /var/lib/sandlot]"),
]


@template_app.command("build")
def build(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            help="The build context directory (with --name), or a recipe: base, python, node."
        ),
    ] = ".",
    name: Annotated[str | None, typer.Option("--name", "-n", help="The template to make.")] = None,
    file: Annotated[
        str, typer.Option("--file", "-f", help="The Sandlotfile (path or inside the context).")
    ] = "Sandlotfile",
    force: Annotated[bool, typer.Option(help="Recipes: build anew even if up to date.")] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every step again, cached or not.")
    ] = False,
    data_dir: DataDir = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Build a template from a Sandlotfile and a context, streaming the build's log."""
    if name is None:
        from sandlot.cli.host.recipes import build_recipe

        build_recipe(target, data_dir, force)
        return
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        log = None if json_output else typer.echo
        done = client.templates.build(name, file, target, on_log=log, no_cache=no_cache)
    _report(done, json_output)


@template_app.command("import")
def import_image(
    ctx: typer.Context,
    archive: Annotated[
        Path,
        typer.Argument(
            help="A `docker save` archive, an OCI image archive or an OCI layout directory.",
            exists=True,
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="The template to make.")],
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Import an image you already have as a template."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        log = None if json_output else typer.echo
        done = client.templates.import_image(name, archive, on_log=log)
    _report(done, json_output)


def _report(done: BuildInfo, json_output: bool) -> None:
    if json_output:
        print_json(done.to_api())


@template_app.command("list")
def list_templates(
    ctx: typer.Context, json_output: Json = False, api_url: ApiUrl = None, api_key: ApiKey = None
) -> None:
    """The built-in templates and your organisation's own."""
    from rich.console import Console
    from rich.table import Table

    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        templates = client.templates.list()
    if json_output:
        print_json([t.to_api() for t in templates])
        return
    table = Table("NAME", "SOURCE", "DIGEST", "LAYERS", "SIZE", "CREATED")
    for t in templates:
        table.add_row(
            t.name, t.source, t.digest, str(t.layers), human_bytes(t.size_bytes), t.created_at
        )
    Console().print(table)


@template_app.command("get")
def get_template(
    ctx: typer.Context,
    name: str,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """A template's settings: env, workdir, user, start and ready commands, ports."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        template = client.templates.get(name)
    if json_output:
        print_json(template.to_api())
        return
    for key, value in template.to_api().items():
        typer.echo(f"{key}: {value}")


@template_app.command("rm")
def remove(
    ctx: typer.Context,
    name: str,
    force: Annotated[
        bool, typer.Option(help="Remove even while sandboxes or snapshots use it.")
    ] = False,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Remove a template (refused while it is in use, unless --force)."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        removed = client.templates.delete(name, force=force)
    print_json(removed.to_api()) if json_output else typer.echo(f"removed {removed.name}")


@template_app.command("logs")
def logs(
    ctx: typer.Context,
    build_id: str,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Follow a build's or import's log until it ends."""
    with reporting_errors(as_json=False), open_client(ctx, api_url, api_key) as client:
        client.templates.wait(build_id, on_log=typer.echo)
