"""Workspace volumes as values: what a sandbox asks to mount, and the rules a mount path
and a volume name follow. Checked here, once, for the API, the SDK's callers and core.
"""

from __future__ import annotations

import itertools
import posixpath
import re
from dataclasses import dataclass

from sandlot.errors import InvalidConfigError

VOLUME_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
DEFAULT_VOLUME_MB = 10 * 1024
"""The size of a volume the first mount of an unknown name creates."""
MAX_VOLUME_MB = 1024 * 1024
MAX_MOUNTS = 16
RESERVED_PATHS = ("/proc", "/sys", "/dev", "/.sandlot", "/etc/hosts", "/etc/hostname")
"""Where a volume may not go: the kernel's own trees, and Sandlot's inside a sandbox."""


@dataclass(frozen=True)
class VolumeMount:
    """One volume of the caller's organisation, at `path` inside the sandbox."""

    volume: str
    path: str
    read_only: bool = False


def check_volume_name(name: str) -> str:
    if not re.match(VOLUME_NAME, name):
        raise InvalidConfigError(
            f"volume name {name!r} must be 1-63 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit",
            details={"volume": name},
        )
    return name


def check_mounts(mounts: list[VolumeMount]) -> list[VolumeMount]:
    """The mounts with their paths normalised; refuses `/`, the reserved trees, two
    mounts of one path or nested in each other, and too many."""
    if len(mounts) > MAX_MOUNTS:
        raise InvalidConfigError(
            f"a sandbox mounts at most {MAX_MOUNTS} volumes, not {len(mounts)}",
            details={"limit": MAX_MOUNTS},
        )
    checked = [
        VolumeMount(check_volume_name(m.volume), mount_path(m.path), m.read_only) for m in mounts
    ]
    paths = sorted(m.path for m in checked)
    for outer, inner in itertools.pairwise(paths):
        if inner == outer or inner.startswith(outer + "/"):
            raise InvalidConfigError(
                f"mount paths {outer!r} and {inner!r} overlap; give each volume a path of "
                "its own, neither inside the other",
                details={"paths": [outer, inner]},
            )
    return checked


def mount_path(path: str) -> str:
    if not path.startswith("/"):
        raise InvalidConfigError(
            f"mount path {path!r} must be absolute, like /workspace", details={"path": path}
        )
    clean = posixpath.normpath(path)
    clean = "/" + clean.lstrip("/")  # normpath keeps a leading "//"
    if clean == "/" or any(clean == r or clean.startswith(r + "/") for r in RESERVED_PATHS):
        raise InvalidConfigError(
            f"a volume cannot be mounted at {clean!r}: not at /, nor under "
            f"{', '.join(RESERVED_PATHS)}",
            details={"path": path},
        )
    if "\0" in clean or len(clean) > 1024:
        raise InvalidConfigError("mount path is not a usable path", details={"path": path[:64]})
    return clean
