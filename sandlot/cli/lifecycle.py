"""`sandlot sandbox pause|resume|set-timeout|snapshot|snapshots|unsnapshot|rollback|branch`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, Json, open_client
from sandlot.cli.output import print_json, reporting_errors, sandbox_details

if TYPE_CHECKING:
    from sandlot.sdk import Sandbox, SandboxInfo, SnapshotInfo

SandboxId = Annotated[
    str, typer.Argument(help="Sandbox id, e.g. sbx-7k2m9p4q1x.", metavar="ID", show_default=False)
]
SnapshotRef = Annotated[
    str, typer.Argument(help="Snapshot name or id.", metavar="SNAPSHOT", show_default=False)
]


def _show(info: SandboxInfo, json_output: bool) -> None:
    if json_output:
        print_json(info.to_api())
    else:
        sandbox_details(info)


def _state_change(method: Callable[[Sandbox], SandboxInfo], doc: str) -> Callable[..., None]:
    """A command that takes a sandbox id, changes its state and shows the result."""

    def command(
        ctx: typer.Context,
        sandbox_id: SandboxId,
        json_output: Json = False,
        api_url: ApiUrl = None,
        api_key: ApiKey = None,
    ) -> None:
        with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
            info = method(client.sandboxes.get(sandbox_id))
        _show(info, json_output)

    command.__doc__ = doc
    return command


pause = _state_change(
    lambda sbx: sbx.pause(),
    "Pause a sandbox: its processes go to disk (or freeze where CRIU is missing).",
)
resume = _state_change(lambda sbx: sbx.resume(), "Resume a paused sandbox exactly as it was.")


def set_timeout(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    seconds: Annotated[int, typer.Argument(min=0, help="Lifetime from now; 0 removes it.")],
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """End the sandbox SECONDS from now (reason "timeout")."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        info = client.sandboxes.get(sandbox_id).set_timeout(seconds)
    _show(info, json_output)


def snapshot(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Snapshot name.")] = None,
    description: Annotated[str | None, typer.Option(help="What the snapshot holds.")] = None,
    memory: Annotated[
        bool | None,
        typer.Option(
            "--memory/--no-memory", help="Save processes too (default: where the server can)."
        ),
    ] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Save the sandbox's disk (and processes) as a named snapshot; it keeps running."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        snap = client.sandboxes.get(sandbox_id).snapshots.create(
            name, description=description, memory=memory
        )
    if json_output:
        print_json(snap.to_api())
    else:
        snapshot_table([snap])


def snapshots(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List a sandbox's snapshots."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        found = client.sandboxes.get(sandbox_id).snapshots.list()
    if json_output:
        print_json([s.to_api() for s in found])
    else:
        snapshot_table(found)


def unsnapshot(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    ref: SnapshotRef,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Delete one of a sandbox's snapshots."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        snap = client.sandboxes.get(sandbox_id).snapshots.delete(ref)
    if json_output:
        print_json(snap.to_api())
    else:
        typer.echo(f"deleted {snap.id} ({snap.name})")


def rollback(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    ref: SnapshotRef,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Put a sandbox back as it was at one of its snapshots (same id)."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        info = client.sandboxes.get(sandbox_id).rollback(ref)
    _show(info, json_output)


def branch(
    ctx: typer.Context,
    sandbox_id: SandboxId,
    ref: SnapshotRef,
    name: Annotated[str | None, typer.Option("--name", "-n", help="The branch's name.")] = None,
    json_output: Json = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Start a new sandbox from one of this sandbox's snapshots; prints its id."""
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        child = client.sandboxes.get(sandbox_id).branch(ref, name=name)
    if json_output:
        print_json(child.info.to_api())
    else:
        typer.echo(child.id)


def snapshot_table(found: Sequence[SnapshotInfo]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "MEMORY", "SIZE", "CREATED"):
        table.add_column(column, no_wrap=True)
    for snap in found:
        table.add_row(
            snap.id,
            snap.name,
            "yes" if snap.has_memory else "no",
            f"{snap.size_bytes / 2**20:.1f} MiB",
            snap.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    Console().print(table)
