"""Workspace volume figures, each beside what it is measured against in the same run:
create-to-first-command with two volumes mounted beside the same create without (both
cold: a warm sandbox cannot be given mounts), 1 GiB written and read sequentially in a
volume beside the sandbox's own disk, and an upload to a volume without a sandbox
beside the same upload into a sandbox.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.core import Zeros
from bench.stats import UNLIMITED, print_row
from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, ensure_base_template

MOUNTS: list[dict[str, object]] = [
    {"workspace_id": "bench-code", "path": "/workspace"},
    {"workspace_id": "bench-data", "path": "/data", "read_only": True},
]
DD = "dd if=/dev/zero of={path} bs=1M count={mib} conv=fsync status=none"
READ = "dd if={path} of=/dev/null bs=1M iflag=direct status=none"
"""Direct reads: what was just written would otherwise come back from the page cache."""


def run(runs: int, file_mib: int) -> None:
    ensure_base_template()
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-") as tmp:
        server = ServerProcess(
            Path(tmp) / "data", extra_env={**UNLIMITED, "SANDLOT_WARM_POOL_SIZE": "0"}
        )
        server.data_dir.mkdir()
        server.start()
        try:
            with Sandlot(server.url, server.api_key) as client:
                measure(client, runs, file_mib)
        finally:
            server.destroy_all()
            server.stop()


def first_command_ms(client: Sandlot, mounts: list[dict[str, object]] | None) -> float:
    start = time.perf_counter()
    sbx = Sandbox.create(mounts=mounts, client=client)
    sbx.commands.run("true")
    elapsed = (time.perf_counter() - start) * 1000
    sbx.kill()
    return elapsed


def seconds_of(sbx: Sandbox, command: str) -> float:
    start = time.perf_counter()
    result = sbx.commands.run(command, timeout=600)
    assert result.exit_code == 0, result.stderr
    return time.perf_counter() - start


def measure(client: Sandlot, runs: int, file_mib: int) -> None:
    print(f"Sandlot volume benchmark: {runs} runs, {file_mib} MiB files")
    client.volumes.create("bench-code", size="4GB")
    client.volumes.create("bench-data", size="1GB")
    first_command_ms(client, MOUNTS)
    first_command_ms(client, None)
    plain, mounted = [], []
    for _ in range(runs):
        plain.append(first_command_ms(client, None))
        mounted.append(first_command_ms(client, MOUNTS))
    print_row("create -> first command, 2 volumes", mounted, plain, "no volumes (cold)")

    mib = 1024
    with Sandbox.create(mounts=MOUNTS[:1], resources={"disk_mb": 4096}, client=client) as sbx:
        # Alternated, three times each, medians kept: whichever went first would
        # otherwise pay for the writeback (and ext4's lazy init) of what came before.
        rates: dict[str, list[tuple[float, float]]] = {"/workspace/big": [], "/root/big": []}
        for _ in range(3):
            for where, samples in rates.items():
                write = seconds_of(sbx, DD.format(path=where, mib=mib))
                read = seconds_of(sbx, READ.format(path=where))
                samples.append((mib / write, mib / read))
                sbx.commands.run(f"rm -f {where}; sync")
        (vw, vr), (dw, dr) = (
            tuple(statistics.median(x) for x in zip(*rates[where], strict=True))
            for where in ("/workspace/big", "/root/big")
        )
        print(
            f"1 GiB sequential write (median of 3) {vw:7.1f} MiB/s, "
            f"read {vr:7.1f} MiB/s in a volume | "
            f"sandbox disk write {dw:7.1f} MiB/s, read {dr:7.1f} MiB/s | "
            f"ratio {vw / dw:.2f}x / {vr / dr:.2f}x"
        )

        size = file_mib * 1024 * 1024
        volume = client.volumes.get("bench-code")
        start = time.perf_counter()
        volume.files.upload("/upload.bin", io.BufferedReader(Zeros(size)))
        direct = file_mib / (time.perf_counter() - start)
        start = time.perf_counter()
        sbx.files.upload("/root/upload.bin", io.BufferedReader(Zeros(size)))
        through = file_mib / (time.perf_counter() - start)
        with open(os.devnull, "wb") as sink:
            start = time.perf_counter()
            volume.files.download("/upload.bin", sink)
            down = file_mib / (time.perf_counter() - start)
        print(
            f"{file_mib} MiB upload to a volume, no sandbox {direct:7.1f} MiB/s "
            f"(download {down:7.1f} MiB/s) | into a sandbox {through:7.1f} MiB/s | "
            f"ratio {direct / through:.2f}x"
        )
