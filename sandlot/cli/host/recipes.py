"""`sandlot template build base|python|node`: a recipe built on this host from Debian
packages with mmdebstrap, before any server runs (how set-up makes the default template).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from sandlot.config import Settings
from sandlot.server import build_known_template, template_store
from sandlot.templates.recipe import RECIPES


def build_recipe(name: str, data_dir: Path | None, force: bool) -> None:
    if name not in RECIPES:
        raise typer.BadParameter(
            f"give --name to build {name!r} as a context, or a recipe: {', '.join(RECIPES)}"
        )
    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    build_with_progress(settings, name, Console(stderr=True), force)


def build_with_progress(
    settings: Settings, name: str, console: Console, force: bool = False
) -> None:
    recipe = RECIPES.get(name)
    if not force and recipe and template_store(settings).exists(name, recipe.digest()):
        console.print(f"Template [bold]{name}[/] is up to date.")
        return
    console.print(
        f"Building template [bold]{name}[/] from Debian packages with mmdebstrap "
        "(a minute or two, once)."
    )
    with console.status(f"building template {name}…") as status:
        template = build_known_template(
            settings,
            name,
            lambda line: status.update(f"building template {name}: {line[:100]}"),
            force=force,
        )
    size_mb = template.size_bytes // 2**20
    console.print(f"Template [bold]{name}[/] ready ({size_mb} MiB, digest {template.digest}).")
