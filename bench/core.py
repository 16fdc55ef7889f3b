"""Core figures: create-to-first-command, exec round trip, file throughput.

Each Sandlot figure is printed beside the raw primitive measured in the same run:
create-to-first-command against a bare `runc run` + `runc exec true` of the same
template layers (same overlay, same OCI config, agent replaced by `sleep`), the exec
round trip against a local `subprocess.run(["true"])`.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.stats import UNLIMITED, print_row
from sandlot import Sandbox, Sandlot
from sandlot.domain.host_values import SandboxSpec
from sandlot.domain.resources import Resources
from sandlot.runtime.oci import OciRuntime
from sandlot.testing import ServerProcess, base_layers, ensure_base_template


def bare_runc_first_exec(runtime: OciRuntime, layers: tuple[Path, ...], n: int) -> float:
    """ms from nothing to the first `runc exec true` returning, for one container.

    The same overlay, OCI config and directories as a sandbox, with `sleep` in place of
    the agent: what runc alone costs. Laying out the bundle (disk image, mounts) is left
    out of the baseline's time, which only makes the baseline stricter.
    """
    spec = SandboxSpec(f"bench-{n}", layers, Resources(1, 512, 1024))
    runc = ["runc", "--root", str(runtime.state_root)]
    bundle = runtime.prepare_bundle(spec, process_args=["sleep", "infinity"])
    start = time.perf_counter()
    subprocess.run(
        [*runc, "run", "--detach", "--bundle", str(bundle), spec.sandbox_id],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    subprocess.run([*runc, "exec", spec.sandbox_id, "true"], check=True)
    elapsed = (time.perf_counter() - start) * 1000
    asyncio.run(runtime.destroy(spec.sandbox_id))
    return elapsed


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


class Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size
        self.block = b"\xa5" * (1 << 20)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left, len(self.block))
        buffer[:n] = self.block[:n]
        self.left -= n
        return n


def run(runs: int, file_mib: int) -> None:
    ensure_base_template()
    layers = base_layers()
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-") as tmp:
        work = Path(tmp)
        warm = ServerProcess(work / "warm", extra_env=UNLIMITED)
        cold = ServerProcess(work / "cold", extra_env={**UNLIMITED, "SANDLOT_WARM_POOL_SIZE": "0"})
        servers = (warm, cold)
        for server in servers:
            server.data_dir.mkdir()
            server.start()
        try:
            with (
                Sandlot(api_url=warm.url, api_key=warm.api_key) as warm_client,
                Sandlot(api_url=cold.url, api_key=cold.api_key) as cold_client,
            ):
                measure(warm_client, cold_client, work, layers, runs, file_mib)
        finally:
            for server in servers:
                server.destroy_all()
                server.stop()


def create_to_first_command_ms(client: Sandlot, template: str = "base") -> float:
    start = time.perf_counter()
    sbx = Sandbox.create(template=template, client=client)
    sbx.commands.run("true")
    elapsed = (time.perf_counter() - start) * 1000
    sbx.kill()
    return elapsed


def measure(
    warm_client: Sandlot,
    cold_client: Sandlot,
    work: Path,
    layers: tuple[Path, ...],
    runs: int,
    file_mib: int,
) -> None:
    print(f"Sandlot core benchmark: {runs} runs, layers {layers}")
    runtime = OciRuntime(work / "bare")
    # Warm every path once so page cache and imports do not count against any.
    bare_runc_first_exec(runtime, layers, -1)
    for client in (warm_client, cold_client):
        create_to_first_command_ms(client)

    bare, warm, cold = [], [], []
    for i in range(runs):
        bare.append(bare_runc_first_exec(runtime, layers, i))
        cold.append(create_to_first_command_ms(cold_client))
        warm.append(create_to_first_command_ms(warm_client))
        time.sleep(0.2)  # let the pool refill, as it would between real requests
    asyncio.run(runtime.close())
    print_row("create -> first command, warm pool", warm, bare, "runc run + runc exec")
    print_row("create -> first command, cold", cold, bare, "runc run + runc exec")

    with Sandbox.create(client=warm_client) as sbx:
        local = [timed_ms(lambda: subprocess.run(["true"], check=True)) for _ in range(runs * 5)]
        remote = [timed_ms(lambda: sbx.commands.run("true")) for _ in range(runs * 5)]
        print_row("exec round trip `true` (SDK)", remote, local, "local subprocess.run")

        size = file_mib * 1024 * 1024
        source = io.BufferedReader(Zeros(size))
        up = timed_ms(lambda: sbx.files.upload("/workspace/bench.bin", source))
        with open(os.devnull, "wb") as sink:
            start = time.perf_counter()
            assert sbx.files.download("/workspace/bench.bin", sink) == size
            down = (time.perf_counter() - start) * 1000
        disk = local_disk_write_ms(work, size)
        mbps = [size / ms / 1000 for ms in (up, down, disk)]
        print(
            f"{file_mib} MiB upload {mbps[0]:7.1f} MB/s, download {mbps[1]:7.1f} MB/s"
            f" | local disk write {mbps[2]:7.1f} MB/s"
        )


def local_disk_write_ms(work: Path, size: int) -> float:
    """Write then fsync, so the figure is the disk's and not the page cache's."""
    block = b"\xa5" * (1 << 20)
    path = work / "disk.bin"
    start = time.perf_counter()
    with path.open("wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    elapsed = (time.perf_counter() - start) * 1000
    path.unlink()
    return elapsed
