"""Pause, resume, lifetimes, snapshots, rollback and branches: the calls, and the
`sbx.snapshots` namespace in its sync and async forms."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import quote

from pydantic import TypeAdapter

from sandlot.sdk._http import AsyncTransport, Call, SyncTransport, sandbox_path
from sandlot.sdk._models import Resources, SandboxInfo, _Model


class SnapshotInfo(_Model):
    """A saved state of a sandbox: its disk and, with `has_memory`, its processes."""

    id: str
    sandbox_id: str
    name: str
    description: str | None = None
    template: str
    resources: Resources
    has_memory: bool
    size_bytes: int
    revision: int
    created_at: datetime


class PatchInfo(_Model):
    """A script run against a snapshot's files; `status` "applied" made `revision`."""

    id: str
    snapshot_id: str
    revision: int
    script: str
    description: str | None = None
    status: str
    exit_code: int | None = None
    output: str | None = None
    created_at: datetime


_SNAPSHOTS = TypeAdapter(list[SnapshotInfo])
_PATCHES = TypeAdapter(list[PatchInfo])


def pause_call(sandbox_id: str) -> Call[SandboxInfo]:
    return Call("POST", sandbox_path(sandbox_id, "/pause"), parse=SandboxInfo.model_validate)


def resume_call(sandbox_id: str) -> Call[SandboxInfo]:
    return Call("POST", sandbox_path(sandbox_id, "/resume"), parse=SandboxInfo.model_validate)


def timeout_call(sandbox_id: str, seconds: int) -> Call[SandboxInfo]:
    path = sandbox_path(sandbox_id, "/timeout")
    return Call("POST", path, parse=SandboxInfo.model_validate, json={"timeout": seconds})


def rollback_call(sandbox_id: str, snapshot: str) -> Call[SandboxInfo]:
    path = sandbox_path(sandbox_id, "/rollback")
    return Call("POST", path, parse=SandboxInfo.model_validate, json={"snapshot": snapshot})


def branch_call(
    sandbox_id: str,
    snapshot: str,
    name: str | None,
    metadata: Mapping[str, str] | None,
    env: Mapping[str, str] | None,
    timeout: int | None,
) -> Call[SandboxInfo]:
    body = {
        "snapshot": snapshot,
        "name": name,
        "metadata": dict(metadata or {}),
        "env": dict(env or {}),
        "timeout": timeout,
    }
    path = sandbox_path(sandbox_id, "/branch")
    return Call("POST", path, parse=SandboxInfo.model_validate, json=body)


def from_snapshot_call(
    snapshot_id: str,
    metadata: Mapping[str, str] | None,
    env: Mapping[str, str] | None,
    timeout: int | None,
) -> Call[SandboxInfo]:
    body = {
        "snapshot": snapshot_id,
        "metadata": dict(metadata or {}),
        "env": dict(env or {}),
        "timeout": timeout,
    }
    return Call("POST", "/v1/sandboxes", parse=SandboxInfo.model_validate, json=body)


def _create_snapshot_call(
    sandbox_id: str, name: str | None, description: str | None, memory: bool | None
) -> Call[SnapshotInfo]:
    body = {"name": name, "description": description, "memory": memory}
    path = sandbox_path(sandbox_id, "/snapshots")
    # Saving memory takes as long as the dump: no read timeout shorter than that.
    return Call("POST", path, parse=SnapshotInfo.model_validate, json=body, read_timeout=None)


def _list_snapshots_call(sandbox_id: str) -> Call[list[SnapshotInfo]]:
    path = sandbox_path(sandbox_id, "/snapshots")
    return Call("GET", path, parse=_SNAPSHOTS.validate_python)


def _delete_snapshot_call(sandbox_id: str, ref: str) -> Call[SnapshotInfo]:
    path = sandbox_path(sandbox_id, f"/snapshots/{quote(ref, safe='')}")
    return Call("DELETE", path, parse=SnapshotInfo.model_validate)


