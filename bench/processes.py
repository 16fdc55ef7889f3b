"""Process figures: streaming throughput, time to first byte, many background processes.

Baselines are the same work done locally without Sandlot in the same run: `cat` of a
file of the same size into a pipe, the local time to a first byte of `echo`, and the
same number of local background processes.
"""

from __future__ import annotations

import os
import pty
import subprocess
import tempfile
import time
from pathlib import Path

from bench.stats import UNLIMITED, print_row, print_throughput
from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, ensure_base_template


def local_cat_ms(path: Path) -> float:
    start = time.perf_counter()
    with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while proc.stdout.read(1 << 20):
            pass
    return (time.perf_counter() - start) * 1000


def local_first_byte_ms() -> float:
    start = time.perf_counter()
    with subprocess.Popen(["sh", "-c", "echo x"], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        proc.stdout.read(1)
        elapsed = (time.perf_counter() - start) * 1000
    return elapsed


def local_ptys_ms(count: int) -> float:
    """`count` local bash shells on terminals, each asked to echo once."""
    start = time.perf_counter()
    shells = []
    for _ in range(count):
        controller, terminal = pty.openpty()
        proc = subprocess.Popen(
            ["bash", "--norc", "-i"],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            start_new_session=True,
        )
        os.close(terminal)
        os.write(controller, b"echo rea''dy\n")
        shells.append((proc, controller))
    for proc, controller in shells:
        seen = b""
        while b"ready" not in seen:
            seen += os.read(controller, 4096)
        proc.kill()
        proc.wait()
        os.close(controller)
    return (time.perf_counter() - start) * 1000


def sandbox_ptys_ms(sbx: Sandbox, count: int) -> float:
    start = time.perf_counter()
    terminals = [sbx.pty.create(cols=80, rows=24) for _ in range(count)]
    for t in terminals:
        t.send("echo rea''dy\n")
    for t in terminals:
        seen = b""
        while b"ready" not in seen:
            seen += b"".join(c.data for c in t.pump(0.02))
        t.kill()
    return (time.perf_counter() - start) * 1000


def run(runs: int, stream_mib: int, background: int) -> None:
    ensure_base_template()
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-") as tmp:
        server = ServerProcess(Path(tmp) / "data", extra_env=UNLIMITED)
        server.data_dir.mkdir()
        server.start()
        try:
            with Sandlot(api_url=server.url, api_key=server.api_key) as client:
                measure(client, Path(tmp), runs, stream_mib, background)
        finally:
            server.destroy_all()
            server.stop()


def measure(client: Sandlot, work: Path, runs: int, stream_mib: int, background: int) -> None:
    size = stream_mib * 1024 * 1024
    local_file = work / "blob"
    local_file.write_bytes(b"\xa5" * size)
    with Sandbox.create(client=client) as sbx:
        sbx.commands.run(f"head -c {size} /dev/zero | tr '\\0' '\\245' > /workspace/blob")
        start = time.perf_counter()
        received = sum(
            len(c.data) for c in sbx.commands.run("cat /workspace/blob", background=True).stream()
        )
        ours = (time.perf_counter() - start) * 1000
        assert received == size
        print_throughput(
            f"stream cat {stream_mib} MiB (SDK)",
            size,
            ours,
            local_cat_ms(local_file),
            "local cat | pipe",
        )

        first_byte, exec_rt, local = [], [], []
        for _ in range(runs):
            start = time.perf_counter()
            handle = sbx.commands.run("echo x", background=True)
            next(iter(handle.stream()))
            first_byte.append((time.perf_counter() - start) * 1000)
            handle.wait()
            start = time.perf_counter()
            sbx.commands.run("echo x")
            exec_rt.append((time.perf_counter() - start) * 1000)
            local.append(local_first_byte_ms())
        print_row(
            "first byte of a streamed command", first_byte, exec_rt, "run-and-wait round trip"
        )
        print_row("first byte of a streamed command", first_byte, local, "local first byte")

        start = time.perf_counter()
        handles = [
            sbx.commands.run(f"for i in 1 2 3; do echo {n}-$i; done", background=True)
            for n in range(background)
        ]
        assert all(h.wait(timeout=120).exit_code == 0 for h in handles)
        ours_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                ["sh", "-c", f"for i in 1 2 3; do echo {n}-$i; done"], stdout=subprocess.PIPE
            )
            for n in range(background)
        ]
        for p in procs:
            p.communicate()
        local_ms = (time.perf_counter() - start) * 1000
        print_row(f"{background} background processes", [ours_ms], [local_ms], "local Popen")
        ptys = 20
        print_row(
            f"{ptys} concurrent PTYs, echo each",
            [sandbox_ptys_ms(sbx, ptys)],
            [local_ptys_ms(ptys)],
            "local bash on a pty",
        )
