"""The oci (runc) and runsc (gVisor) backends side by side, measured in one run.

One server per backend, both without a network (so both pause by checkpointing) and
without a warm pool (runsc cannot hand one over), so each create pays the whole start.
Every figure is printed for both, with runsc's cost as a multiple of runc's: what the
user-space kernel adds to the same Sandlot path.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from pathlib import Path

from bench.core import Zeros, timed_ms
from bench.stats import UNLIMITED, percentile
from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, ensure_base_template

BACKENDS = ("oci", "runsc")
COUNTER = "nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /root/n; sleep 0.05; done' &"


def measure(client: Sandlot, runs: int, file_mib: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"create": [], "exec": [], "pause": [], "resume": []}
    for _ in range(runs):
        start = time.perf_counter()
        sbx = Sandbox.create(template="base", client=client)
        sbx.commands.run("true")
        figures["create"].append((time.perf_counter() - start) * 1000)
        sbx.kill()
    with Sandbox.create(template="base", client=client) as sbx:
        sbx.commands.run("true")
        figures["exec"] = [timed_ms(lambda: sbx.commands.run("true")) for _ in range(runs * 5)]
        sbx.commands.run(COUNTER)
        modes = set()
        for _ in range(runs):
            start = time.perf_counter()
            modes.add(sbx.pause().pause_mode)
            figures["pause"].append((time.perf_counter() - start) * 1000)
            figures["resume"].append(timed_ms(sbx.resume))
        if modes != {"checkpoint"}:
            print(f"  (pauses were {sorted(map(str, modes))}, not all checkpoints)")
        size = file_mib << 20
        figures["upload"] = [
            timed_ms(lambda: sbx.files.upload("/root/big", io.BufferedReader(Zeros(size))))
        ]
        figures["download"] = [timed_ms(lambda: sbx.files.download("/root/big", io.BytesIO()))]
    return figures


def run(runs: int, file_mib: int) -> None:
    ensure_base_template()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-") as tmp:
        for backend in BACKENDS:
            env = {
                **UNLIMITED,
                "SANDLOT_RUNTIME": backend,
                "SANDLOT_NETWORK_ENABLED": "false",
                "SANDLOT_WARM_POOL_SIZE": "0",
            }
            server = ServerProcess(Path(tmp) / backend, extra_env=env)
            server.data_dir.mkdir()
            server.start()
            try:
                with Sandlot(api_url=server.url, api_key=server.api_key) as client:
                    results[backend] = measure(client, runs, file_mib)
            finally:
                server.destroy_all()
                server.stop()
    oci, runsc = results["oci"], results["runsc"]
    print(f"runtimes: N={runs} (exec N={runs * 5}), {file_mib} MiB files, no network, cold")
    for name, label in (
        ("create", "create -> first command"),
        ("exec", "exec round trip of `true`"),
        ("pause", "pause (checkpoint to disk)"),
        ("resume", "resume (restore)"),
    ):
        ratio = statistics.median(runsc[name]) / statistics.median(oci[name])
        print(
            f"{label:<28} oci {_p(oci[name])} | runsc {_p(runsc[name])}"
            f" | runsc/oci p50 {ratio:5.2f}x"
        )
    size = file_mib << 20
    for name in ("upload", "download"):
        ours, theirs = size / oci[name][0] / 1000, size / runsc[name][0] / 1000
        print(
            f"{name + ' through the SDK':<28} oci {ours:8.1f} MB/s | runsc {theirs:8.1f} MB/s"
            f" | runsc/oci {theirs / ours:5.2f}x"
        )


def _p(samples: list[float]) -> str:
    return f"p50 {statistics.median(samples):8.2f} ms p99 {percentile(samples, 99):8.2f} ms"
