"""The CPUs this host offers sandboxes."""

from __future__ import annotations

import os


def host_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))
