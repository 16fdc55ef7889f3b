"""`sandlot template build|list`: templates on this host's disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from sandlot.config import Settings

template_app = typer.Typer(no_args_is_help=True, help="Build and list templates on this host.")

DataDir = Annotated[
    Path | None, typer.Option(help="Server data directory [default: /var/lib/sandlot]")
]


def _settings(data_dir: Path | None) -> Settings:
    from sandlot.config import Settings

    return Settings(data_dir=data_dir) if data_dir else Settings()


def build_with_progress(settings: Settings, name: str, console: Console) -> None:
    from sandlot.server import build_known_template

    console.print(
        f"Building template [bold]{name}[/] from Debian packages with mmdebstrap "
        "(a minute or two, once)."
    )
    with console.status(f"building template {name}…") as status:
        template = build_known_template(
            settings, name, lambda line: status.update(f"building template {name}: {line[:100]}")
        )
    size_mb = template.size_bytes // 2**20
    console.print(f"Template [bold]{name}[/] ready ({size_mb} MiB, digest {template.digest}).")


@template_app.command("build")
def build(
    name: Annotated[str, typer.Argument(help="A known recipe, e.g. base")] = "base",
    data_dir: DataDir = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if it exists")] = False,
) -> None:
    """Build a template from one of Sandlot's recipes (needs root and mmdebstrap)."""
    from rich.console import Console

    from sandlot.server import template_store

    settings = _settings(data_dir)
    console = Console(stderr=True)
    if not force and template_store(settings).exists(name):
        console.print(f"Template [bold]{name}[/] already exists (use --force to rebuild).")
        return
    build_with_progress(settings, name, console)


@template_app.command("list")
def list_templates(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """List the templates installed on this host."""
    from rich.console import Console
    from rich.table import Table

    from sandlot.server import template_store

    templates = template_store(_settings(data_dir)).list()
    if as_json:
        rows = [
            {"name": t.name, "digest": t.digest, "sizeBytes": t.size_bytes, "workdir": t.workdir}
            for t in templates
        ]
        typer.echo(json.dumps(rows))
        return
    table = Table("NAME", "DIGEST", "SIZE")
    for t in templates:
        table.add_row(t.name, t.digest, f"{t.size_bytes // 2**20} MiB")
    Console().print(table)
