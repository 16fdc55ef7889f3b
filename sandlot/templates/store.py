"""Templates on disk: `TEMPLATE_DIR/NAME/DIGEST/template.json` and `NAME/current`.

Names are per organisation: built-in templates (recipes, anything the operator makes)
live at the top, and an organisation's own under `.orgs/ORG/NAME`, so two organisations
may each have a `web` and neither can learn that the other has one. An organisation
asking for a name gets its own template of that name, else the built-in one.

A template is a stack of read-only layers plus how to start from it (env, workdir, user,
start and ready commands, ports). Debian-built templates keep their one layer beside
their metadata (`NAME/DIGEST/rootfs`); built and imported ones refer to layers under
`TEMPLATE_DIR/.layers/ID/root`, shared between every template whose history they are
part of. Layer paths are stored relative to TEMPLATE_DIR so the directory can move.

Content-addressed so a rebuilt template never pulls a layer out from under a running
sandbox: the new digest lands beside the old one and `current` is switched atomically.
A digest directory is renamed into place only once complete, so a crash mid-build never
leaves a half template that sandboxes would use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandlot.errors import TemplateNotFoundError
from sandlot.templates.agent_layer import agent_layer

LAYERS_DIR = ".layers"
ORGS_DIR = ".orgs"
ORG_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
COLLECT_GRACE_SECONDS = 3600.0
AGENT_SOURCE = "base"
"""The template whose Python the agent layer is made of."""


@dataclass(frozen=True)
class Template:
    name: str
    digest: str
    layers: tuple[Path, ...]
    """Read-only root layers in overlayfs order: the top one first."""
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/root"
    user: str = ""
    """Who commands run as when the caller does not say; "" is root."""
    start_command: tuple[str, ...] = ()
    """Started in the background when a sandbox is created (ENTRYPOINT + CMD)."""
    ready_command: str | None = None
    """A shell command create runs until it succeeds before answering."""
    ports: tuple[int, ...] = ()
    size_bytes: int = 0
    source: str = "debian"
    """How it was made: `debian` (a recipe), `build` (a Sandlotfile) or `import`."""
    owner: str | None = None
    """The organisation that made it; None for templates every organisation may use."""
    created_at: str = ""

    def visible_to(self, org_id: str | None) -> bool:
        """Built-in templates are everyone's; built and imported ones their owner's
        (None asks as the operator, who sees all)."""
        return org_id is None or self.owner in (None, org_id)

    @property
    def lowerdir(self) -> str:
        """The layers as overlayfs' `lowerdir` (and as stored with a sandbox)."""
        return ":".join(str(p) for p in self.layers)

    def to_meta(self, root: Path) -> dict[str, Any]:
        return {
            "name": self.name,
            "digest": self.digest,
            "layers": [os.path.relpath(p, root) for p in self.layers],
            "env": self.env,
            "workdir": self.workdir,
            "user": self.user,
            "startCommand": list(self.start_command),
            "readyCommand": self.ready_command,
            "ports": list(self.ports),
            "sizeBytes": self.size_bytes,
            "source": self.source,
            "owner": self.owner,
            "createdAt": self.created_at,
        }


def _subdirs(parent: Path) -> tuple[Path, ...]:
    """`parent`'s entries by name, leaving out the dot-named ones Sandlot keeps there."""
    if not parent.is_dir():
        return ()
    return tuple(sorted(p for p in parent.iterdir() if not p.name.startswith(".")))


def layers_of(lowerdir: str) -> tuple[Path, ...]:
    return tuple(Path(p) for p in lowerdir.split(":") if p)


class TemplateStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._agent_layer: Path | None = None

    def agent_layer(self, uid_offset: int) -> Path:
        """The top layer of every sandbox (the agent's Python), made from the base
        template's the first time it is asked for."""
        if self._agent_layer is None or not self._agent_layer.is_dir():
            source = self.get(AGENT_SOURCE).layers[-1]
            self._agent_layer = agent_layer(self.root, source, uid_offset)
        return self._agent_layer

    @property
    def layers_root(self) -> Path:
        return self.root / LAYERS_DIR

    def _dir(self, name: str, owner: str | None) -> Path:
        """Where template `name` of `owner` (None: a built-in one) lives."""
        if owner is None:
            return self.root / name
        if not ORG_ID.match(owner):
            raise ValueError(f"not an organisation id: {owner!r}")
        return self.root / ORGS_DIR / owner / name

    def _found(self, name: str, org: str | None, leaf: str) -> Template | None:
        """The organisation's own `name` if it has one, else the built-in one."""
        if org is not None:
            own = self._read(self._dir(name, org) / leaf)
            if own is not None:
                return own
        return self._read(self._dir(name, None) / leaf)

    def get(self, name: str, org: str | None = None) -> Template:
        """The template `name` as organisation `org` sees it (None: a built-in one)."""
        template = self._found(name, org, "current")
        if template is None:
            raise TemplateNotFoundError(
                f"template {name!r} does not exist; `sandlot template list` shows the "
                f"available ones",
                details={"template": name},
            )
        return template

    def version(self, name: str, digest: str, org: str | None = None) -> Template | None:
        """One version of a template, the current one or an older one still on disk."""
        return self._found(name, org, digest)

    def _read(self, directory: Path) -> Template | None:
        try:
            meta = json.loads((directory / "template.json").read_text())
            version = directory.resolve()
        except (FileNotFoundError, NotADirectoryError, ValueError, OSError):
            return None
        # Templates from before layers kept their one layer in `rootfs`.
        layers = meta.get("layers") or [os.path.relpath(version / "rootfs", self.root)]
        return Template(
            name=meta["name"],
            digest=meta["digest"],
            layers=tuple(self.root / p for p in layers),
            env=meta.get("env", {}),
            workdir=meta.get("workdir", "/root"),
            user=meta.get("user", ""),
            start_command=tuple(meta.get("startCommand", ())),
            ready_command=meta.get("readyCommand"),
            ports=tuple(meta.get("ports", ())),
            size_bytes=meta.get("sizeBytes", 0),
            source=meta.get("source", "debian"),
            owner=meta.get("owner"),
            created_at=meta.get("createdAt", ""),
        )

    def exists(self, name: str, digest: str | None = None) -> bool:
        try:
            template = self.get(name)
        except TemplateNotFoundError:
            return False
        return digest is None or template.digest == digest

    def list(self) -> list[Template]:
        """Every template: the built-in ones, then each organisation's."""
        found = []
        for directory in self._template_dirs():
            template = self._read(directory / "current")
            if template is not None:
                found.append(template)
        return found

    def _template_dirs(self) -> tuple[Path, ...]:
        """Each template's directory, built-in ones first, in name order."""
        orgs = _subdirs(self.root / ORGS_DIR)
        return (*_subdirs(self.root), *(d for org in orgs for d in _subdirs(org)))

    def staging_dir(self, name: str, digest: str, owner: str | None = None) -> Path:
        """A fresh directory on the same filesystem, so install() is a rename."""
        staged = self._dir(name, owner) / f".staging-{digest}-{os.getpid()}"
        staged.mkdir(parents=True)
        return staged

    def install(self, staged: Path, template: Template) -> Template:
        """Move a complete `staged` version (its rootfs, if it has one) into place and make
        it the current version. Installing a digest already there just makes it current."""
        (staged / "template.json").write_text(json.dumps(template.to_meta(self.root), indent=2))
        home = self._dir(template.name, template.owner)
        target = home / template.digest
        # A Debian-built layer lives inside the version directory being moved.
        if not target.exists():
            staged.rename(target)
        else:
            shutil.rmtree(staged, ignore_errors=True)
        link = home / f".current-{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(template.digest)
        link.replace(home / "current")
        return self.get(template.name, template.owner)

    def remove(self, name: str, owner: str | None = None) -> None:
        """Forget a template: it can no longer be started from, but versions and layers
        stay on disk until `collect` finds nothing uses them."""
        (self._dir(name, owner) / "current").unlink(missing_ok=True)

    def collect(self, in_use: set[Path], grace: float = COLLECT_GRACE_SECONDS) -> int:
        """Delete template versions and layers that no template and nothing in `in_use`
        (layers of live sandboxes and snapshots) refers to; returns how many went.

        Anything younger than `grace` seconds stays: a build in progress (in this
        server or another sharing the directory) has layers no template names yet."""
        cutoff = time.time() - grace
        keep = {p.resolve() for p in in_use}
        for template in self.list():
            keep.update(p.resolve() for p in template.layers)
        removed = 0
        for directory in self._template_dirs():
            current = (
                (directory / "current").resolve() if (directory / "current").exists() else None
            )
            for version in directory.iterdir():
                if version.name.startswith(".") or version.name == "current":
                    continue
                if (
                    version.resolve() == current
                    or (version / "rootfs").resolve() in keep
                    or version.stat().st_mtime > cutoff
                ):
                    continue
                shutil.rmtree(version, ignore_errors=True)
                removed += 1
            if current is None and not any(directory.iterdir()):
                directory.rmdir()  # never a directory a build is staging in
        if self.layers_root.is_dir():
            for layer in self.layers_root.iterdir():
                if (
                    layer.name.startswith(".")
                    or (layer / "root").resolve() in keep
                    or layer.stat().st_mtime > cutoff
                ):
                    continue
                shutil.rmtree(layer, ignore_errors=True)
                removed += 1
        return removed
