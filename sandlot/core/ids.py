"""Sandbox ids: short, random and DNS-label safe, since they appear in hostnames."""

from __future__ import annotations

import secrets
import string

ALPHABET = string.ascii_lowercase + string.digits
SANDBOX_ID_PATTERN = r"^sbx-[a-z0-9]{10}$"


def new_sandbox_id() -> str:
    return "sbx-" + "".join(secrets.choice(ALPHABET) for _ in range(10))
