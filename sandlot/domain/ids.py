"""Sandbox and snapshot ids: short, random and DNS-label safe, since they appear in hostnames."""

from __future__ import annotations

import secrets
import string

ALPHABET = string.ascii_lowercase + string.digits
SANDBOX_ID_PATTERN = r"^sbx-[a-z0-9]{10}$"


def new_sandbox_id() -> str:
    return "sbx-" + _random_part()


def new_snapshot_id() -> str:
    return "snap-" + _random_part()


def new_build_id() -> str:
    return "bld-" + _random_part()


def new_volume_id() -> str:
    return "vol-" + _random_part()


def new_patch_id() -> str:
    return "patch-" + _random_part()


def _random_part() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(10))
