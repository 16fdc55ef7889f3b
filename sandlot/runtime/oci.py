"""Container sandboxes under an OCI runtime (runc).

runc rather than crun: Debian 12's crun refuses hybrid cgroup hosts unless controllers
are moved by hand and cannot checkpoint, while runc works as installed and checkpoints
through CRIU. The exec hot path never touches the OCI runtime (the agent serves it), so
crun's faster `exec` buys nothing here.

Two places per sandbox. Its disk, `DATA_DIR/sandboxes/ID/{upper,work}` (the overlay's
writable layer), persists. Everything ephemeral lives under `/run/sandlot/KEY/` (KEY
names the data directory, so several servers can share a host): the runc state, a copy
of the agent with its bytecode, and per sandbox `ID/rootfs` (the overlay mount),
`ID/host` (a 1 MiB tmpfs of the sandbox's own: `run/`, bind-mounted at /.sandlot/run,
holds the agent socket, and `etc/` the hostname, hosts and resolv.conf bound over the
template's; whatever root inside writes through those binds fills that tmpfs, never the
host's disk or memory beyond it), `ID/config.json` and `ID/runc.log`. The split is
forced by the user namespace: runc resolves the rootfs and bind-mount sources as the
sandbox's root, which may not traverse a private data directory (pytest's are mode
0700), while every directory up to /run/sandlot/KEY/ID is 0711.
"""

from __future__ import annotations

import asyncio
import builtins
import compileall
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import sandlot.agent
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
from sandlot.runtime.bundle import (
    USERNS_HOST_BASE,
    USERNS_SIZE,
    cgroup_resources,
    identity_files,
    oci_config,
)
from sandlot.runtime.cgroups import (
    cgroup_dirs,
    kill_cgroup,
    read_oom_kills,
    read_usage,
    remove_cgroup,
)
from sandlot.runtime.criu import CriuCheck, find_criu
from sandlot.runtime.disks import bytes_used, copy_disk, create_disk, disk_usage, mount_disk
from sandlot.runtime.mounts import mount_overlay, mount_tmpfs, mounts_under, syncfs, unmount
from sandlot.runtime.reaping import become_subreaper, is_zombie, reap
from sandlot.runtime.spec import host_cpus
from sandlot.runtime.userns import (
    NS_FILE,
    NamespaceOwners,
    has_sys_resource,
    make_user_namespace,
    owner_of,
)

log = logging.getLogger(__name__)

AGENT_DIR = Path(sandlot.agent.__file__).parent
RUN_BASE = Path("/run/sandlot")
HOST_SHARED_KB = 1024
HOST_SHARED_INODES = 64
"""The tmpfs behind a sandbox's bind mounts: its socket and three small /etc files."""


def run_root_for(data_dir: Path) -> Path:
    """The ephemeral directory of the server that keeps its state in `data_dir`."""
    key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return RUN_BASE / key


def state_root_for(data_dir: Path, binary: str = "runc") -> Path:
    return run_root_for(data_dir) / binary


def oci_capabilities(criu: CriuCheck) -> Capabilities:
    return Capabilities(
        checkpoint=criu.usable,
        hardware_isolation=False,
        live_limits=True,
        isolation="Linux namespaces, seccomp and cgroups on the host kernel",
        checkpoint_problem=criu.problem,
    )


