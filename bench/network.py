"""Preview proxy cost: a small HTTP server in a sandbox, hit through its preview URL and
directly on its veth address in the same run.

Latency is sequential keep-alive requests from Python (p50, p99). Throughput is wrk
(Debian's `wrk`, installed by scripts/setup) with a few connections for a fixed time,
or, without wrk, a bounded asyncio load from Python.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.stats import UNLIMITED, print_row
from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, ensure_base_template

PORT = 8000
SERVER = "require('http').createServer((q, s) => s.end('ok')).listen(8000, '0.0.0.0')"


def latencies(url: str, host: str | None, runs: int) -> list[float]:
    headers = {"Host": host} if host else {}
    samples = []
    with httpx.Client(headers=headers, trust_env=False) as http:
        for _ in range(runs // 10):
            http.get(url)  # warm the connection
        for _ in range(runs):
            start = time.perf_counter()
            r = http.get(url)
            samples.append((time.perf_counter() - start) * 1000)
            assert r.text == "ok", r.text
    return samples


def wrk_rate(url: str, host: str | None, seconds: float, connections: int) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
    if host:
        cmd += ["-H", f"Host: {host}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(match[1])


async def python_rate(url: str, host: str | None, seconds: float, connections: int) -> float:
    headers = {"Host": host} if host else {}
    done = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(headers=headers, trust_env=False) as http:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                r = await http.get(url)
                assert r.status_code == 200
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return done / (time.monotonic() - start)


def rate(url: str, host: str | None, seconds: float, connections: int) -> float:
    if shutil.which("wrk"):
        return wrk_rate(url, host, seconds, connections)
    return asyncio.run(python_rate(url, host, seconds, connections))


def run(runs: int, seconds: float, connections: int) -> None:
    ensure_base_template()
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-") as tmp:
        server = ServerProcess(
            Path(tmp) / "data",
            extra_env={**UNLIMITED, "SANDLOT_WARM_POOL_SIZE": "0", "SANDLOT_LOG_LEVEL": "warning"},
        )
        server.data_dir.mkdir()
        server.start()
        try:
            with (
                Sandlot(api_url=server.url, api_key=server.api_key) as client,
                Sandbox.create(client=client) as sbx,
            ):
                sbx.commands.run(f'node -e "{SERVER}"', background=True)
                address = sbx.info.address
                direct = f"http://{address}:{PORT}/"
                proxied = f"http://127.0.0.1:{server.port}/"
                host = f"{PORT}-{sbx.id}.sandboxes.localhost:{server.port}"
                deadline = time.monotonic() + 10
                while True:
                    try:
                        httpx.get(direct, trust_env=False)
                        break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline, (
                            "the server in the sandbox did not start"
                        )
                        time.sleep(0.1)
                print(
                    f"preview proxy vs direct to the sandbox's veth ({runs} requests, keep-alive)"
                )
                through = latencies(proxied, host, runs)
                straight = latencies(direct, None, runs)
                print_row("GET through the preview URL", through, straight, "same GET, direct")
                added = statistics.median(through) - statistics.median(straight)
                print(f"{'added by the proxy, p50':<34} {added:8.2f} ms")
                tool = "wrk" if shutil.which("wrk") else "python"
                through_rate = rate(proxied, host, seconds, connections)
                straight_rate = rate(direct, None, seconds, connections)
                print(
                    f"{'requests/s through the preview URL':<34} {through_rate:8.0f}     |"
                    f" {'direct':<26} {straight_rate:8.0f}"
                    f" | ratio {through_rate / straight_rate:5.2f} ({tool}, {connections} conns,"
                    f" {seconds:g} s each)"
                )
        finally:
            server.destroy_all()
            server.stop()
