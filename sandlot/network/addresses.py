"""Addresses from the private pool, leased through files shared by every server on the host.

A lease is a file named after the address, created exclusively, holding the owner's run
key and sandbox id. Files rather than memory because servers sharing a host (and so the
bridge and pool) must never hand out the same address, and because a restarted server
must find its sandboxes' addresses still taken.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from sandlot.errors import ResourceExhaustedError

LEASE_DIR = Path("/run/sandlot/leases")


class AddressPool:
    def __init__(self, network: ipaddress.IPv4Network, owner_key: str) -> None:
        self.network = network
        self.owner_key = owner_key
        self.gateway = ipaddress.IPv4Interface(f"{network[1]}/{network.prefixlen}")
        self._hosts = list(network.hosts())[1:]  # the first belongs to the bridge
        # Servers sharing the pool start at different places, so an address one of them
        # just released is seldom the next another hands out.
        self._next = secrets.randbelow(len(self._hosts))
        LEASE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)

    def lease(self, sandbox_id: str) -> ipaddress.IPv4Interface:
        for step in range(len(self._hosts)):
            index = (self._next + step) % len(self._hosts)
            address = self._hosts[index]
            try:
                fd = os.open(LEASE_DIR / str(address), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{self.owner_key} {sandbox_id}\n")
            self._next = index + 1
            return ipaddress.IPv4Interface(f"{address}/{self.network.prefixlen}")
        raise ResourceExhaustedError(f"the address pool {self.network} is exhausted")

    def claim(self, sandbox_id: str, address: str) -> None:
        """Re-take an adopted sandbox's address (its lease file may be gone after a reboot)."""
        (LEASE_DIR / address).write_text(f"{self.owner_key} {sandbox_id}\n")

    def release(self, address: str) -> None:
        (LEASE_DIR / address).unlink(missing_ok=True)

    def owned(self) -> Iterator[tuple[str, str]]:
        """(address, sandbox id) of every lease this server holds."""
        for path in LEASE_DIR.iterdir():
            try:
                key, sandbox_id = path.read_text().split()
            except (OSError, ValueError):
                continue
            if key == self.owner_key:
                yield path.name, sandbox_id