class OciRuntime:
    name = "oci"
    uid_offset = USERNS_HOST_BASE
    agent_is_init = True
    """The agent is the sandbox's init, a host process: its listening socket says so."""
    own_user_namespace = True
    """Each sandbox's user namespace is made for it, owned by a uid of its own (see
    `userns.py`), rather than by runc as root: when the operator asks for it
    (`user_namespace_owners`) and root holds CAP_SYS_RESOURCE. Without the capability
    runc could not set a sandbox's rlimits, nor CRIU read them, through a namespace
    root does not own."""
    checkpoint_marker = "inventory.img"
    """The file a complete dump leaves in the checkpoint directory."""

    def __init__(
        self,
        data_dir: Path,
        binary: str = "runc",
        criu: str | None = None,
        *,
        user_namespace_owners: bool = False,
    ) -> None:
        self.binary = binary
        self.criu = find_criu(criu)
        self.run_root = run_root_for(data_dir)
        self.state_root = state_root_for(data_dir, binary)
        self.disks_root = data_dir / "sandboxes"
        for path in (RUN_BASE, self.run_root):
            path.mkdir(mode=0o711, exist_ok=True)
            path.chmod(0o711)
        self.state_root.mkdir(mode=0o700, exist_ok=True)
        self.disks_root.mkdir(parents=True, exist_ok=True)
        self.agent_dir = self._install_agent()
        self.owners = NamespaceOwners(self.run_root.glob(f"*/{NS_FILE}"))
        self.own_user_namespace = self.own_user_namespace and user_namespace_owners
        if self.own_user_namespace and not has_sys_resource():
            log.warning(
                "user_namespace_owners needs root to hold CAP_SYS_RESOURCE, which this host "
                "withholds; sandboxes' user namespaces are runc's"
            )
            self.own_user_namespace = False
        become_subreaper()

    def _install_agent(self) -> Path:
        """A copy of the agent that sandboxes can reach, with bytecode ready.

        Sandboxes run it read-only with -B, so without the bytecode made here each would
        compile the agent again at start. Copies are named by content and never
        replaced: running sandboxes keep the version they started with mounted.
        """
        sources = sorted(AGENT_DIR.glob("*.py"))
        digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sources))
        target = self.run_root / f"agent-{digest.hexdigest()[:12]}"
        if target.is_dir():
            return target
        staging = self.run_root / f".agent-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o755)
        for source in sources:
            shutil.copy2(source, staging / source.name)
        compileall.compile_dir(staging, quiet=1)
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        staging.rename(target)
        return target

    def cgroup_path(self, sandbox_id: str) -> str:
        """Under a parent named like the run directory, so servers sharing a host (and
        their consistency checks) never mistake each other's sandboxes for their own."""
        return f"/sandlot/{self.run_root.name}/{sandbox_id}"

    def bundle_dir(self, sandbox_id: str) -> Path:
        return self.run_root / sandbox_id

    def disk_dir(self, sandbox_id: str) -> Path:
        return self.disks_root / sandbox_id

    def disk_image(self, sandbox_id: str) -> Path:
        """The sparse image holding the sandbox's writable layer: its disk quota."""
        return self.disk_dir(sandbox_id) / "disk.img"

    def layer_dir(self, sandbox_id: str) -> Path:
        """Where the disk image is mounted: `upper/` and `work/` of the overlay."""
        return self.bundle_dir(sandbox_id) / "disk"

    def agent_endpoint(self, sandbox_id: str) -> AgentEndpoint:
        path = self.bundle_dir(sandbox_id) / "host" / "run" / "agent.sock"
        return AgentEndpoint(path, self.init_pid(sandbox_id) if self.agent_is_init else None)

    def checkpoint_dir(self, sandbox_id: str) -> Path:
        """Where a paused sandbox's processes are dumped: on disk, so pausing frees memory
        and the pause outlives the server (and /run)."""
        return self.disk_dir(sandbox_id) / "checkpoint"

    @property
    def can_checkpoint(self) -> bool:
        return self.criu.usable

    @property
    def capabilities(self) -> Capabilities:
        return oci_capabilities(self.criu)

    async def _runc(self, *args: str, check: bool = True) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self._runc_argv(),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if check and proc.returncode != 0:
            raise BackendError(f"{self.binary} {args[0]} failed", detail=err.decode().strip())
        return out.decode()

    async def create(self, spec: SandboxSpec, snapshot: Path | None = None) -> None:
        bundle = self.bundle_dir(spec.sandbox_id)
        try:
            # mkfs and mount(8) block for a few milliseconds: keep them off the loop.
            await asyncio.to_thread(self.prepare_bundle, spec, snapshot=snapshot)
            memory = snapshot / "checkpoint" if snapshot is not None else None
            if memory is not None and memory.is_dir():
                await self.restore(spec.sandbox_id, memory)
            else:
                await self._start(bundle, spec.sandbox_id)
        except BaseException:
            await self.destroy(spec.sandbox_id)
            raise

    def prepare_bundle(
        self,
        spec: SandboxSpec,
        process_args: list[str] | None = None,
        snapshot: Path | None = None,
    ) -> Path:
        """Lay out and mount everything `runc run` needs; returns the bundle directory.

        `snapshot` starts the disk as a copy of a snapshot's; `process_args` replaces the
        agent, for measuring runc alone.
        """
        bundle = self.bundle_dir(spec.sandbox_id)
        bundle.mkdir(mode=0o711)
        user_namespace = self._make_user_namespace(bundle)
        self.disk_dir(spec.sandbox_id).mkdir(mode=0o700)
        for path in (bundle / "disk", bundle / "rootfs", bundle / "host"):
            path.mkdir()
        shared = bundle / "host"
        mount_tmpfs(shared, HOST_SHARED_KB, HOST_SHARED_INODES, self.uid_offset)
        image = self.disk_image(spec.sandbox_id)
        if snapshot is None:
            create_disk(image, spec.resources.disk_mb, self.uid_offset)
        else:
            copy_disk(snapshot / "disk.img", image)
        mount_disk(image, bundle / "disk")
        layer = self.layer_dir(spec.sandbox_id)
        for path in (layer / "upper", layer / "work"):
            path.mkdir(exist_ok=True)
        (shared / "etc").mkdir(mode=0o755)
        (shared / "run").mkdir()
        for name, text in identity_files(spec.sandbox_id, spec.nameserver).items():
            (shared / "etc" / name).write_text(text)
            os.chown(shared / "etc" / name, self.uid_offset, self.uid_offset)
        # Root inside owns its writable layer and the agent's socket directory.
        for path in (layer / "upper", shared / "run"):
            os.chown(path, self.uid_offset, self.uid_offset)
        mount_overlay(spec.layers, layer / "upper", layer / "work", bundle / "rootfs")
        config = oci_config(
            spec,
            agent_dir=self.agent_dir,
            run_dir=shared / "run",
            etc_dir=shared / "etc",
            cgroup=self.cgroup_path(spec.sandbox_id),
            user_namespace=user_namespace,
        )
        if process_args is not None:
            config["process"].update(args=process_args, cwd="/")
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def _make_user_namespace(self, bundle: Path) -> Path | None:
        if not self.own_user_namespace:
            return None
        owner = self.owners.allocate()
        try:
            make_user_namespace(bundle / NS_FILE, owner, self.uid_offset, USERNS_SIZE)
        except BaseException:
            self.owners.release(owner)
            raise
        return bundle / NS_FILE

    async def _start(self, bundle: Path, sandbox_id: str) -> None:
        if not await self._launch(sandbox_id, "run"):
            log = (bundle / "runc.log").read_text(errors="replace")[-2000:]
            raise BackendError(f"{self.binary} run failed for {sandbox_id}", detail=log)

    async def _launch(self, sandbox_id: str, command: str, *args: str) -> bool:
        """`run` or `restore` the sandbox, detached; False if that failed (see runc.log).

        The sandbox's init inherits runc's stdio: hand it /dev/null, never a pipe we
        would wait on, and nothing on the host it could keep open.
        """
        bundle = self.bundle_dir(sandbox_id)
        proc = await asyncio.create_subprocess_exec(
            *self._runc_argv(),
            "--log",
            str(bundle / "runc.log"),
            command,
            "--detach",
            "--pid-file",
            str(bundle / "init.pid"),
            "--bundle",
            str(bundle),
            *args,
            sandbox_id,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        return await proc.wait() == 0

    # ---- pause, checkpoints and snapshots ------------------------------------------

    async def freeze(self, sandbox_id: str) -> None:
        await self._runc("pause", sandbox_id)

    async def thaw(self, sandbox_id: str) -> None:
        """Idempotent, and wakes an agent that was quiesced for a dump that never came
        (a crash in the middle of a pause)."""
        try:
            if await self.status(sandbox_id) is RuntimeStatus.PAUSED:
                await self._runc("resume", sandbox_id)
        finally:
            self._wake_agent(sandbox_id)

    async def checkpoint(self, sandbox_id: str) -> None:
        init_pid = await self._init_pid(sandbox_id)
        await self._dump(sandbox_id, self.checkpoint_dir(sandbox_id), leave_running=False)
        if init_pid is not None:
            await reap(init_pid)
        await self._runc("delete", "--force", sandbox_id, check=False)
        remove_cgroup(self.cgroup_path(sandbox_id))

    async def restore(self, sandbox_id: str, images: Path | None = None) -> None:
        images = images or self.checkpoint_dir(sandbox_id)
        work = self._criu_work(sandbox_id)
        # Restore runs inside the sandbox's user namespace, as its root. Done here
        # rather than after the dump so that a dump whose server died still restores.
        await asyncio.to_thread(_hand_over_images, images, self.uid_offset)
        restored = await self._launch(
            sandbox_id,
            "restore",
            "--image-path",
            str(images),
            "--work-path",
            str(work),
            *CRIU_OPTIONS,
        )
        if not restored:
            raise BackendError(
                f"restoring {sandbox_id} failed",
                detail=_log_tail(work / "restore.log", "Error"),
            )
        self._wake_agent(sandbox_id)
        if images == self.checkpoint_dir(sandbox_id):
            # Hundreds of MiB of pages: not on the loop the resumed sandbox waits on.
            await asyncio.to_thread(shutil.rmtree, images, True)

    async def snapshot(self, sandbox_id: str, target: Path, memory: bool) -> int:
        """Copy the sandbox's disk (and, with `memory`, dump its processes) into `target`
        while its cgroup is frozen, so the files and the memory agree; the sandbox runs on.
        """
        _fresh_dir(target)
        await self.freeze(sandbox_id)
        try:
            await asyncio.to_thread(syncfs, self.layer_dir(sandbox_id))
            await asyncio.to_thread(copy_disk, self.disk_image(sandbox_id), target / "disk.img")
            if memory:
                await self._dump(sandbox_id, target / "checkpoint", leave_running=True)
        finally:
            with contextlib.suppress(BackendError):
                await self.thaw(sandbox_id)  # which wakes the agent, quiesced or not
        return bytes_used(target)

    async def export_changes(self, sandbox_id: str, target: Path) -> None:
        # Killed rather than frozen: a freeze can fail on a task in the middle of exiting,
        # and nothing here runs again.
        await kill_cgroup(self.cgroup_path(sandbox_id))
        await asyncio.to_thread(syncfs, self.layer_dir(sandbox_id))
        upper = self.layer_dir(sandbox_id) / "upper"
        # cp keeps what a layer is made of: owners, modes, hard links, device-node
        # whiteouts and the overlay's trusted.* xattrs (opaque directories).
        done = await asyncio.create_subprocess_exec(
            "cp", "-a", "--sparse=always", f"{upper}/.", str(target),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await done.communicate()
        if done.returncode != 0:
            raise BackendError(
                f"copying the changes of {sandbox_id} failed", detail=err.decode().strip()
            )

    async def _dump(self, sandbox_id: str, images: Path, leave_running: bool) -> None:
        """`runc checkpoint`; the agent must have been quiesced. If the dump fails the
        sandbox keeps running and its agent is told to listen again."""
        if not self.criu.usable:
            raise BackendError(f"cannot checkpoint {sandbox_id}: {self.criu.problem}")
        _fresh_dir(images)
        work = self._criu_work(sandbox_id)
        extra = ("--leave-running",) if leave_running else ()
        try:
            await self._runc(
                "checkpoint",
                "--image-path",
                str(images),
                "--work-path",
                str(work),
                *CRIU_OPTIONS,
                *extra,
                sandbox_id,
            )
        except BackendError as exc:
            shutil.rmtree(images, ignore_errors=True)
            self._wake_agent(sandbox_id)
            tail = _log_tail(work / "dump.log", "Error")
            raise BackendError(
                f"CRIU could not dump {sandbox_id}", f"{exc.detail}; {tail}"
            ) from None

    def _criu_work(self, sandbox_id: str) -> Path:
        return _fresh_dir(self.bundle_dir(sandbox_id) / "criu")

    def init_pid(self, sandbox_id: str) -> int | None:
        """The host pid of the sandbox's init (its agent), as runc last wrote it."""
        try:
            return int((self.bundle_dir(sandbox_id) / "init.pid").read_text())
        except (OSError, ValueError):
            return None

    def _wake_agent(self, sandbox_id: str) -> None:
        """SIGUSR1 tells a quiesced agent to listen again."""
        pid = self.init_pid(sandbox_id)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

    def _runc_argv(self) -> list[str]:
        argv = [self.binary, "--root", str(self.state_root)]
        if self.criu.path is not None:
            argv += ["--criu", str(self.criu.path)]
        return argv

    async def destroy(self, sandbox_id: str) -> None:
        init_pid = await self._init_pid(sandbox_id)
        if init_pid is None:
            # An init that died on its own is no longer in runc's state, but its zombie
            # (ours, as subreaper) still holds the pid the pid file names.
            dead = self.init_pid(sandbox_id)
            init_pid = dead if dead is not None and is_zombie(dead) else None
        await self._runc("delete", "--force", sandbox_id, check=False)
        await kill_cgroup(self.cgroup_path(sandbox_id))
        if init_pid is not None:
            await reap(init_pid)
        bundle = self.bundle_dir(sandbox_id)
        owner = owner_of(bundle / NS_FILE)
        for point in mounts_under(bundle):
            unmount(point)
        remove_cgroup(self.cgroup_path(sandbox_id))
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.rmtree(self.disk_dir(sandbox_id), ignore_errors=True)
        if owner is not None and not bundle.exists():
            self.owners.release(owner)

    async def update(self, sandbox_id: str, resources: Resources, cpus: str | None) -> None:
        limits = cgroup_resources(resources, cpus or ",".join(map(str, host_cpus())))
        bundle = self.bundle_dir(sandbox_id)
        update = bundle / "update.json"
        update.write_text(json.dumps(limits))
        await self._runc("update", "--resources", str(update), sandbox_id)
        # `runc restore` sets limits from config.json: keep it saying what is in force,
        # or a resumed sandbox would come back with the limits it was started with.
        config = json.loads((bundle / "config.json").read_text())
        config["linux"]["resources"].update(limits)
        (bundle / "config.json").write_text(json.dumps(config))

    async def _state(self, sandbox_id: str) -> dict[str, Any]:
        out = await self._runc("state", sandbox_id, check=False)
        return dict(json.loads(out)) if out.strip() else {}

    async def _init_pid(self, sandbox_id: str) -> int | None:
        pid = (await self._state(sandbox_id)).get("pid")
        return int(pid) if pid and int(pid) > 0 else None

    async def status(self, sandbox_id: str) -> RuntimeStatus:
        status = _status_of((await self._state(sandbox_id)).get("status", ""))
        if status is RuntimeStatus.MISSING and self._checkpointed(sandbox_id):
            return RuntimeStatus.CHECKPOINTED
        return status

    def _checkpointed(self, sandbox_id: str) -> bool:
        """Dumped to disk with its bundle still in place, ready to restore."""
        return (self.checkpoint_dir(sandbox_id) / self.checkpoint_marker).exists() and (
            self.bundle_dir(sandbox_id) / "config.json"
        ).exists()

    async def list(self) -> list[RuntimeSandbox]:
        listed = json.loads(await self._runc("list", "--format", "json") or "null") or []
        found = {c["id"]: _status_of(c["status"]) for c in listed}
        leftovers = [*self.disks_root.iterdir(), *self.run_root.glob("sbx-*")]
        for leftover in leftovers:
            checkpointed = self._checkpointed(leftover.name)
            status = RuntimeStatus.CHECKPOINTED if checkpointed else RuntimeStatus.MISSING
            found.setdefault(leftover.name, status)
        return [RuntimeSandbox(sid, status) for sid, status in sorted(found.items())]

    def orphan_traces(self, known: set[str]) -> builtins.list[str]:
        traces = []
        for point in mounts_under(self.run_root):
            owner = point.relative_to(self.run_root).parts[0]
            if owner.startswith("sbx-") and owner not in known:
                traces.append(f"{owner}: mount {point} left behind")
        for directory in cgroup_dirs(f"sandlot/{self.run_root.name}"):
            for child in directory.iterdir():
                if child.is_dir() and child.name.startswith("sbx-") and child.name not in known:
                    traces.append(f"{child.name}: cgroup {child} left behind")
        return traces

    async def close(self) -> None:
        if not await self.list():
            shutil.rmtree(self.run_root, ignore_errors=True)
            with contextlib.suppress(OSError):
                remove_cgroup(f"/sandlot/{self.run_root.name}")

    def oom_kills(self, sandbox_id: str) -> int:
        return read_oom_kills(self.cgroup_path(sandbox_id))

    def usage(self, sandbox_id: str) -> SandboxUsage:
        used, size = disk_usage(self.layer_dir(sandbox_id))
        rx, tx = self._net_counters(sandbox_id)
        return dataclasses.replace(
            read_usage(self.cgroup_path(sandbox_id)),
            disk_bytes=used,
            disk_limit_bytes=size,
            net_rx_bytes=rx,
            net_tx_bytes=tx,
        )

    def _net_counters(self, sandbox_id: str) -> tuple[int, int]:
        """Bytes received and sent on the sandbox's interfaces, loopback excluded."""
        pid = self.init_pid(sandbox_id)
        if pid is None:
            return 0, 0
        try:
            lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
        except OSError:
            return 0, 0
        rx = tx = 0
        for line in lines:
            name, _, counters = line.partition(":")
            if name.strip() != "lo":
                fields = counters.split()
                rx, tx = rx + int(fields[0]), tx + int(fields[8])
        return rx, tx


CRIU_OPTIONS = ("--tcp-established", "--file-locks")
"""Connections and locks inside the sandbox are part of its state."""


def _log_tail(log: Path, marker: str) -> str:
    """CRIU's own words on a failure: the lines with `marker`, else the last few."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"no log at {log.name}"
    picked = [line for line in lines if marker in line] or lines[-5:]
    return " | ".join(picked[-5:])


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    return path


def _hand_over_images(root: Path, uid: int) -> None:
    """Make checkpoint images readable by the restoring sandbox's root, and by anyone:
    under load CRIU can open an image before the new user namespace's uid map is in
    place. The directories above (the data directory's) keep them from other users."""
    for path in (root, *root.rglob("*")):
        os.chown(path, uid, uid, follow_symlinks=False)
        path.chmod(0o755 if path.is_dir() else 0o644)


def _status_of(runc_status: str) -> RuntimeStatus:
    return {
        "running": RuntimeStatus.RUNNING,
        "paused": RuntimeStatus.PAUSED,
        "created": RuntimeStatus.STOPPED,
        "stopped": RuntimeStatus.STOPPED,
    }.get(runc_status, RuntimeStatus.MISSING)
