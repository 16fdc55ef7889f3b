"""`sandlot doctor`: is this host ready to run sandboxes, and if not, what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

Check = tuple[str, Callable[[], tuple[bool, str]]]


def _tool(name: str, package: str) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        path = shutil.which(name)
        if path is None:
            return False, f"not found: apt-get install {package}"
        out = subprocess.run([name, "--version"], capture_output=True, text=True).stdout
        return True, (out.splitlines() or [path])[0]

    return check


def _root() -> tuple[bool, str]:
    return os.geteuid() == 0, "running as root" if os.geteuid() == 0 else "sandlot serve needs root"


def _userns() -> tuple[bool, str]:
    limit = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    return limit > 0, f"max_user_namespaces={limit}" + ("" if limit else ": set it above 0")


def _cgroups() -> tuple[bool, str]:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return True, "cgroup v2"
    needed = ["memory", "pids", "cpu", "cpuacct", "cpuset", "freezer"]
    missing = [c for c in needed if not Path("/sys/fs/cgroup", c).is_dir()]
    return not missing, "cgroup v1" + (f", missing controllers: {missing}" if missing else "")


def _criu() -> tuple[bool, str]:
    """Optional: without it pauses freeze in memory instead of going to disk."""
    from sandlot.runtime.criu import find_criu

    found = find_criu()
    if found.path is None:
        return True, f"pauses will freeze in memory: {found.problem}"
    probe = subprocess.run([str(found.path), "check"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"{found.path} fails `criu check` ({last}): pauses will fail over to freeze"
    version = ".".join(map(str, found.version or ()))
    return True, f"CRIU {version} at {found.path}: pauses checkpoint to disk"


def _runsc() -> tuple[bool, str]:
    """Optional: only the runsc runtime needs it. A sandbox is started to prove the
    platform works, as a hung platform (kvm without /dev/kvm) shows nothing else."""
    from sandlot.config import Settings
    from sandlot.runtime.runsc import runsc_version

    version = runsc_version()
    if version is None:
        return True, "not installed (only `runtime = runsc` needs it): scripts/install-runsc"
    platform = Settings().runsc_platform
    try:
        probe = subprocess.run(
            ["runsc", f"--platform={platform}", "--network=none", "do", "true"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return False, f"runsc {version}, platform {platform} hangs: try runsc_platform = systrap"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"runsc {version}, platform {platform} fails `runsc do true`: {last}"
    return True, f"runsc {version}, platform {platform}: gVisor sandboxes work"


def _template(data_dir: Path) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        from sandlot.config import Settings
        from sandlot.server import template_store

        names = [t.name for t in template_store(Settings(data_dir=data_dir)).list()]
        if "base" in names:
            return True, f"templates: {', '.join(names)}"
        return False, "no base template: `sandlot template build base` (or start `sandlot serve`)"

    return check


def doctor(
    data_dir: Annotated[Path, typer.Option(help="Server data directory")] = Path(
        "/var/lib/sandlot"
    ),
    check: Annotated[
        bool, typer.Option("--check", help="Compare the store with the host instead.")
    ] = False,
) -> None:
    """Check the host: root, runc, mmdebstrap, user namespaces, cgroups, CRIU, runsc, templates.

    With --check, also compare the server's store with the host and list every
    sandbox or leftover that is out of place (exit 1 if any).
    """
    from rich.console import Console
    from rich.table import Table

    if check:
        raise typer.Exit(_consistency(data_dir))

    checks: list[Check] = [
        ("root", _root),
        ("runc", _tool("runc", "runc")),
        ("mmdebstrap", _tool("mmdebstrap", "mmdebstrap")),
        ("user namespaces", _userns),
        ("cgroups", _cgroups),
        ("criu", _criu),
        ("runsc", _runsc),
        ("templates", _template(data_dir)),
    ]
    table = Table("CHECK", "OK", "DETAIL")
    failed = 0
    for name, probe in checks:
        ok, detail = probe()
        failed += not ok
        table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", detail)
    Console().print(table)
    raise typer.Exit(1 if failed else 0)


def _consistency(data_dir: Path) -> int:
    import asyncio

    from sandlot.config import Settings
    from sandlot.core.consistency import find_inconsistencies
    from sandlot.server import local_host, make_runtime, network_manager, open_database

    settings = Settings(data_dir=data_dir)
    host = local_host(settings, make_runtime(settings), network_manager(settings))
    problems = asyncio.run(find_inconsistencies(open_database(settings), host))
    for problem in problems:
        typer.echo(problem)
    typer.echo(f"{len(problems)} inconsistencies" if problems else "store and host agree")
    return 1 if problems else 0
