"""More than one backend in one server: each sandbox runs on the backend chosen when it
was created, and every later call about it goes to that backend.

Which backend holds a sandbox is written to a file in its disk directory, so it survives
server restarts with nothing in the store to migrate, and is gone with the sandbox. A
snapshot carries the same file: only the backend that dumped its processes can restore
them, so a rollback or a branch stays on it unless asked otherwise.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from pathlib import Path

from sandlot.domain.host_values import (
    BackendError,
    Capabilities,
    RuntimeSandbox,
    RuntimeStatus,
    SandboxSpec,
    SandboxUsage,
)
from sandlot.domain.resources import Resources
from sandlot.runtime.base import AgentEndpoint
from sandlot.runtime.oci import OciRuntime

MARKER = "runtime"
"""The file, in a sandbox's disk directory and in a snapshot, naming its backend."""


class MultiRuntime:
    """Routes each per-sandbox call to the backend the sandbox's marker names; a sandbox
    without one (made before markers, or cut short before its disk existed) is the
    default backend's, except that destroying it asks every backend."""

    def __init__(self, data_dir: Path, backends: builtins.list[OciRuntime], default: str) -> None:
        self._backends = {b.name: b for b in backends}
        if default not in self._backends:
            raise ValueError(f"default runtime {default!r} is not among {list(self._backends)}")
        if len({b.uid_offset for b in backends}) != 1:
            raise ValueError("every backend must map sandbox root to the same host uid")
        self._default = self._backends[default]
        self._disks_root = data_dir / "sandboxes"
        self._starting: dict[str, OciRuntime] = {}
        """Sandboxes being created, whose disk directory (and marker) may not exist yet."""
        self.name = default
        self.uid_offset = self._default.uid_offset

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends a sandbox may ask for, the default first."""
        return (self.name, *(n for n in self._backends if n != self.name))

    @property
    def capabilities(self) -> Capabilities:
        return self._default.capabilities

    def backend_of(self, sandbox_id: str) -> str:
        return self._of(sandbox_id).name

    def capabilities_of(self, sandbox_id: str) -> Capabilities:
        return self._of(sandbox_id).capabilities

    def _of(self, sandbox_id: str) -> OciRuntime:
        starting = self._starting.get(sandbox_id)
        if starting is not None:
            return starting
        return self._named(_read_marker(self._disks_root / sandbox_id)) or self._default

    def _named(self, name: str | None) -> OciRuntime | None:
        return self._backends.get(name) if name is not None else None

    async def create(self, spec: SandboxSpec, snapshot: Path | None = None) -> None:
        if spec.runtime is not None and spec.runtime not in self._backends:
            raise BackendError(f"runtime {spec.runtime!r} is not offered here")
        saved = _read_marker(snapshot) if snapshot is not None else None
        backend = self._named(spec.runtime or saved) or self._default
        # A disk image starts on every backend; dumped processes only on their own.
        processes = snapshot is not None and (snapshot / "checkpoint").is_dir()
        if processes and saved not in (None, backend.name):
            raise BackendError(
                f"the snapshot holds processes {saved} dumped; only {saved} can restore "
                "them (start from it without a runtime, or take a filesystem snapshot)"
            )
        self._starting[spec.sandbox_id] = backend
        try:
            await backend.create(spec, snapshot)
            _write_marker(backend.disk_dir(spec.sandbox_id), backend.name)
        finally:
            del self._starting[spec.sandbox_id]

    async def snapshot(self, sandbox_id: str, target: Path, memory: bool) -> int:
        backend = self._of(sandbox_id)
        used = await backend.snapshot(sandbox_id, target, memory)
        _write_marker(target, backend.name)
        return used

    async def export_changes(self, sandbox_id: str, target: Path) -> None:
        await self._of(sandbox_id).export_changes(sandbox_id, target)

    async def destroy(self, sandbox_id: str) -> None:
        if sandbox_id in self._starting or _read_marker(self._disks_root / sandbox_id):
            await self._of(sandbox_id).destroy(sandbox_id)
            return
        for backend in self._backends.values():  # whose it was is unknown
            await backend.destroy(sandbox_id)

    async def freeze(self, sandbox_id: str) -> None:
        await self._of(sandbox_id).freeze(sandbox_id)

    async def thaw(self, sandbox_id: str) -> None:
        await self._of(sandbox_id).thaw(sandbox_id)

    async def checkpoint(self, sandbox_id: str) -> None:
        await self._of(sandbox_id).checkpoint(sandbox_id)

    async def restore(self, sandbox_id: str, images: Path | None = None) -> None:
        await self._of(sandbox_id).restore(sandbox_id, images)

    async def update(self, sandbox_id: str, resources: Resources, cpus: str | None) -> None:
        await self._of(sandbox_id).update(sandbox_id, resources, cpus)

    async def status(self, sandbox_id: str) -> RuntimeStatus:
        return await self._of(sandbox_id).status(sandbox_id)

    async def list(self) -> builtins.list[RuntimeSandbox]:
        """Every backend's, each sandbox with the status its own backend reports (the
        others see only its disk and bundle, as leftovers)."""
        listed = await asyncio.gather(*(b.list() for b in self._backends.values()))
        found: dict[str, RuntimeStatus] = {}
        for backend, entries in zip(self._backends.values(), listed, strict=True):
            for entry in entries:
                if self._of(entry.sandbox_id) is backend or entry.sandbox_id not in found:
                    found[entry.sandbox_id] = entry.status
        return [RuntimeSandbox(sid, status) for sid, status in sorted(found.items())]

    def init_pid(self, sandbox_id: str) -> int | None:
        return self._of(sandbox_id).init_pid(sandbox_id)

    def agent_endpoint(self, sandbox_id: str) -> AgentEndpoint:
        return self._of(sandbox_id).agent_endpoint(sandbox_id)

    def usage(self, sandbox_id: str) -> SandboxUsage:
        return self._of(sandbox_id).usage(sandbox_id)

    def oom_kills(self, sandbox_id: str) -> int:
        return self._of(sandbox_id).oom_kills(sandbox_id)

    def orphan_traces(self, known: set[str]) -> builtins.list[str]:
        traces = {t for b in self._backends.values() for t in b.orphan_traces(known)}
        return sorted(traces)

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()


def _read_marker(directory: Path) -> str | None:
    with contextlib.suppress(OSError):
        return (directory / MARKER).read_text().strip() or None
    return None


def _write_marker(directory: Path, name: str) -> None:
    (directory / MARKER).write_text(name + "\n")
