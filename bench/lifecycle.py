"""Lifecycle figures: pause, resume, memory snapshots and branches, beside bare CRIU.

A sandbox holding a given amount of dirty memory (a python3 process that fills a buffer,
then sleeps) is paused, resumed, snapshotted and branched through the SDK. The raw
primitive is a plain runc container built like a sandbox (same template layers, overlay,
OCI config and user namespace, with the same python3 process as its init and no agent)
that is dumped with `runc checkpoint` and brought back with `runc restore`, using the
same CRIU and options, in the same run. Laying out a raw bundle and handing the images
to the sandbox's root uid are left out of the raw figures, which only makes them stricter.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.stats import UNLIMITED, print_row
from sandlot import Sandbox, Sandlot
from sandlot.domain.host_values import SandboxSpec
from sandlot.domain.resources import Resources
from sandlot.runtime.cgroups import read_usage
from sandlot.runtime.oci import CRIU_OPTIONS, OciRuntime, _hand_over_images
from sandlot.runtime.reaping import reap
from sandlot.testing import ServerProcess, base_layers, ensure_base_template

SIZES_MIB = (64, 512)
PARALLEL = 10
RESUME_RATIO_TARGET = 1.3
RESUME_TARGET_MS = 1000.0
BRANCH_TARGET_MS = 500.0


def hog(mib: int) -> str:
    """Python that dirties `mib` MiB with non-zero bytes, so no page can be skipped."""
    return f'import time; held = b"\\xa5" * ({mib} << 20); time.sleep(86400)'


def memory_mb(mib: int) -> int:
    return max(512, 2 * mib)


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def wait_for_memory(read: Callable[[], int], mib: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while read() < mib << 20:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} never held {mib} MiB")
        time.sleep(0.05)


class RawContainer:
    """One bare runc container running `hog(mib)` as its init, dumped and restored
    with runc and CRIU directly."""

    def __init__(self, runtime: OciRuntime, layers: tuple[Path, ...], name: str, mib: int) -> None:
        assert runtime.criu.path is not None
        self.runtime = runtime
        self.mib = mib
        self.spec = SandboxSpec(name, layers, Resources(1, memory_mb(mib), 1024))
        self.runc = [
            "runc", "--root", str(runtime.state_root), "--criu", str(runtime.criu.path)
        ]  # fmt: skip
        self.bundle = runtime.prepare_bundle(self.spec, process_args=["python3", "-c", hog(mib)])
        self.work = self.bundle / "criu"

    @property
    def name(self) -> str:
        return self.spec.sandbox_id

    def _runc(self, *args: str) -> None:
        """The container's init inherits runc's stdio: /dev/null, never a pipe that
        would be waited on; runc's own words go to its log."""
        log = self.bundle / "runc.log"
        done = subprocess.run(
            [*self.runc, "--log", str(log), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"runc {args[0]} of {self.name} failed: {tail}")

    def start(self) -> None:
        self._runc(
            "run", "--detach", "--pid-file", str(self.bundle / "init.pid"),
            "--bundle", str(self.bundle), self.name,
        )  # fmt: skip
        self.wait_full()

    def wait_full(self) -> None:
        cgroup = self.runtime.cgroup_path(self.name)
        wait_for_memory(lambda: read_usage(cgroup).memory_bytes, self.mib, self.name)

    def checkpoint_ms(self, images: Path, leave_running: bool) -> float:
        """ms for `runc checkpoint`; the images are then made restorable."""
        for path in (images, self.work):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True, mode=0o700)
        pid = int((self.bundle / "init.pid").read_text()) if not leave_running else None
        extra = ["--leave-running"] if leave_running else []
        args = ["--image-path", str(images), "--work-path", str(self.work), *CRIU_OPTIONS]
        elapsed = timed_ms(lambda: self._runc("checkpoint", *args, *extra, self.name))
        if pid is not None:
            asyncio.run(reap(pid))
        _hand_over_images(images, self.runtime.uid_offset)
        return elapsed

    def restore_ms(self, images: Path) -> tuple[float, float]:
        """ms to `runc restore` returning, and on to a first `runc exec true`."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(mode=0o700)
        start = time.perf_counter()
        self._runc(
            "restore", "--detach", "--pid-file", str(self.bundle / "init.pid"),
            "--bundle", str(self.bundle), "--image-path", str(images),
            "--work-path", str(self.work), *CRIU_OPTIONS, self.name,
        )  # fmt: skip
        restored = time.perf_counter()
        self._runc("exec", self.name, "true")
        done = time.perf_counter()
        return (restored - start) * 1000, (done - start) * 1000

    def destroy(self) -> None:
        asyncio.run(self.runtime.destroy(self.name))


def run(runs: int) -> None:
    ensure_base_template()
    layers = base_layers()
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-lifecycle-") as tmp:
        work = Path(tmp)
        # No warm pool: nothing here measures creation, and every sandbox starts from
        # a bundle written with its own limits.
        server = ServerProcess(
            work / "data", extra_env={**UNLIMITED, "SANDLOT_WARM_POOL_SIZE": "0"}
        )
        server.data_dir.mkdir()
        server.start()
        runtime = OciRuntime(work / "bare")
        try:
            if not runtime.can_checkpoint:
                raise SystemExit(f"no raw baseline to measure against: {runtime.criu.problem}")
            with Sandlot(api_url=server.url, api_key=server.api_key) as client:
                print(
                    f"Sandlot lifecycle benchmark: {runs} runs per figure, CRIU "
                    f"{'.'.join(map(str, runtime.criu.version or ()))} at {runtime.criu.path}"
                )
                for mib in SIZES_MIB:
                    measure(client, runtime, layers, work, mib, runs)
        finally:
            server.destroy_all()
            server.stop()
            asyncio.run(runtime.close())


def measure(
    client: Sandlot, runtime: OciRuntime, layers: tuple[Path, ...], work: Path, mib: int, runs: int
) -> None:
    sbx = Sandbox.create(client=client, resources={"memory_mb": memory_mb(mib)})
    raw = RawContainer(runtime, layers, f"raw-{mib}", mib)
    images = work / f"raw-{mib}-images"
    try:
        sbx.commands.run(f"nohup python3 -c '{hog(mib)}' >/dev/null 2>&1 &")
        wait_for_memory(lambda: sbx.usage().memory_bytes, mib, sbx.id)
        raw.start()
        if sbx.pause().pause_mode != "checkpoint":
            raise SystemExit("the server freezes instead of checkpointing: nothing to compare")
        sbx.resume()  # warm both paths once
        raw.checkpoint_ms(images, leave_running=False)
        raw.restore_ms(images)
        row = Rows(mib, tail=90 if runs >= 10 else None)
        pause_and_resume(sbx, raw, images, runs, row, check_resume=mib == max(SIZES_MIB))
        snapshots(sbx, raw, images, runs, row)
        sbx.snapshots.create("source", memory=True)
        raw.checkpoint_ms(images, leave_running=True)
        branches(sbx, runtime, layers, images, runs, row, check=mib == min(SIZES_MIB))
        parallel_branches(sbx, runtime, layers, mib, images)
    finally:
        sbx.kill()
        raw.destroy()


@dataclass(frozen=True)
class Rows:
    """Rows of one memory size; a tail percentile only where the runs are enough for one."""

    mib: int
    tail: int | None

    def print(self, name: str, ours: list[float], base: list[float], base_name: str) -> None:
        print_row(f"{name}, {self.mib} MiB", ours, base, base_name, tail=self.tail)


def pause_and_resume(
    sbx: Sandbox, raw: RawContainer, images: Path, runs: int, row: Rows, check_resume: bool
) -> None:
    pause, resume, resume_first, dump, restore, restore_first = ([] for _ in range(6))
    for _ in range(runs):
        dump.append(raw.checkpoint_ms(images, leave_running=False))
        alone, first = raw.restore_ms(images)
        restore.append(alone)
        restore_first.append(first)
        pause.append(timed_ms(sbx.pause))
        start = time.perf_counter()
        sbx.resume()
        resume.append((time.perf_counter() - start) * 1000)
        sbx.commands.run("true")
        resume_first.append((time.perf_counter() - start) * 1000)
    # The memory came back each time: the same processes, not fresh ones.
    wait_for_memory(lambda: sbx.usage().memory_bytes, raw.mib, sbx.id)
    raw.wait_full()
    row.print("pause", pause, dump, "runc checkpoint")
    row.print("resume", resume, restore, "runc restore")
    row.print("resume -> first command", resume_first, restore_first, "runc restore + exec true")
    if check_resume:
        p50 = statistics.median(resume)
        ratio = p50 / statistics.median(restore)
        verdict(
            f"resume ≤ {RESUME_RATIO_TARGET}x runc restore and < {RESUME_TARGET_MS:.0f} ms",
            ratio <= RESUME_RATIO_TARGET and p50 < RESUME_TARGET_MS,
        )


def snapshots(sbx: Sandbox, raw: RawContainer, images: Path, runs: int, row: Rows) -> None:
    ours, base = [], []
    for i in range(runs):
        base.append(raw.checkpoint_ms(images, leave_running=True))
        name = f"timed-{i}"
        ours.append(timed_ms(lambda: sbx.snapshots.create(name, memory=True)))  # noqa: B023
        sbx.snapshots.delete(name)
    row.print("snapshot with memory", ours, base, "checkpoint, leave running")


def branches(
    sbx: Sandbox,
    runtime: OciRuntime,
    layers: tuple[Path, ...],
    images: Path,
    runs: int,
    row: Rows,
    check: bool,
) -> None:
    """Branches of the snapshot "source", one after another, beside raw restores of the
    raw container's images into new containers."""
    mib = row.mib
    ours, base = [], []
    for i in range(runs):
        base.append(raw_branch_ms(runtime, layers, f"raw-{mib}-branch-{i}", mib, images))
        ours.append(branch_ms(sbx, mib, check=i == 0))
    row.print("branch -> first command", ours, base, "restore copy + exec true")
    if check:
        verdict(
            f"branch -> first command < {BRANCH_TARGET_MS:.0f} ms",
            statistics.median(ours) < BRANCH_TARGET_MS,
        )


