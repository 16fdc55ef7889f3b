"""Load: many sandboxes at once, many execs across them, and a soak of mixed operations.

Each figure under load is printed beside the same operation on the same server with
nothing else going on (one at a time, measured in the same run), so the ratio says what
the load costs. Memory per idle sandbox is what the host and the server gave up for
each, from /proc/meminfo and the server's RSS before and after.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.stats import crowd_env, print_row
from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, ensure_base_template, process_memory_mb

IN_FLIGHT = 10
SMALL = {"memory_mb": 128, "disk_mb": 1024}


def host_used_mb() -> float:
    """Memory the host has given out (MemTotal - MemAvailable), in MiB."""
    info = {
        line.split(":")[0]: int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
    }
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


class Timed:
    """Runs calls through a pool, keeping each one's time and each failure's text."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.ms: list[float] = []
        self.errors: list[str] = []

    def run(self, calls: list[Callable[[], object]]) -> list[object]:
        def one(call: Callable[[], object]) -> object:
            start = time.perf_counter()
            try:
                result = call()
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return None
            self.ms.append((time.perf_counter() - start) * 1000)
            return result

        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(one, calls))


def create_call(client: Sandlot) -> Callable[[], Sandbox]:
    return lambda: Sandbox.create(resources=SMALL, idle_timeout=0, client=client)


def exec_call(sbx: Sandbox) -> Callable[[], None]:
    def run() -> None:
        out = sbx.commands.run("echo ok").stdout
        if out != "ok\n":
            raise AssertionError(f"{sbx.id} answered {out!r}")

    return run


def load_phases(server: ServerProcess, client: Sandlot, idle: int, execs: int) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    alone: list[Sandbox] = []
    serial_create = [timed_ms(lambda: alone.append(create_call(client)())) for _ in range(5)]
    serial_exec = [timed_ms(exec_call(alone[0])) for _ in range(50)]
    for sbx in alone:
        sbx.kill()
    rss_empty, host_empty = process_memory_mb(pid), host_used_mb()

    first = Timed(IN_FLIGHT)
    start = time.perf_counter()
    made = first.run([create_call(client) for _ in range(50)])
    wall = time.perf_counter() - start
    print_row(f"create, {IN_FLIGHT} in flight", first.ms, serial_create, "create, one at a time")
    print(f"  50 creates in {wall:.1f} s, {len(first.errors)} errors {first.errors[:3]}")

    rest = Timed(IN_FLIGHT)
    made += rest.run([create_call(client) for _ in range(idle - 50)])
    sandboxes = [s for s in made if isinstance(s, Sandbox)]
    time.sleep(5)  # creation's own work settles
    rss_full, host_full = process_memory_mb(pid), host_used_mb()
    n = len(sandboxes)
    print(
        f"{n} idle sandboxes alive ({len(rest.errors)} create errors):"
        f" host memory {(host_full - host_empty) / n:.1f} MiB per sandbox,"
        f" server RSS {rss_empty:.0f} -> {rss_full:.0f} MiB"
        f" ({(rss_full - rss_empty) / n * 1024:.0f} KiB per sandbox)"
    )
    for error in rest.errors[:5]:
        print(f"    {error}")

    if execs > 0:  # `--execs 0` skips the phase (a soak-only run)
        exec_across(sandboxes, execs, serial_exec)

    start = time.perf_counter()
    Timed(IN_FLIGHT).run([sbx.kill for sbx in sandboxes])
    print(f"destroyed {n} in {time.perf_counter() - start:.1f} s")


def exec_across(sandboxes: list[Sandbox], execs: int, serial_exec: list[float]) -> None:
    n = len(sandboxes)
    spread = Timed(IN_FLIGHT)
    start = time.perf_counter()
    spread.run([exec_call(sandboxes[i % n]) for i in range(execs)])
    rate = execs / (time.perf_counter() - start)
    print_row(
        f"exec across {n}, {IN_FLIGHT} in flight", spread.ms, serial_exec, "exec, one at a time"
    )
    print(
        f"  {execs} execs: {len(spread.ms)} succeeded, {len(spread.errors)} errors;"
        f" {rate:.0f} execs/s (one at a time: {1000 / statistics.median(serial_exec):.0f}/s)"
    )
    for error in spread.errors[:5]:
        print(f"    {error}")


def mixed_step(client: Sandlot, rng: random.Random) -> None:
    """One sandbox's short life, touching every kind of operation."""
    sbx = Sandbox.create(resources=SMALL, idle_timeout=0, client=client)
    try:
        name = uuid.uuid4().hex[:8]
        sbx.commands.run("seq 1000 > /root/seq")
        sbx.files.write(f"/root/{name}", "x" * rng.randrange(1, 100_000))
        sbx.files.read(f"/root/{name}")
        if rng.random() < 0.5:
            sbx.pause()
            sbx.resume()
        if rng.random() < 0.3:
            snap = sbx.snapshots.create(f"s{name}")
            sbx.snapshots.delete(snap.id)
        sbx.commands.run("wc -l /root/seq")
    finally:
        sbx.kill()


def soak(server: ServerProcess, client: Sandlot, minutes: float, workers: int) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    rng = random.Random(1)
    samples = [process_memory_mb(pid)]
    done, errors = 0, []
    end = time.monotonic() + minutes * 60
    next_sample = time.monotonic() + 60
    with ThreadPoolExecutor(workers) as pool:
        while time.monotonic() < end:
            futures = [pool.submit(mixed_step, client, rng) for _ in range(workers)]
            for future in futures:
                try:
                    future.result()
                    done += 1
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
            if time.monotonic() >= next_sample:
                samples.append(process_memory_mb(pid))
                next_sample += 60
    samples.append(process_memory_mb(pid))
    # The first minute fills caches and pools; growth is judged from there on.
    settled = samples[1] if len(samples) > 2 else samples[0]
    growth = samples[-1] - settled
    verdict = "flat" if growth <= max(0.05 * settled, 5) else "GROWING"
    print(
        f"soak {minutes:g} min, {workers} workers: {done} sandbox lives"
        f" (create, exec, files, pause/resume, snapshot, destroy), {len(errors)} errors"
    )
    print(f"  server RSS each minute (MiB): {' '.join(f'{s:.0f}' for s in samples)}")
    print(f"  after the first minute {growth:+.1f} MiB: {verdict}")
    for error in errors[:5]:
        print(f"    {error}")


def run(idle: int, execs: int, soak_minutes: float, soak_workers: int) -> None:
    ensure_base_template()
    room = max(idle, 50) + 10
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-") as tmp:
        server = ServerProcess(
            Path(tmp) / "data",
            extra_env={
                **crowd_env(room),
                "SANDLOT_ORG_MAX_MEMORY_MB": str(room * SMALL["memory_mb"]),
            },
        )
        server.data_dir.mkdir()
        server.start()
        try:
            with Sandlot(api_url=server.url, api_key=server.api_key) as client:
                load_phases(server, client, idle, execs)
                if soak_minutes > 0:
                    soak(server, client, soak_minutes, soak_workers)
        finally:
            server.destroy_all()
            server.stop()
