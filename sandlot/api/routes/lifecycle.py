"""Pause, resume, lifetimes, snapshots, rollback and branches of a sandbox."""

from __future__ import annotations

from fastapi import APIRouter

from sandlot.api.deps import Reader, Service, Writer
from sandlot.api.lifecycle_schemas import (
    BranchIn,
    PatchIn,
    PatchOut,
    RollbackIn,
    SnapshotIn,
    SnapshotOut,
    TimeoutIn,
)
from sandlot.api.routes.sandboxes import SandboxId
from sandlot.api.schemas import Envelope, SandboxOut

router = APIRouter(tags=["lifecycle"])


@router.post("/v1/sandboxes/{sandbox_id}/pause")
async def pause(sandbox_id: SandboxId, who: Writer, svc: Service) -> Envelope[SandboxOut]:
    """Checkpoint the sandbox to disk (or freeze it where CRIU is missing)."""
    return Envelope(data=SandboxOut.of(await svc.lifecycle.pause(who.org_id, sandbox_id)))


@router.post("/v1/sandboxes/{sandbox_id}/resume")
async def resume(sandbox_id: SandboxId, who: Writer, svc: Service) -> Envelope[SandboxOut]:
    return Envelope(data=SandboxOut.of(await svc.lifecycle.resume(who.org_id, sandbox_id)))


@router.post("/v1/sandboxes/{sandbox_id}/timeout")
async def set_timeout(
    sandbox_id: SandboxId, body: TimeoutIn, who: Writer, svc: Service
) -> Envelope[SandboxOut]:
    """At expiry the sandbox is terminated with reason "timeout"."""
    view = await svc.lifecycle.set_timeout(who.org_id, sandbox_id, body.timeout)
    return Envelope(data=SandboxOut.of(view))


@router.post("/v1/sandboxes/{sandbox_id}/snapshots", status_code=201)
async def create_snapshot(
    sandbox_id: SandboxId, body: SnapshotIn, who: Writer, svc: Service
) -> Envelope[SnapshotOut]:
    snap = await svc.snapshots.snapshot(
        who.org_id, sandbox_id, body.name, memory=body.memory, description=body.description
    )
    return Envelope(data=SnapshotOut.of(snap))


@router.get("/v1/sandboxes/{sandbox_id}/snapshots")
def list_snapshots(sandbox_id: SandboxId, who: Reader, svc: Service) -> Envelope[list[SnapshotOut]]:
    snaps = svc.snapshot_store.list_snapshots(who.org_id, sandbox_id)
    return Envelope(data=[SnapshotOut.of(s) for s in snaps])


@router.delete("/v1/sandboxes/{sandbox_id}/snapshots/{ref}")
def delete_sandbox_snapshot(
    sandbox_id: SandboxId, ref: str, who: Writer, svc: Service
) -> Envelope[SnapshotOut]:
    snap = svc.snapshot_store.get_snapshot(who.org_id, ref, sandbox_id)
    svc.snapshot_store.delete_snapshot(who.org_id, snap.id)
    return Envelope(data=SnapshotOut.of(snap))


@router.post("/v1/sandboxes/{sandbox_id}/snapshots/{ref}/patches", status_code=201)
async def patch_snapshot(
    sandbox_id: SandboxId, ref: str, body: PatchIn, who: Writer, svc: Service
) -> Envelope[PatchOut]:
    """Run a bash script against the snapshot's files in a throw-away sandbox; on
    success the result becomes the snapshot's next revision."""
    patch = await svc.patches.patch(
        who.org_id, ref, body.script, body.description, sandbox_id=sandbox_id
    )
    return Envelope(data=PatchOut.of(patch))


@router.get("/v1/sandboxes/{sandbox_id}/snapshots/{ref}/patches")
def list_patches(
    sandbox_id: SandboxId, ref: str, who: Reader, svc: Service
) -> Envelope[list[PatchOut]]:
    patches = svc.patches.list_patches(who.org_id, ref, sandbox_id)
    return Envelope(data=[PatchOut.of(p) for p in patches])


@router.delete("/v1/sandboxes/{sandbox_id}/snapshots/{ref}/patches/{patch_id}")
async def delete_patch(
    sandbox_id: SandboxId, ref: str, patch_id: str, who: Writer, svc: Service
) -> Envelope[list[PatchOut]]:
    """Remove a patch; the snapshot is rebuilt with the patches that remain. Answers
    with those."""
    patches = svc.patches
    await patches.delete_patch(who.org_id, ref, patch_id, sandbox_id)
    remaining = patches.list_patches(who.org_id, ref, sandbox_id)
    return Envelope(data=[PatchOut.of(p) for p in remaining])


@router.get("/v1/snapshots")
def list_org_snapshots(who: Reader, svc: Service) -> Envelope[list[SnapshotOut]]:
    return Envelope(data=[SnapshotOut.of(s) for s in svc.snapshot_store.list_snapshots(who.org_id)])


@router.get("/v1/snapshots/{snapshot_id}")
def get_snapshot(snapshot_id: str, who: Reader, svc: Service) -> Envelope[SnapshotOut]:
    return Envelope(data=SnapshotOut.of(svc.snapshot_store.get_snapshot(who.org_id, snapshot_id)))


@router.delete("/v1/snapshots/{snapshot_id}")
def delete_snapshot(snapshot_id: str, who: Writer, svc: Service) -> Envelope[SnapshotOut]:
    snap = svc.snapshot_store.get_snapshot(who.org_id, snapshot_id)
    svc.snapshot_store.delete_snapshot(who.org_id, snap.id)
    return Envelope(data=SnapshotOut.of(snap))


@router.post("/v1/sandboxes/{sandbox_id}/rollback")
async def rollback(
    sandbox_id: SandboxId, body: RollbackIn, who: Writer, svc: Service
) -> Envelope[SandboxOut]:
    """In place: same id, disk (and processes, if the snapshot holds them) as then."""
    view = await svc.snapshots.rollback(who.org_id, sandbox_id, body.snapshot)
    return Envelope(data=SandboxOut.of(view))


@router.post("/v1/sandboxes/{sandbox_id}/branch", status_code=201)
async def branch(
    sandbox_id: SandboxId, body: BranchIn, who: Writer, svc: Service
) -> Envelope[SandboxOut]:
    """A new sandbox from one of this sandbox's snapshots; this one runs on untouched."""
    view = await svc.snapshots.branch(
        who.org_id,
        body.snapshot,
        sandbox_id=sandbox_id,
        metadata=body.full_metadata(),
        env=body.env,
        timeout=body.timeout,
        idle_timeout=body.idle_timeout,
    )
    return Envelope(data=SandboxOut.of(view))
