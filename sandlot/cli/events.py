"""`sandlot events`: what happened to sandboxes, one line (or one JSON object) each."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, open_client
from sandlot.cli.output import human_bytes, reporting_errors

if TYPE_CHECKING:
    from sandlot.sdk import Event

# Without --follow the replay is over once the server has been quiet this long.
REPLAY_QUIET = 0.5


def events(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing live events until Ctrl-C.")
    ] = False,
    since: Annotated[
        int | None,
        typer.Option(help="Replay the stored events after this id first.", show_default=False),
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "-t",
            help="status, metrics, log, exec.completed, file.created, cost.runtime; repeatable.",
            show_default="all",
        ),
    ] = None,
    sandbox: Annotated[
        str | None,
        typer.Option(help="Only this sandbox's events.", show_default="every sandbox"),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print each event's JSON on its own line.")
    ] = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Print events: time, type, sandbox and a summary, one line each.

    Without --follow, print what --since replays (or what arrives within half a
    second) and stop; with it, go on with live events until Ctrl-C, or until the
    sandbox given with --sandbox ends.
    """
    with reporting_errors(as_json=json_output), open_client(ctx, api_url, api_key) as client:
        source = client.sandboxes.get(sandbox) if sandbox is not None else client
        quiet = None if follow else REPLAY_QUIET
        stream = source.events(since=since, types=types, idle_timeout=quiet)
        with contextlib.suppress(KeyboardInterrupt), stream:
            for event in stream:
                if json_output:
                    typer.echo(json.dumps(event.to_api(), ensure_ascii=False))
                else:
                    typer.echo(event_line(event))


def event_line(event: Event) -> str:
    """`2025-01-02 03:04:05  status          sbx-…  running (resumed)`."""
    when = event.at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return f"{when}  {event.type:<15} {event.sandbox_id or '-':<14} {event_summary(event)}"


def event_summary(event: Event) -> str:
    data = event.data
    if event.type == "status":
        text = str(data.get("status"))
        if data.get("reason"):
            text += f" ({data['reason']})"
        if isinstance(ms := data.get("runtimeDurationMs"), int | float):
            text += f" after {ms / 1000:.1f} s"
        return text
    if (metrics := event.metrics) is not None:
        return (
            f"cpu {metrics.cpu_percent:.1f}%  mem {metrics.mem_percent:.1f}% "
            f"({human_bytes(metrics.mem_bytes)})  disk {human_bytes(metrics.disk_bytes)}  "
            f"rx {human_bytes(metrics.net_rx_bytes_per_sec)}/s  "
            f"tx {human_bytes(metrics.net_tx_bytes_per_sec)}/s  pids {metrics.pids}"
        )
    if event.type == "exec.completed":
        return f"{_command(data.get('command'))} {_ending(data)}"
    if event.type == "file.created":
        size = data.get("size")
        return f"{data.get('path')}" + (
            f" ({human_bytes(size)})" if isinstance(size, int | float) else ""
        )
    if event.type == "log":
        tag = data.get("tag")
        return f"{data.get('severity')} {tag + ': ' if tag else ''}{data.get('line')}"
    if event.type == "cost.runtime":
        return (
            f"runtime {_number(data.get('runtimeSeconds'))} s, "
            f"{_number(data.get('vcpuSeconds'))} vCPU·s, "
            f"{_number(data.get('memoryMbSeconds'))} MB·s"
        )
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _command(command: Any) -> str:
    import shlex

    if isinstance(command, list):
        return shlex.join(str(word) for word in command)
    return str(command)


def _ending(data: dict[str, Any]) -> str:
    if data.get("timedOut"):
        how = "timed out"
    elif data.get("exitCode") is None and data.get("signal"):
        how = f"killed {data['signal']}"
    else:
        how = f"exited {data.get('exitCode')}"
    if isinstance(ms := data.get("durationMs"), int | float):
        how += f" in {ms:.0f} ms"
    return how


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"
