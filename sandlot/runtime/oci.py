"""Container sandboxes under an OCI runtime (runc).

runc rather than crun: Debian 12's crun refuses hybrid cgroup hosts unless controllers
are moved by hand and cannot checkpoint, while runc works as installed and checkpoints
through CRIU. The exec hot path never touches the OCI runtime (the agent serves it), so
crun's faster `exec` buys nothing here.

Layout per sandbox under DATA_DIR/sandboxes/ID: `upper/` and `work/` (the overlay's
writable layer), `rootfs/` (the overlay mount), `run/` (bind-mounted at /.sandlot/run,
holds the agent socket), `config.json`, `runc.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path

import sandlot.agent
from sandlot.runtime.base import BackendError, RuntimeSandbox, RuntimeStatus
from sandlot.runtime.bundle import USERNS_HOST_BASE, cgroups_path, oci_config
from sandlot.runtime.cgroups import read_usage, remove_cgroup
from sandlot.runtime.mounts import mount_overlay, mounts_under, unmount
from sandlot.runtime.spec import SandboxSpec, SandboxUsage

AGENT_DIR = Path(sandlot.agent.__file__).parent


class OciRuntime:
    name = "oci"
    uid_offset = USERNS_HOST_BASE

    def __init__(self, data_dir: Path, binary: str = "runc") -> None:
        self.binary = binary
        self.state_root = data_dir / "runtime" / binary
        self.sandboxes_root = data_dir / "sandboxes"
        self.state_root.mkdir(parents=True, exist_ok=True)
        self.sandboxes_root.mkdir(parents=True, exist_ok=True)

    def bundle_dir(self, sandbox_id: str) -> Path:
        return self.sandboxes_root / sandbox_id

    def agent_endpoint(self, sandbox_id: str) -> Path:
        return self.bundle_dir(sandbox_id) / "run" / "agent.sock"

    async def _runc(self, *args: str, check: bool = True) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            "--root",
            str(self.state_root),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if check and proc.returncode != 0:
            raise BackendError(f"{self.binary} {args[0]} failed: {err.decode().strip()}")
        return out.decode()

    async def create(self, spec: SandboxSpec) -> None:
        bundle = self.bundle_dir(spec.sandbox_id)
        try:
            self._prepare_bundle(bundle, spec)
            await self._start(bundle, spec.sandbox_id)
        except BaseException:
            await self.destroy(spec.sandbox_id)
            raise

    def _prepare_bundle(self, bundle: Path, spec: SandboxSpec) -> None:
        bundle.mkdir(parents=True)
        for name in ("upper", "work", "rootfs", "run"):
            (bundle / name).mkdir()
        # Root inside owns its writable layer and the agent's socket directory.
        for name in ("upper", "run"):
            os.chown(bundle / name, self.uid_offset, self.uid_offset)
        mount_overlay(spec.rootfs, bundle / "upper", bundle / "work", bundle / "rootfs")
        config = oci_config(spec, agent_dir=AGENT_DIR, run_dir=bundle / "run")
        (bundle / "config.json").write_text(json.dumps(config))

    async def _start(self, bundle: Path, sandbox_id: str) -> None:
        # The container's init inherits runc's stdio: hand it /dev/null, never a pipe we
        # would wait on, and nothing on the host it could keep open.
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            "--root",
            str(self.state_root),
            "--log",
            str(bundle / "runc.log"),
            "run",
            "--detach",
            "--bundle",
            str(bundle),
            sandbox_id,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        if await proc.wait() != 0:
            log = (bundle / "runc.log").read_text(errors="replace")[-2000:]
            raise BackendError(f"{self.binary} run failed for {sandbox_id}: {log}")

    async def destroy(self, sandbox_id: str) -> None:
        await self._runc("delete", "--force", sandbox_id, check=False)
        bundle = self.bundle_dir(sandbox_id)
        for point in mounts_under(bundle):
            unmount(point)
        # A cgroup still draining refuses removal; the next reconciliation retries.
        with contextlib.suppress(OSError):
            remove_cgroup(cgroups_path(sandbox_id))
        shutil.rmtree(bundle, ignore_errors=True)

    async def status(self, sandbox_id: str) -> RuntimeStatus:
        out = await self._runc("state", sandbox_id, check=False)
        if not out.strip():
            return RuntimeStatus.MISSING
        return _status_of(json.loads(out).get("status", ""))

    async def list(self) -> list[RuntimeSandbox]:
        listed = json.loads(await self._runc("list", "--format", "json") or "null") or []
        found = {c["id"]: _status_of(c["status"]) for c in listed}
        for leftover in self.sandboxes_root.iterdir():
            found.setdefault(leftover.name, RuntimeStatus.MISSING)
        return [RuntimeSandbox(sid, status) for sid, status in sorted(found.items())]

    def usage(self, sandbox_id: str) -> SandboxUsage:
        return read_usage(cgroups_path(sandbox_id))


def _status_of(runc_status: str) -> RuntimeStatus:
    return {
        "running": RuntimeStatus.RUNNING,
        "paused": RuntimeStatus.PAUSED,
        "created": RuntimeStatus.STOPPED,
        "stopped": RuntimeStatus.STOPPED,
    }.get(runc_status, RuntimeStatus.MISSING)
