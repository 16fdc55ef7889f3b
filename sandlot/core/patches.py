"""Snapshot patches: a bash script run against a snapshot's filesystem, in a throw-away
sandbox, whose result becomes the snapshot's next revision.

The snapshot's original state is kept (`original/`) the first time it is patched, so
deleting any patch rebuilds the current revision by replaying the remaining scripts
on the original, in order. A patched snapshot holds no processes: a memory image taken
before the files changed under it would not match them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandlot.core.events import Event
from sandlot.core.host import Host
from sandlot.core.incidents import public_reason
from sandlot.core.keyed_locks import KeyedLocks
from sandlot.core.models import CreateSandbox
from sandlot.core.sandboxes import Sandboxes
from sandlot.core.snapshot_store import SnapshotStore, SnapshotView
from sandlot.core.work import Work
from sandlot.domain import ids
from sandlot.domain.host_values import BackendError
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.errors import (
    InvalidConfigError,
    ResourceExhaustedError,
    SandlotError,
    SnapshotNotFoundError,
)
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store import snapshots as snapshot_rows
from sandlot.store.tables import SnapshotPatchRow, SnapshotRow

PATCH_TIMEOUT = 1800.0
"""Seconds a patch script may run (package installs are slow)."""
OUTPUT_KEPT = 64 * 1024
"""Bytes of a script's output kept with the patch: its tail, where errors are."""


@dataclass(frozen=True)
class PatchView:
    id: str
    snapshot_id: str
    revision: int
    script: str
    description: str | None
    status: str
    exit_code: int | None
    output: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: SnapshotPatchRow) -> PatchView:
        return cls(
            id=row.id,
            snapshot_id=row.snapshot_id,
            revision=row.revision,
            script=row.script,
            description=row.description,
            status=row.status,
            exit_code=row.exit_code,
            output=row.output,
            created_at=row.created_at,
        )


