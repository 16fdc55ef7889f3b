"""What the host holds for a sandbox's network, wherever it is still found."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from sandlot.runtime.oci import run_root_for


def network_traces(sandbox_id: str, data_dir: Path) -> list[str]:
    """Its namespace, veth, nftables table and address lease."""
    key = run_root_for(data_dir).name
    traces = [str(p) for p in Path("/run/netns").glob(f"*{sandbox_id}*")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    if f"sl-{sandbox_id.removeprefix('sbx-')}" in links:
        traces.append("veth")
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    if sandbox_id.replace("-", "_") in tables:
        traces.append("nft table")
    for lease in Path("/run/sandlot/leases").iterdir():
        with contextlib.suppress(FileNotFoundError):  # released while we looked
            if lease.read_text().split() == [key, sandbox_id]:
                traces.append(f"lease {lease.name}")
    return traces
