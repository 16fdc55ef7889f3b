"""`sandlot serve`: the API server on this host, with first-start set-up."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 7766]")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where state lives [default: /var/lib/sandlot]")
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="Sandbox backend: oci or runsc (gVisor) [default: oci]")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Start the Sandlot API server (building the base template on first start)."""
    import uvicorn
    from rich.console import Console

    from sandlot.cli.host.recipes import build_with_progress
    from sandlot.config import Settings
    from sandlot.sdk import save_credentials
    from sandlot.server import build_server, ensure_admin_key, template_store

    console = Console(stderr=True)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    overrides: dict[str, object] = {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "runtime": runtime,
    }
    settings = Settings.model_validate({k: v for k, v in overrides.items() if v is not None})
    if os.geteuid() != 0:
        console.print(
            "[red]sandlot serve must run as root[/] (it creates namespaces, mounts and cgroups)"
        )
        raise typer.Exit(1)
    if settings.build_default_template and not template_store(settings).exists(
        settings.default_template
    ):
        build_with_progress(settings, settings.default_template, console)
    server = build_server(settings)
    key_file = settings.data_dir / "admin-key"
    new_key = ensure_admin_key(server.db, key_file)
    api_url = f"http://{settings.host}:{settings.port}"
    if new_key is not None:
        console.print(
            f"Created the admin organisation. Admin API key (shown once): [bold]{new_key}[/]"
        )
        console.print(f"It is also in {key_file} (mode 0600).")
    if key_file.is_file():
        creds = save_credentials(api_url, key_file.read_text().strip())
        console.print(f"Local SDK and CLI credentials: {creds}")
    console.print(f"Sandlot listening on {api_url}")
    # A client that stops reading an attachment holds back its process's output (that is
    # the back-pressure) and cannot answer pings meanwhile: allow it minutes, not seconds.
    uvicorn.run(
        server.app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        http=server.protocol,  # type: ignore[arg-type]  # called like the class it names
        ws_ping_interval=30,
        ws_ping_timeout=300,
    )