@dataclass(eq=False)
class Patcher:
    store: SnapshotStore
    host: Host
    sandboxes: Sandboxes
    work: Work
    _locks: KeyedLocks = field(default_factory=KeyedLocks, init=False)
    """One per snapshot being patched."""

    async def patch(
        self,
        org_id: str,
        ref: str,
        script: str,
        description: str | None = None,
        sandbox_id: str | None = None,
    ) -> PatchView:
        """Run `script`; on exit status 0 it becomes the snapshot's next revision, else
        the snapshot is untouched and the patch is recorded as failed with its output.
        `ref` is a snapshot id, or a name among `sandbox_id`'s snapshots."""
        snap = self.store.get_snapshot(org_id, ref, sandbox_id)
        async with self._locks.hold(snap.id):
            root = self.store.snapshot_dir(snap.id)
            exit_code, output, staged = await self._run(org_id, snap, root, script)
            ok = exit_code == 0
            patch_id = ids.new_patch_id()
            with self.store.db.session() as s:
                row = s.get(SnapshotRow, snap.id)
                if row is None:
                    raise SnapshotNotFoundError(f"snapshot {snap.id} was deleted meanwhile")
                revision = row.revision + 1 if ok else row.revision
                if ok:
                    await asyncio.to_thread(_promote, root, staged)
                    row.revision, row.has_memory = revision, False
                    row.size_bytes = self.host.bytes_used(root)
                patch = SnapshotPatchRow(
                    id=patch_id,
                    snapshot_id=snap.id,
                    revision=revision,
                    script=script,
                    description=description,
                    status="applied" if ok else "failed",
                    exit_code=exit_code,
                    output=output,
                    created_at=datetime.now(UTC),
                )
                s.add(patch)
                s.flush()
                view = PatchView.of(patch)
            shutil.rmtree(staged, ignore_errors=True)
        data = {"snapshotId": snap.id, "patchId": patch_id, "status": view.status}
        self.store.events.publish(Event("snapshot.patched", snap.sandbox_id, org_id, data))
        return view

    def list_patches(self, org_id: str, ref: str, sandbox_id: str | None = None) -> list[PatchView]:
        snap = self.store.get_snapshot(org_id, ref, sandbox_id)
        with self.store.db.session() as s:
            return [PatchView.of(r) for r in snapshot_rows.patches(s, snap.id)]

    async def delete_patch(
        self, org_id: str, ref: str, patch_id: str, sandbox_id: str | None = None
    ) -> None:
        """Forget a patch; if it was applied, rebuild the snapshot from its original
        state with the applied patches that remain."""
        snap = self.store.get_snapshot(org_id, ref, sandbox_id)
        async with self._locks.hold(snap.id):
            with self.store.db.session() as s:
                patches = list(snapshot_rows.patches(s, snap.id))
                target = next((p for p in patches if p.id == patch_id), None)
                if target is None:
                    raise SnapshotNotFoundError(
                        f"snapshot {snap.id} has no patch {patch_id}",
                        details={"patchId": patch_id},
                    )
                remaining = [
                    p.script for p in patches if p.status == "applied" and p.id != patch_id
                ]
                was_applied = target.status == "applied"
                s.delete(target)
            if was_applied:
                await self._replay(org_id, snap, remaining)

    async def _replay(self, org_id: str, snap: SnapshotView, scripts: list[str]) -> None:
        snapshot_id = snap.id
        root = self.store.snapshot_dir(snapshot_id)
        original = root / "original"
        await asyncio.to_thread(_restore_original, root, original)
        revision = 1
        for script in scripts:
            exit_code, output, staged = await self._run(org_id, snap, root, script)
            if exit_code != 0:
                shutil.rmtree(staged, ignore_errors=True)
                raise InvalidConfigError(
                    f"replaying a remaining patch of {snapshot_id} failed with exit code "
                    f"{exit_code}; the snapshot is left at revision {revision}: {output[-500:]}"
                )
            await asyncio.to_thread(_promote, root, staged)
            shutil.rmtree(staged, ignore_errors=True)
            revision += 1
        with self.store.db.session() as s:
            row = s.get(SnapshotRow, snapshot_id)
            if row is not None:
                row.revision = revision
                row.has_memory = (root / "checkpoint").is_dir()
                row.size_bytes = self.host.bytes_used(root)

    def _policy_of(self, snap: SnapshotView) -> NetworkPolicy:
        """The network policy of the sandbox the snapshot was taken of."""
        with self.store.db.session() as s:
            row = sandbox_rows.get(s, snap.sandbox_id)
            return _stored_policy(row.network if row is not None else None)

    async def _run(
        self, org_id: str, snap: SnapshotView, root: Path, script: str
    ) -> tuple[int, str, Path]:
        """Run `script` in a throw-away sandbox started from the snapshot's disk alone;
        returns its exit code, the tail of its output, and its disk saved to a
        staging directory."""
        template, _ = self.store.source_of(org_id, snap.id)
        source = root / f".source-{ids.new_patch_id()}"
        source.mkdir(mode=0o700)
        os.link(root / "disk.img", source / "disk.img")  # the disk only: no processes
        staged = root / f".staged-{ids.new_patch_id()}"
        # A sandbox like any other of the org's: admitted, counted in its quota, and
        # under the network policy of the sandbox the snapshot was taken of.
        request = CreateSandbox(
            template=template.name,
            resources=snap.resources,
            metadata={"sandlot.patch": snap.id},
            idle_timeout=0,
            network=self._policy_of(snap),
        )
        try:
            view = await self.sandboxes.create(
                org_id, request, from_template=template, disk_from=source
            )
            try:
                session = await self.work.session(org_id, view.id)
                result = await session.exec(
                    ["/bin/bash", "-c", script], timeout=PATCH_TIMEOUT, max_output=OUTPUT_KEPT
                )
                await self.host.snapshot(view.id, staged, memory=False)
            finally:
                with contextlib.suppress(SandlotError):
                    await self.sandboxes.destroy(org_id, view.id)
        except ResourceExhaustedError:
            shutil.rmtree(staged, ignore_errors=True)
            raise  # the org's quota or the host's room: as for any create
        except (BackendError, OSError, SandlotError) as exc:
            shutil.rmtree(staged, ignore_errors=True)
            why = public_reason(exc, f"patching {snap.id}")
            raise InvalidConfigError(f"could not run the patch: {why}") from exc
        finally:
            shutil.rmtree(source, ignore_errors=True)
        output = (result.stdout + result.stderr).decode(errors="replace")[-OUTPUT_KEPT:]
        code = result.exit_code if result.exit_code is not None else 128
        return code, output, staged


def _stored_policy(raw: dict[str, Any] | None) -> NetworkPolicy:
    return NetworkPolicy.parse(raw) if raw else NetworkPolicy()


def _promote(root: Path, staged: Path) -> None:
    """Make the staged disk the snapshot's current one, keeping the original state the
    first time."""
    original = root / "original"
    if not original.exists():
        original.mkdir(mode=0o700)
        os.replace(root / "disk.img", original / "disk.img")
        if (root / "checkpoint").is_dir():
            os.replace(root / "checkpoint", original / "checkpoint")
    shutil.rmtree(root / "checkpoint", ignore_errors=True)
    os.replace(staged / "disk.img", root / "disk.img")


def _restore_original(root: Path, original: Path) -> None:
    if not original.is_dir():
        return
    shutil.rmtree(root / "checkpoint", ignore_errors=True)
    os.replace(original / "disk.img", root / "disk.img")
    if (original / "checkpoint").is_dir():
        os.replace(original / "checkpoint", root / "checkpoint")
    shutil.rmtree(original)
