"""Read a sandbox's resource use from its cgroup, on cgroup v1 or v2 hosts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from sandlot.domain.host_values import SandboxUsage

CGROUP_ROOT = Path("/sys/fs/cgroup")


def is_cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def _read_int(path: Path, default: int = 0) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return default
    return default if text == "max" else int(text)


def _read_keyed(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split() for line in lines if line.strip())}


def cgroup_dirs(relative: str) -> list[Path]:
    """Every directory the cgroup occupies: one on v2, one per hierarchy on v1."""
    rel = relative.lstrip("/")
    if is_cgroup_v2():
        return [CGROUP_ROOT / rel]
    # Combined hierarchies (cpu,cpuacct) appear under several names through symlinks.
    hierarchies = {h.resolve() for h in CGROUP_ROOT.iterdir() if h.is_dir()}
    return sorted(h / rel for h in hierarchies if (h / rel).is_dir())


def read_oom_kills(relative: str) -> int:
    """Just the OOM-kill counter: one file, cheap enough for every command's path."""
    rel = relative.lstrip("/")
    if is_cgroup_v2():
        return _read_keyed(CGROUP_ROOT / rel / "memory.events").get("oom_kill", 0)
    return _read_keyed(CGROUP_ROOT / "memory" / rel / "memory.oom_control").get("oom_kill", 0)


def read_usage(relative: str) -> SandboxUsage:
    rel = relative.lstrip("/")
    if is_cgroup_v2():
        d = CGROUP_ROOT / rel
        return SandboxUsage(
            cpu_ns=_read_keyed(d / "cpu.stat").get("usage_usec", 0) * 1000,
            memory_bytes=_read_int(d / "memory.current"),
            memory_limit_bytes=_read_int(d / "memory.max"),
            pids=_read_int(d / "pids.current"),
            oom_kills=read_oom_kills(relative),
        )
    memory = CGROUP_ROOT / "memory" / rel
    return SandboxUsage(
        cpu_ns=_read_int(CGROUP_ROOT / "cpuacct" / rel / "cpuacct.usage"),
        memory_bytes=_read_int(memory / "memory.usage_in_bytes"),
        memory_limit_bytes=_read_int(memory / "memory.limit_in_bytes"),
        pids=_read_int(CGROUP_ROOT / "pids" / rel / "pids.current"),
        oom_kills=read_oom_kills(relative),
    )


def cgroup_pids(relative: str) -> set[int]:
    found: set[int] = set()
    for d in cgroup_dirs(relative):
        for procs in (d, *(p for p in d.rglob("*") if p.is_dir())):
            with contextlib.suppress(OSError):
                found.update(int(pid) for pid in (procs / "cgroup.procs").read_text().split())
    return found


async def kill_cgroup(relative: str, timeout: float = 5.0) -> None:
    """SIGKILL whatever is left in the cgroup and wait until it is empty.

    A pid namespace dies with its init, but the kernel reaps the rest asynchronously;
    removing the cgroup before they are gone fails with EBUSY.
    """
    deadline = time.monotonic() + timeout
    while pids := cgroup_pids(relative):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes {sorted(pids)} of {relative} did not exit")
        await asyncio.sleep(0.005)


def remove_cgroup(relative: str) -> None:
    """Remove leftovers the OCI runtime missed (it skips hierarchies it does not manage)."""
    for d in cgroup_dirs(relative):
        nested = [p for p in d.rglob("*") if p.is_dir()]
        for child in sorted(nested, key=lambda p: len(p.parts), reverse=True):
            child.rmdir()
        d.rmdir()


def inherit_cpusets(relative: str) -> None:
    """On cgroup v1, make each ancestor of `relative` in the cpuset hierarchy with its
    parent's CPUs and memory nodes. runc does this itself; runsc leaves a new ancestor
    empty, and then no CPU set can be given to the sandbox (the kernel says EACCES)."""
    if is_cgroup_v2():
        return
    parent = CGROUP_ROOT / "cpuset"
    for part in Path(relative.lstrip("/")).parts[:-1]:
        child = parent / part
        child.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not (child / name).read_text().strip():
                (child / name).write_text((parent / name).read_text())
        parent = child
