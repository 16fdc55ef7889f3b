"""gVisor sandboxes: the oci backend's bundle, disk, agent and network plumbing, run by
runsc, whose user-space kernel answers the sandbox's system calls instead of the host's.

Only what runsc does differently lives here:

- `--overlay2=none`: runsc would keep the root filesystem's writes in an overlay of its
  own; Sandlot's overlay on the sandbox's disk image already holds them, and snapshots
  copy that image.
- `--host-uds=create`: the agent's socket, bound inside, must be a real socket on the
  host for the server to reach. runsc cannot save a bound host socket in a checkpoint
  (and a failed save stops the sandbox), so the agent is quiesced before every dump as
  for CRIU, then woken with `runsc kill ID USR1`: its host pid is runsc's, not its own.
- networking: runsc's own network stack takes the interfaces present when it starts,
  but Sandlot plugs a sandbox's veth in after start and after every restore. With
  networking on, gVisor therefore uses the host's stack inside the sandbox's own network
  namespace (`--network=host`), which runsc cannot checkpoint: pauses freeze in memory
  and memory snapshots are refused. With networking off (`network_enabled = false`) its
  own stack with loopback only (`--network=none`), and checkpoints work.
- no OCI seccomp filter (`--oci-seccomp` breaks node's threads in this release): the
  sandbox's system calls reach gVisor's kernel, not the host's, and namespaces made
  inside are gVisor's own; gVisor's filter on itself guards the host.
- no live limits: runsc has no `update` and gVisor sizes its memory at boot, so a
  server on runsc keeps no warm pool.
- runsc leaves two processes per sandbox (the sandbox and its file proxy, the gofer);
  the server, their subreaper, collects both, and the stubs gVisor runs on the host for
  the processes inside, which fall to it when the sandbox's kernel goes.
- a sandbox whose kernel died (OOM-killed by the host, or out of host pids) is still
  "running" to runsc while its zombie is uncollected; it is reported stopped, as runc
  reports a dead init, so the supervisor marks it failed instead of waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sandlot.domain.host_values import BackendError, Capabilities
from sandlot.domain.resources import Resources
from sandlot.runtime.bundle import USERNS_SIZE
from sandlot.runtime.cgroups import inherit_cpusets
from sandlot.runtime.oci import OciRuntime, _fresh_dir
from sandlot.runtime.reaping import is_zombie, reap, reap_orphans

DEFAULT_PLATFORM = "systrap"
"""Needs no /dev/kvm and is fast on current kernels; ptrace is the slow fallback."""

NO_CHECKPOINT_WITH_NETWORK = (
    "runsc cannot checkpoint a sandbox on the host's network stack, which networked "
    "gVisor sandboxes use here; pauses freeze in memory (set network_enabled = false "
    "for checkpoints and memory snapshots)"
)


@functools.cache
def runsc_version(binary: str = "runsc") -> str | None:
    """`runsc --version`'s own words ("0.0~20240729.0"), or None when it is missing."""
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (out.splitlines() or [""])[0]
    return first.removeprefix("runsc version ").strip() or None


def runsc_capabilities(network: bool, platform: str) -> Capabilities:
    return Capabilities(
        checkpoint=not network,
        hardware_isolation=False,
        live_limits=False,
        isolation=f"gVisor user-space kernel ({platform} platform) in namespaces",
        checkpoint_problem=NO_CHECKPOINT_WITH_NETWORK if network else None,
    )


