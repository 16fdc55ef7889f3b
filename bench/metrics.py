"""Cost of sampling resource use: the server's CPU with N idle sandboxes, sampled every
interval, beside the same server's CPU with no sandboxes over the same span."""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.stats import crowd_env
from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, ensure_base_template

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def server_cpu_percent(pid: int, seconds: float) -> float:
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - start) * 100


def run(sandboxes: int, seconds: float) -> None:
    ensure_base_template()
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-") as tmp:
        server = ServerProcess(
            Path(tmp) / "data",
            extra_env={**crowd_env(sandboxes), "SANDLOT_METRICS_INTERVAL": "2"},
        )
        server.data_dir.mkdir()
        server.start()
        assert server.proc is not None
        try:
            with Sandlot(api_url=server.url, api_key=server.api_key) as client:
                idle = server_cpu_percent(server.proc.pid, seconds)
                with ThreadPoolExecutor(8) as pool:
                    list(
                        pool.map(
                            lambda _: Sandbox.create(resources={"memory_mb": 128}, client=client),
                            range(sandboxes),
                        )
                    )
                time.sleep(3)  # let creation's own work settle
                busy = server_cpu_percent(server.proc.pid, seconds)
        finally:
            server.destroy_all()
            server.stop()
    print(
        f"server CPU with {sandboxes} idle sandboxes sampled every 2 s: {busy:5.2f} % of a core"
        f" | same server, no sandboxes: {idle:5.2f} % | sampling cost {busy - idle:5.2f} %"
    )
