"""A user namespace made for one sandbox: owned by the uid allocated to it, mapped as
runc would map it, kept by its bind mount, and its owner read back from the kernel so a
restarted server knows which owners are taken."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sandlot.runtime.bundle import USERNS_HOST_BASE, USERNS_SIZE
from sandlot.runtime.mounts import unmount
from sandlot.runtime.userns import OWNER_BASE, NamespaceOwners, make_user_namespace, owner_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes user namespaces")


def test_a_namespace_made_for_a_sandbox_has_its_owner_and_map(tmp_path: Path) -> None:
    owners = NamespaceOwners()
    owner = owners.allocate()
    ns_file = tmp_path / "userns"
    make_user_namespace(ns_file, owner, USERNS_HOST_BASE, USERNS_SIZE)
    try:
        assert owner_of(ns_file) == owner
        inside = subprocess.run(
            ["nsenter", f"--user={ns_file}", "cat", "/proc/self/uid_map"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert inside.stdout.split() == ["0", str(USERNS_HOST_BASE), str(USERNS_SIZE)]
        # A server started now counts that owner as taken.
        again = NamespaceOwners([ns_file, tmp_path / "missing"])
        assert len(again) == 1
        assert again.allocate() != owner
    finally:
        unmount(ns_file)
    assert owner_of(ns_file) is None  # a plain file again: nothing holds the namespace


def test_owners_are_distinct_and_reused_only_once_released() -> None:
    owners = NamespaceOwners()
    first, second = owners.allocate(), owners.allocate()
    assert first != second and min(first, second) >= OWNER_BASE
    owners.release(first)
    assert len(owners) == 1
    taken = {owners.allocate() for _ in range(3)}
    assert second not in taken
