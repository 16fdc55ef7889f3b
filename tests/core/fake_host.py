"""An in-memory `Host` for core's unit tests: sandboxes are entries in a dict, their
agents answer every command with exit code 0, and any operation can be made to fail.

It stands where `LocalHost` (runc, nftables, the agent) stands in the server, so core's
decisions (what state a sandbox is recorded in, what is asked of the host and in which
order, what a failure leaves) can be tested without root in milliseconds. It does what
core's lifecycle asks of a host and no more: file and process calls are the end-to-end
suites' business.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandlot.agent.protocol import EntryInfo
from sandlot.domain.host_values import (
    BackendError,
    Capabilities,
    RuntimeSandbox,
    RuntimeStatus,
    SandboxSpec,
    SandboxUsage,
)
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.domain.resources import Resources
from sandlot.templates.agent_layer import AGENT_LAYER_DIR
from sandlot.templates.store import Template, TemplateStore


@dataclass(frozen=True)
class FakeResult:
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int | None = 0
    signal: str | None = None
    duration_ms: float = 1.0
    timed_out: bool = False
    truncated: bool = False


@dataclass
class FakeSession:
    """An agent connection: it runs nothing, but knows whether it was closed or quiesced."""

    sandbox_id: str
    closed: bool = False
    quiesced: bool = False
    commands: list[str | list[str]] = field(default_factory=list)
    _ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def exec(self, command: str | list[str], **_: object) -> FakeResult:
        self.commands.append(command)
        return FakeResult()

    async def follow_log(self) -> AsyncIterator[object]:
        await self._ended.wait()  # no lines; the follower ends with the connection
        return
        yield

    async def quiesce(self) -> None:
        self.quiesced = True
        await self.close()

    async def close(self) -> None:
        self.closed = True
        self._ended.set()


@dataclass
class FakeVolumes:
    """Volumes as dicts of path to bytes; `made` holds each one's size in MiB."""

    made: dict[str, int] = field(default_factory=dict)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    mounted: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)

    async def create(self, volume_id: str, size_mb: int) -> None:
        if "create" in self.failing:
            raise OSError(errno.ENOSPC, "mkfs failed", f"/var/lib/host/volumes/{volume_id}")
        self.made[volume_id] = size_mb
        self.files[volume_id] = {}
        self.mounted.add(volume_id)

    async def remove(self, volume_id: str) -> None:
        self.made.pop(volume_id, None)
        self.files.pop(volume_id, None)
        self.mounted.discard(volume_id)

    async def ensure_mounted(self, volume_id: str) -> None:
        self.mounted.add(volume_id)

    def on_host(self) -> set[str]:
        return set(self.made)

    def usage(self, volume_id: str) -> tuple[int, int]:
        used = sum(len(data) for data in self.files.get(volume_id, {}).values())
        return used, self.made.get(volume_id, 0) << 20

    async def read(self, volume_id: str, path: str) -> AsyncIterator[bytes]:
        data = self.files[volume_id].get(path)
        if data is None:
            raise FileNotFoundError(errno.ENOENT, "No such file", path)

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        return chunks()

    async def write(
        self, volume_id: str, path: str, chunks: AsyncIterable[bytes], mode: int
    ) -> EntryInfo:
        data = b"".join([chunk async for chunk in chunks])
        self.files[volume_id][path] = data
        return EntryInfo(
            name=path.rsplit("/", 1)[-1],
            path=path,
            type="file",
            size=len(data),
            mode=mode,
            mtime=0.0,
            symlink_target=None,
        )

    async def list(self, volume_id: str, path: str) -> builtins.list[EntryInfo]:
        prefix = path.rstrip("/") + "/"
        return [
            EntryInfo(
                name=name[len(prefix) :],
                path=name,
                type="file",
                size=len(data),
                mode=0o644,
                mtime=0.0,
                symlink_target=None,
            )
            for name, data in sorted(self.files[volume_id].items())
            if name.startswith(prefix)
        ]

    async def stat(self, volume_id: str, path: str) -> EntryInfo:
        [entry] = [
            e for e in await self.list(volume_id, path.rsplit("/", 1)[0]) if e["path"] == path
        ] or [None]
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, "No such file", path)
        return entry

    async def mkdir(self, volume_id: str, path: str, parents: bool) -> EntryInfo:
        raise OSError(errno.EPERM, "the in-memory volume keeps files only", path)

    async def delete(self, volume_id: str, path: str, recursive: bool) -> None:
        if self.files[volume_id].pop(path, None) is None:
            raise FileNotFoundError(errno.ENOENT, "No such file", path)


