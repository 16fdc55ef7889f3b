"""What the CLI prints: JSON for machines, rich tables for people, one error format."""

from __future__ import annotations

import json
import shlex
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from sandlot.errors import SandlotError

if TYPE_CHECKING:
    from rich.console import Console

    from sandlot.sdk import EntryInfo, ProcessInfo, SandboxInfo


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_error(err: SandlotError, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"error": err.to_dict()}, ensure_ascii=False), err=True)
    else:
        typer.secho(f"error[{err.code}]: {err.message}", err=True, fg=typer.colors.RED)


@contextmanager
def reporting_errors(*, as_json: bool, exit_code: int = 1) -> Iterator[None]:
    """Turn a Sandlot error into its one-line report and the exit code."""
    try:
        yield
    except SandlotError as err:
        print_error(err, as_json=as_json)
        raise typer.Exit(exit_code) from None


def sandbox_table(sandboxes: Sequence[SandboxInfo]) -> None:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    # Everything but the metadata keeps its width; the metadata folds.
    table.add_column("ID", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("TEMPLATE", no_wrap=True)
    table.add_column("VCPUS", justify="right", no_wrap=True)
    table.add_column("MEMORY", justify="right", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    table.add_column("METADATA", overflow="fold", ratio=1)
    for sbx in sandboxes:
        table.add_row(
            sbx.id,
            sbx.status,
            sbx.template,
            str(sbx.resources.vcpus),
            f"{sbx.resources.memory_mb} MiB",
            _when(sbx.created_at),
            ", ".join(f"{k}={v}" for k, v in sorted(sbx.metadata.items())),
        )
    _console().print(table)


def sandbox_details(sbx: SandboxInfo) -> None:
    from rich.table import Table

    r = sbx.resources
    rows = [
        ("id", sbx.id),
        ("status", sbx.status + (f" ({sbx.status_reason})" if sbx.status_reason else "")),
        ("paused", f"by {sbx.pause_mode}" if sbx.pause_mode else "no"),
        ("template", sbx.template),
        ("resources", f"{r.vcpus} vCPU, {r.memory_mb} MiB memory, {r.disk_mb} MiB disk"),
        ("created", _when(sbx.created_at)),
        ("started", _when(sbx.started_at)),
        ("ended", _when(sbx.ended_at)),
        ("idle timeout", f"{sbx.idle_timeout} s"),
        ("timeout", "none" if sbx.timeout is None else f"{sbx.timeout} s"),
        ("env", " ".join(f"{k}={v}" for k, v in sorted(sbx.env.items()))),
        ("metadata", " ".join(f"{k}={v}" for k, v in sorted(sbx.metadata.items()))),
    ]
    table = Table(box=None, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    _console().print(table)


def entry_table(entries: Sequence[EntryInfo], *, full_paths: bool) -> None:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    table.add_column("MODE", no_wrap=True)
    table.add_column("SIZE", justify="right", no_wrap=True)
    table.add_column("MODIFIED", no_wrap=True)
    table.add_column("NAME", overflow="fold", ratio=1)
    for entry in entries:
        name = entry.path if full_paths else entry.name
        if entry.symlink_target is not None:
            name += f" -> {entry.symlink_target}"
        table.add_row(_filemode(entry), str(entry.size), _when(entry.mtime), name)
    _console().print(table)


def process_table(processes: Sequence[ProcessInfo]) -> None:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("PID", justify="right", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("PTY", no_wrap=True)
    table.add_column("STARTED", no_wrap=True)
    table.add_column("CWD", no_wrap=True)
    table.add_column("COMMAND", overflow="fold", ratio=1)
    for proc in processes:
        command = proc.command if isinstance(proc.command, str) else shlex.join(proc.command)
        table.add_row(
            proc.id,
            str(proc.pid),
            process_status(proc),
            "yes" if proc.pty else "no",
            _when(proc.started_at),
            proc.cwd,
            command,
        )
    _console().print(table)


def process_status(proc: ProcessInfo) -> str:
    """ "running", or how it ended: "exited 0", "killed SIGTERM", "timed out"."""
    if proc.status == "running":
        return "running"
    if proc.timed_out:
        return "timed out"
    if proc.exit_code is None and proc.signal:
        return f"killed {proc.signal}"
    return f"exited {proc.exit_code}"


def human_bytes(size: float) -> str:
    """1536 → "1.5 KiB"; whole bytes below 1 KiB."""
    if abs(size) < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if abs(size) < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def _console() -> Console:
    from rich.console import Console

    # Piped output keeps its natural width; a terminal's width is respected.
    return Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 10_000)


_TYPE_BITS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


def _filemode(entry: EntryInfo) -> str:
    return stat.filemode(_TYPE_BITS.get(entry.type, 0) | entry.mode)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
