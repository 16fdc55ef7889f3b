"""What the built-in templates are made of, and the digest that names their content."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

BASE_PACKAGES = (
    "python3",
    "python3-pip",
    "python3-venv",
    "nodejs",
    "npm",
    "git",
    "curl",
    "wget",
    "ca-certificates",
    "procps",
    "build-essential",
    "bash",
    "openssh-sftp-server",
    "openssh-client",
    "rsync",
    "jq",
    "less",
    "nano",
    "vim-tiny",
    "file",
    "tree",
    "unzip",
    "zip",
    "xz-utils",
    "iproute2",
    "netcat-openbsd",
    "sqlite3",
)

PYTHON_PACKAGES = (
    "python3-dev",
    "ipython3",
    "python3-numpy",
    "python3-requests",
    "python3-pytest",
)

NODE_PACKAGES = ("node-typescript", "yarnpkg")


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


RECIPES: dict[str, Recipe] = {
    "base": Recipe(name="base"),
    "python": Recipe(name="python", packages=BASE_PACKAGES + PYTHON_PACKAGES),
    "node": Recipe(
        name="node", packages=BASE_PACKAGES + NODE_PACKAGES, env={"NODE_ENV": "development"}
    ),
}