@dataclass
class FakeHost:
    can_checkpoint: bool = True
    networked: bool = True
    name: str = "fake"
    uid_offset: int = 0
    sandboxes: dict[str, RuntimeStatus] = field(default_factory=dict)
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    """Every operation on a sandbox, in order: (operation, sandbox id)."""
    failing: set[str] = field(default_factory=set)
    """Operations that fail as a host's I/O does: an OSError naming a host path, which
    core must log and never show a tenant."""
    addresses: dict[str, str] = field(default_factory=dict)
    policies: dict[str, NetworkPolicy] = field(default_factory=dict)
    on_denied: Callable[[str, str], None] = lambda sandbox_id, name: None
    volumes: FakeVolumes = field(default_factory=FakeVolumes)
    started_with: dict[str, SandboxSpec] = field(default_factory=dict)
    """The spec each sandbox was last started or restarted with."""

    @property
    def backends(self) -> tuple[str, ...]:
        return (self.name,)

    def _do(self, operation: str, sandbox_id: str) -> None:
        self.calls.append((operation, sandbox_id))
        if operation in self.failing:
            raise OSError(errno.EIO, f"{operation} failed", f"/var/lib/host/{sandbox_id}")

    def _set(self, operation: str, sandbox_id: str, status: RuntimeStatus) -> None:
        self._do(operation, sandbox_id)
        if sandbox_id not in self.sandboxes:
            raise BackendError(f"no sandbox {sandbox_id}")
        self.sandboxes[sandbox_id] = status

    async def start_up(self) -> None: ...

    async def close(self) -> None: ...

    async def start(
        self,
        spec: SandboxSpec,
        policy: NetworkPolicy | None = None,
        *,
        snapshot: Path | None = None,
    ) -> FakeSession:
        self._do("start", spec.sandbox_id)
        self.started_with[spec.sandbox_id] = spec
        self.sandboxes[spec.sandbox_id] = RuntimeStatus.RUNNING
        self.addresses[spec.sandbox_id] = f"10.0.0.{len(self.addresses) + 2}"
        self.policies[spec.sandbox_id] = policy or NetworkPolicy()
        return await self.connect(spec.sandbox_id)

    async def restart(self, spec: SandboxSpec, snapshot: Path) -> None:
        self.started_with[spec.sandbox_id] = spec
        self._set("restart", spec.sandbox_id, RuntimeStatus.RUNNING)

    async def connect(self, sandbox_id: str) -> FakeSession:
        self._do("connect", sandbox_id)
        if self.sandboxes.get(sandbox_id) is not RuntimeStatus.RUNNING:
            raise BackendError(f"the agent of {sandbox_id} does not answer")
        session = self.sessions[sandbox_id] = FakeSession(sandbox_id)
        return session

    async def destroy(self, sandbox_id: str, address: str | None = None) -> None:
        self._do("destroy", sandbox_id)
        self.sandboxes.pop(sandbox_id, None)
        self.addresses.pop(sandbox_id, None)
        self.policies.pop(sandbox_id, None)

    async def update(self, sandbox_id: str, resources: Resources, cpus: str | None) -> None:
        self._do("update", sandbox_id)

    def capabilities(self, sandbox_id: str) -> Capabilities:
        problem = None if self.can_checkpoint else "no CRIU on this fake host"
        return Capabilities(self.can_checkpoint, False, True, "none: a test double", problem)

    def backend_of(self, sandbox_id: str) -> str:
        return self.name

    async def freeze(self, sandbox_id: str) -> None:
        self._set("freeze", sandbox_id, RuntimeStatus.PAUSED)

    async def thaw(self, sandbox_id: str) -> None:
        self._set("thaw", sandbox_id, RuntimeStatus.RUNNING)

    async def checkpoint(self, sandbox_id: str) -> None:
        self._set("checkpoint", sandbox_id, RuntimeStatus.CHECKPOINTED)

    async def restore(self, sandbox_id: str) -> None:
        self._set("restore", sandbox_id, RuntimeStatus.RUNNING)

    async def snapshot(self, sandbox_id: str, target: Path, memory: bool) -> int:
        self._do("snapshot", sandbox_id)
        await asyncio.to_thread(_save_disk, target, sandbox_id)
        return 4096

    async def export_changes(self, sandbox_id: str, target: Path) -> None:
        self._do("export_changes", sandbox_id)

    def bytes_used(self, path: Path) -> int:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    async def plug(self, sandbox_id: str) -> None:
        self._do("plug", sandbox_id)

    async def unplug(self, sandbox_id: str) -> None:
        self._do("unplug", sandbox_id)

    async def apply_policy(self, sandbox_id: str, policy: NetworkPolicy) -> None:
        self._do("apply_policy", sandbox_id)
        self.policies[sandbox_id] = policy

    async def adopt_network(self, sandbox_id: str, address: str, policy: NetworkPolicy) -> None:
        self._do("adopt_network", sandbox_id)
        self.addresses[sandbox_id], self.policies[sandbox_id] = address, policy

    async def remove_network_leftovers(self, keep: set[str]) -> None:
        for sandbox_id in set(self.addresses) - keep:
            self._do("remove_network", sandbox_id)
            del self.addresses[sandbox_id]

    def address_of(self, sandbox_id: str) -> str | None:
        return self.addresses.get(sandbox_id)

    def policy_of(self, sandbox_id: str) -> NetworkPolicy | None:
        return self.policies.get(sandbox_id)

    async def status(self, sandbox_id: str) -> RuntimeStatus:
        return self.sandboxes.get(sandbox_id, RuntimeStatus.MISSING)

    async def list(self) -> builtins.list[RuntimeSandbox]:
        return [RuntimeSandbox(i, s) for i, s in self.sandboxes.items()]

    async def traces(self, known: set[str]) -> builtins.list[str]:
        return [f"{i}: a leftover address" for i in sorted(set(self.addresses) - known)]

    def usage(self, sandbox_id: str) -> SandboxUsage:
        if sandbox_id not in self.sandboxes:
            raise FileNotFoundError(sandbox_id)
        return SandboxUsage(10**9, 64 << 20, 512 << 20, 5, 0)

    def oom_kills(self, sandbox_id: str) -> int:
        return 0


def _save_disk(target: Path, sandbox_id: str) -> None:
    target.mkdir(parents=True)
    (target / "disk.img").write_bytes(b"disk of " + sandbox_id.encode())


def template_store(root: Path) -> TemplateStore:
    """A store with a `base` template of empty layers, and its agent layer already made
    (as the server's first start makes it), so nothing needs root."""
    store = TemplateStore(root)
    if (root / "base").exists():  # a second server on the same data
        return store
    layer = store.root / ".layers" / "base-b1" / "root"
    (layer / "usr/bin").mkdir(parents=True)
    python = layer / "usr/bin/python3.11"
    python.write_bytes(b"not really python")
    digest = hashlib.sha256(python.read_bytes()).hexdigest()[:16]
    (store.root / AGENT_LAYER_DIR / digest / "root").mkdir(parents=True)
    store.install(store.staging_dir("base", "b1", None), Template("base", "b1", (layer,)))
    return store
