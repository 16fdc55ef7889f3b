"""Finding a CRIU that can checkpoint sandboxes on this kernel.

CRIU before 4.1 fails on kernels 6.13 and newer ("Unexpected rt vDSO area bounds"), and
Debian 12 ships 3.17. `scripts/build-criu` builds 4.x from Debian's own source tarball
into `SANDLOT_CRIU_DIR`, which is looked at before `PATH`. Without a usable CRIU, pause
falls back to freezing the sandbox's cgroup and says so (`pauseMode: "freeze"`).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SANDLOT_CRIU_DIR = Path("/usr/local/libexec/sandlot")
MINIMUM = (4, 1)


@dataclass(frozen=True)
class CriuCheck:
    path: Path | None
    version: tuple[int, ...] | None
    problem: str | None
    """Why checkpoints are off, in words an operator can act on; None when they work."""

    @property
    def usable(self) -> bool:
        return self.problem is None


@functools.cache
def find_criu(explicit: str | None = None) -> CriuCheck:
    """The first CRIU ≥ 4.1 among the configured path, Sandlot's own build and PATH."""
    candidates = [explicit] if explicit else [str(SANDLOT_CRIU_DIR / "criu"), "criu"]
    seen: list[str] = []
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is None:
            continue
        version = _version(found)
        if version is not None and version >= MINIMUM:
            return CriuCheck(Path(found), version, None)
        seen.append(f"{found} is {'.'.join(map(str, version or ())) or 'unreadable'}")
    wanted = ".".join(map(str, MINIMUM))
    problem = (
        f"no CRIU ≥ {wanted} found ({'; '.join(seen) or 'none installed'}); "
        "run scripts/build-criu to build one from Debian's source"
    )
    return CriuCheck(None, None, problem)


def _version(binary: str) -> tuple[int, ...] | None:
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"Version:\s*(\d+)\.(\d+)(?:\.(\d+))?", done.stdout)
    if match is None:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)
