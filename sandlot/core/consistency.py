"""Does the store agree with the host? The checker behind `sandlot doctor --check`.

Reconciliation makes them agree at start-up; this only looks, so it can run beside a
live server (or after a crash, before one starts) and say what is out of place.
"""

from __future__ import annotations

from sandlot.core.host import Host
from sandlot.domain.host_values import RuntimeStatus
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store import volumes as volume_rows
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
    return problems + await host.traces(known) + _volume_problems(db, host)


def _volume_problems(db: Database, host: Host) -> list[str]:
    """A volume row a crash left half-made or half-deleted, one whose disk is gone, or a
    disk on the host no row accounts for."""
    with db.session() as s:
        rows = {r.id: (r.status, r.name) for r in volume_rows.every(s)}
    disks = host.volumes.on_host()
    problems = [
        f"volume {volume_id} ({name}): left {status} by an interrupted operation"
        for volume_id, (status, name) in sorted(rows.items())
        if status != "ready"
    ]
    problems += [
        f"volume {volume_id} ({name}): recorded, but its disk is not on the host"
        for volume_id, (status, name) in sorted(rows.items())
        if status == "ready" and volume_id not in disks
    ]
    problems += [
        f"volume {volume_id}: a disk on the host with no record"
        for volume_id in sorted(disks - set(rows))
    ]
    return problems
