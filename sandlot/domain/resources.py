"""What a sandbox may use: its limits, their bounds, and "4GB"-style sizes."""

from __future__ import annotations

import re
from dataclasses import dataclass

VCPUS_MIN, VCPUS_MAX = 1, 8
MEMORY_MB_MIN, MEMORY_MB_MAX = 128, 16 * 1024
DISK_MB_MIN, DISK_MB_MAX = 1024, 100 * 1024
DEFAULT_VCPUS, DEFAULT_MEMORY_MB, DEFAULT_DISK_MB = 1, 512, 10 * 1024
SANDBOX_PIDS = 4096
"""Every sandbox's pids.max."""


@dataclass(frozen=True)
class Resources:
    vcpus: int
    memory_mb: int
    disk_mb: int
    pids: int = SANDBOX_PIDS


_UNITS_MB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt])?i?b?\s*$", re.IGNORECASE)


def parse_size_mb(text: str) -> int:
    """ "4GB", "4GiB", "512M", "512" (MiB) -> MiB. Units are binary, as memory is sold."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size; write it like 512MB or 4GB")
    number, unit = match.groups()
    return int(float(number) * _UNITS_MB[(unit or "m").lower()])


def check_range(name: str, value: int, low: int, high: int, unit: str = "") -> int:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low}{unit} and {high}{unit}, got {value}{unit}")
    return value
