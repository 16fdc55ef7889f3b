"""What a Debian-built template is made of, and the digest that names its content."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

BASE_PACKAGES = (
    "python3",
    "nodejs",
    "npm",
    "git",
    "curl",
    "ca-certificates",
    "procps",
    "build-essential",
    "bash",
    "openssh-sftp-server",
    "rsync",
)


@dataclass(frozen=True)
class Recipe:
    name: str
    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = BASE_PACKAGES
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/root"

    def digest(self) -> str:
        """Same recipe, same digest: a template is rebuilt only when what it holds changes."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


RECIPES: dict[str, Recipe] = {"base": Recipe(name="base")}
