"""Templates on disk: `TEMPLATE_DIR/NAME/DIGEST/{rootfs/, template.json}` and `NAME/current`.

Content-addressed so a rebuilt template never pulls the lower layer out from under a
running sandbox: the new digest lands beside the old one and `current` is switched
atomically. A digest directory is renamed into place only once complete, so a crash
mid-build never leaves a half template that sandboxes would use.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sandlot.errors import TemplateNotFoundError


@dataclass(frozen=True)
class Template:
    name: str
    digest: str
    rootfs: Path
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/root"
    size_bytes: int = 0


class TemplateStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, name: str) -> Template:
        current = self.root / name / "current"
        try:
            meta = json.loads((current / "template.json").read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError, OSError):
            raise TemplateNotFoundError(
                f"template {name!r} does not exist; `sandlot template list` shows the "
                f"available ones and `sandlot template build {name}` builds a known recipe",
                details={"template": name},
            ) from None
        return Template(
            name=name,
            digest=meta["digest"],
            rootfs=current.resolve() / "rootfs",
            env=meta.get("env", {}),
            workdir=meta.get("workdir", "/root"),
            size_bytes=meta.get("sizeBytes", 0),
        )

    def exists(self, name: str, digest: str | None = None) -> bool:
        try:
            template = self.get(name)
        except TemplateNotFoundError:
            return False
        return digest is None or template.digest == digest

    def list(self) -> list[Template]:
        if not self.root.is_dir():
            return []
        names = sorted(p.name for p in self.root.iterdir() if (p / "current").exists())
        return [self.get(name) for name in names]

    def staging_dir(self, name: str, digest: str) -> Path:
        """A fresh directory on the same filesystem, so install() is a rename."""
        staged = self.root / name / f".staging-{digest}-{os.getpid()}"
        staged.mkdir(parents=True)
        return staged

    def install(self, staged: Path, template: Template) -> Template:
        """Move a fully built `staged/rootfs` into place and make it the current version."""
        meta = {
            "name": template.name,
            "digest": template.digest,
            "env": template.env,
            "workdir": template.workdir,
            "sizeBytes": template.size_bytes,
        }
        (staged / "template.json").write_text(json.dumps(meta, indent=2))
        target = self.root / template.name / template.digest
        if target.exists():
            raise FileExistsError(
                f"template {template.name} {template.digest} is already installed"
            )
        staged.rename(target)
        link = self.root / template.name / f".current-{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(template.digest)
        link.replace(self.root / template.name / "current")
        return self.get(template.name)
