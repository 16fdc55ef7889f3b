"""Collecting what sandboxes leave behind, and nothing else."""

from __future__ import annotations

import os
import time

import pytest

from sandlot.runtime.bundle import USERNS_HOST_BASE, USERNS_SIZE
from sandlot.runtime.reaping import is_zombie, reap_orphans

SANDBOX_UIDS = range(USERNS_HOST_BASE, USERNS_HOST_BASE + USERNS_SIZE)


def exited_child(uid: int) -> int:
    """A child that becomes `uid` and exits at once, left uncollected."""
    pid = os.fork()
    if pid == 0:
        os.setuid(uid)
        os._exit(0)
    deadline = time.monotonic() + 5
    while not is_zombie(pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return pid


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a child of a sandbox's uid")
def test_only_zombies_of_sandbox_uids_are_collected() -> None:
    # In a full run this process may have adopted other sandboxes' leftovers: first
    # collect those, so the count below is this test's alone.
    reap_orphans(SANDBOX_UIDS)
    ours = exited_child(0)  # as if asyncio were waiting for it
    orphan = exited_child(USERNS_HOST_BASE + 7)
    try:
        assert reap_orphans(SANDBOX_UIDS) == 1
        assert not os.path.exists(f"/proc/{orphan}")
        assert is_zombie(ours) and os.path.exists(f"/proc/{ours}")
    finally:
        os.waitpid(ours, 0)