class RunscRuntime(OciRuntime):
    own_user_namespace = False
    """gVisor's kernel keeps inotify, message queues and the rest in the sandbox."""
    agent_is_init = False
    """Every socket inside is the sentry's: the host cannot tell the agent's apart."""
    name = "runsc"
    checkpoint_marker = "checkpoint.img"

    def __init__(
        self,
        data_dir: Path,
        binary: str = "runsc",
        *,
        network: bool = True,
        platform: str = DEFAULT_PLATFORM,
    ) -> None:
        super().__init__(data_dir, binary=binary)
        self.platform = platform
        self.network_mode = "host" if network else "none"

    @property
    def can_checkpoint(self) -> bool:
        return self.network_mode == "none"

    @property
    def capabilities(self) -> Capabilities:
        return runsc_capabilities(self.network_mode == "host", self.platform)

    def _runc_argv(self) -> list[str]:
        return [
            self.binary,
            "--root",
            str(self.state_root),
            f"--platform={self.platform}",
            "--overlay2=none",
            "--host-uds=create",
            f"--network={self.network_mode}",
        ]

    async def _start(self, bundle: Path, sandbox_id: str) -> None:
        inherit_cpusets(self.cgroup_path(sandbox_id))
        await super()._start(bundle, sandbox_id)

    async def restore(self, sandbox_id: str, images: Path | None = None) -> None:
        images = images or self.checkpoint_dir(sandbox_id)
        bundle = self.bundle_dir(sandbox_id)
        inherit_cpusets(self.cgroup_path(sandbox_id))
        if not await self._launch(sandbox_id, "restore", "--image-path", str(images)):
            log = (bundle / "runc.log").read_text(errors="replace")[-2000:]
            raise BackendError(f"restoring {sandbox_id} failed", detail=log)
        self._wake_agent(sandbox_id)
        if images == self.checkpoint_dir(sandbox_id):
            await asyncio.to_thread(shutil.rmtree, images, True)

    async def checkpoint(self, sandbox_id: str) -> None:
        async with self._reaping(sandbox_id):
            await super().checkpoint(sandbox_id)

    async def _dump(self, sandbox_id: str, images: Path, leave_running: bool) -> None:
        if not self.can_checkpoint:
            raise BackendError(f"cannot checkpoint {sandbox_id}: {NO_CHECKPOINT_WITH_NETWORK}")
        _fresh_dir(images)
        extra = ("--leave-running",) if leave_running else ()
        try:
            await self._runc("checkpoint", "--image-path", str(images), *extra, sandbox_id)
        except BackendError:
            shutil.rmtree(images, ignore_errors=True)
            self._wake_agent(sandbox_id)
            raise

    def _wake_agent(self, sandbox_id: str) -> None:
        """Blocks for the ~20 ms `runsc kill` takes; only pauses and snapshots pay it."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [*self._runc_argv(), "kill", sandbox_id, "USR1"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
                check=False,
            )

    async def update(self, sandbox_id: str, resources: Resources, cpus: str | None) -> None:
        raise BackendError(
            f"runsc cannot change the limits of running sandbox {sandbox_id}: gVisor sizes "
            "its memory at start"
        )

    async def destroy(self, sandbox_id: str) -> None:
        async with self._reaping(sandbox_id):
            await super().destroy(sandbox_id)

    async def _state(self, sandbox_id: str) -> dict[str, Any]:
        state = await super()._state(sandbox_id)
        pid = int(state.get("pid") or 0)
        if state.get("status") in ("running", "paused") and pid > 0 and is_zombie(pid):
            state["status"] = "stopped"
        return state

    @contextlib.asynccontextmanager
    async def _reaping(self, sandbox_id: str) -> AsyncIterator[None]:
        """Collect the sandbox's processes while runsc stops it.

        runsc waits for a sandbox it stops to be gone, but the server, their subreaper,
        holds them as zombies until it reaps them: without this, `runsc delete` and
        `runsc checkpoint` wait out their own time limit. If the work fails the sandbox
        runs on and is left alone.
        """
        # From runsc's state, never from init.pid, which outlives the process it names.
        found = (await self._init_pid(sandbox_id), self._gofer_pid(sandbox_id))
        pids = [pid for pid in found if pid is not None]
        reapers = [asyncio.create_task(reap(pid)) for pid in pids]
        try:
            yield
        except BaseException:
            for reaper in reapers:
                reaper.cancel()
            raise
        for pid in pids:
            if _is_gofer(pid):  # one that outlives its sandbox
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await asyncio.gather(*reapers, return_exceptions=True)
        # The stubs of every process it ran, killed with their sentry.
        sandbox_uids = range(self.uid_offset, self.uid_offset + USERNS_SIZE)
        await asyncio.to_thread(reap_orphans, sandbox_uids)

    def _gofer_pid(self, sandbox_id: str) -> int | None:
        """The pid of the sandbox's file proxy, from runsc's state file (gone after
        `runsc delete`, so read it before)."""
        state = self.state_root / f"{sandbox_id}_sandbox:{sandbox_id}.state"
        try:
            pid = json.loads(state.read_text()).get("goferPid")
        except (OSError, ValueError):
            return None
        return int(pid) if pid else None


def _is_gofer(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"runsc-gofer")
    except OSError:
        return False