def _patches_path(sandbox_id: str, ref: str, suffix: str = "") -> str:
    return sandbox_path(sandbox_id, f"/snapshots/{quote(ref, safe='')}/patches{suffix}")


def _patch_call(sandbox_id: str, ref: str, script: str, description: str | None) -> Call[PatchInfo]:
    body = {"script": script, "description": description}
    path = _patches_path(sandbox_id, ref)
    # A patch runs a script (apt-get install, say): wait for it however long it takes.
    return Call("POST", path, parse=PatchInfo.model_validate, json=body, read_timeout=None)


def _list_patches_call(sandbox_id: str, ref: str) -> Call[list[PatchInfo]]:
    return Call("GET", _patches_path(sandbox_id, ref), parse=_PATCHES.validate_python)


def _delete_patch_call(sandbox_id: str, ref: str, patch_id: str) -> Call[list[PatchInfo]]:
    path = _patches_path(sandbox_id, ref, f"/{quote(patch_id, safe='')}")
    return Call("DELETE", path, parse=_PATCHES.validate_python, read_timeout=None)


class Snapshots:
    """`sbx.snapshots`: save this sandbox's state, list and delete saved states."""

    def __init__(self, sandbox_id: str, transport: SyncTransport) -> None:
        self._id = sandbox_id
        self._transport = transport

    def create(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        memory: bool | None = None,
    ) -> SnapshotInfo:
        """Save the disk and (by default wherever the server can, or with `memory`)
        the processes; the sandbox keeps running."""
        return self._transport.send(_create_snapshot_call(self._id, name, description, memory))

    def list(self) -> builtins.list[SnapshotInfo]:
        return self._transport.send(_list_snapshots_call(self._id))

    def delete(self, snapshot: str) -> SnapshotInfo:
        """Delete a snapshot by id or name."""
        return self._transport.send(_delete_snapshot_call(self._id, snapshot))

    def patch(self, snapshot: str, script: str, *, description: str | None = None) -> PatchInfo:
        """Run a bash `script` against the snapshot's files in a throw-away sandbox; if it
        exits 0 the result becomes the snapshot's next revision (without processes)."""
        return self._transport.send(_patch_call(self._id, snapshot, script, description))

    def list_patches(self, snapshot: str) -> builtins.list[PatchInfo]:
        return self._transport.send(_list_patches_call(self._id, snapshot))

    def delete_patch(self, snapshot: str, patch_id: str) -> builtins.list[PatchInfo]:
        """Remove a patch and rebuild the snapshot from the ones that remain."""
        return self._transport.send(_delete_patch_call(self._id, snapshot, patch_id))


class AsyncSnapshots:
    """`sbx.snapshots` of an `AsyncSandbox`."""

    def __init__(self, sandbox_id: str, transport: AsyncTransport) -> None:
        self._id = sandbox_id
        self._transport = transport

    async def create(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        memory: bool | None = None,
    ) -> SnapshotInfo:
        call = _create_snapshot_call(self._id, name, description, memory)
        return await self._transport.send(call)

    async def list(self) -> builtins.list[SnapshotInfo]:
        return await self._transport.send(_list_snapshots_call(self._id))

    async def delete(self, snapshot: str) -> SnapshotInfo:
        return await self._transport.send(_delete_snapshot_call(self._id, snapshot))

    async def patch(
        self, snapshot: str, script: str, *, description: str | None = None
    ) -> PatchInfo:
        return await self._transport.send(_patch_call(self._id, snapshot, script, description))

    async def list_patches(self, snapshot: str) -> builtins.list[PatchInfo]:
        return await self._transport.send(_list_patches_call(self._id, snapshot))

    async def delete_patch(self, snapshot: str, patch_id: str) -> builtins.list[PatchInfo]:
        return await self._transport.send(_delete_patch_call(self._id, snapshot, patch_id))