def branch_ms(sbx: Sandbox, mib: int, check: bool) -> float:
    start = time.perf_counter()
    child = sbx.branch("source")
    try:
        child.commands.run("true")
        elapsed = (time.perf_counter() - start) * 1000
        if check:
            wait_for_memory(lambda: child.usage().memory_bytes, mib, child.id)
    finally:
        child.kill()
    return elapsed


def raw_branch_ms(
    runtime: OciRuntime, layers: tuple[Path, ...], name: str, mib: int, images: Path
) -> float:
    """A new container restored from another's images, up to its first `runc exec`."""
    copy = RawContainer(runtime, layers, name, mib)
    try:
        return copy.restore_ms(images)[1]
    finally:
        copy.destroy()


def parallel_branches(
    sbx: Sandbox, runtime: OciRuntime, layers: tuple[Path, ...], mib: int, images: Path
) -> None:
    """PARALLEL branches of one snapshot at once, each up to its first command, beside
    as many raw restores at once (gone again before the branches start)."""
    raw_ms = raw_parallel_ms(runtime, layers, mib, images)
    children: list[Sandbox] = []

    def branch_one() -> None:
        child = sbx.branch("source")
        children.append(child)
        child.commands.run("true")

    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            start = time.perf_counter()
            outcomes = [pool.submit(branch_one) for _ in range(PARALLEL)]
            failures = [f.exception() for f in outcomes if f.exception() is not None]
            ours_ms = (time.perf_counter() - start) * 1000
    finally:
        for child in children:
            child.kill()
    ok = PARALLEL - len(failures)
    name, base_name = f"{PARALLEL} branches at once, {mib} MiB", f"{PARALLEL} restores + exec"
    print(
        f"{name:<34} wall {ours_ms:8.2f} ms, {ok}/{PARALLEL} ok | {base_name:<26} "
        f"wall {raw_ms:7.2f} ms | ratio {ours_ms / raw_ms:5.2f}x"
    )
    for failure in failures[:3]:
        print(f"  failed: {failure}")
    verdict(f"{PARALLEL} parallel branches all succeed", not failures)


def raw_parallel_ms(runtime: OciRuntime, layers: tuple[Path, ...], mib: int, images: Path) -> float:
    copies = [
        RawContainer(runtime, layers, f"raw-{mib}-parallel-{i}", mib) for i in range(PARALLEL)
    ]
    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            start = time.perf_counter()
            list(pool.map(lambda copy: copy.restore_ms(images), copies))
            return (time.perf_counter() - start) * 1000
    finally:
        for copy in copies:
            copy.destroy()


def verdict(target: str, met: bool) -> None:
    print(f"  target: {target}: {'met' if met else 'MISSED'}")
