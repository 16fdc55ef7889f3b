"""Does the store agree with the host? The checker behind `sandlot doctor --check`.

Reconciliation makes them agree at start-up; this only looks, so it can run beside a
live server (or after a crash, before one starts) and say what is out of place.
"""

from __future__ import annotations

from sandlot.core.host import Host
from sandlot.domain.host_values import RuntimeStatus
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database


async def find_inconsistencies(db: Database, host: Host) -> list[str]:
    """One line per problem: a live row whose sandbox is gone, or a host leftover
    (container, mount, cgroup, disk, directory, netns, veth, nftables table, address
    lease) no live row accounts for."""
    with db.session() as s:
        live = {r.id: r.status for r in sandbox_rows.live(s)}
    on_host = {r.sandbox_id: r.status for r in await host.list()}
    problems = []
    for sandbox_id, status in sorted(live.items()):
        found = on_host.get(sandbox_id, RuntimeStatus.MISSING)
        if status == "running" and found is not RuntimeStatus.RUNNING:
            problems.append(f"{sandbox_id}: the store says running, the host says {found.value}")
    for sandbox_id in sorted(set(on_host) - set(live)):
        problems.append(f"{sandbox_id}: left on the host with no live record")
    known = set(live) | set(on_host)
    return problems + await host.traces(known)
