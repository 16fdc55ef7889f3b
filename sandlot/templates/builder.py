"""Build a template from Debian packages with mmdebstrap.

The build runs as root in mmdebstrap's `root` mode against the host's own APT sources,
so it works wherever the host can install packages. Output lines are handed to a
callback so `sandlot serve` and `sandlot template build` can show progress.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sandlot.templates.ownership import shift_ownership
from sandlot.templates.recipe import Recipe
from sandlot.templates.store import Template, TemplateStore

HOST_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))

EXCLUDED_PATHS = (
    "/usr/share/man/*",
    "/usr/share/doc/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)


class TemplateBuildError(RuntimeError):
    pass


def mmdebstrap_command(recipe: Recipe, target: Path) -> list[str]:
    cmd = [
        "mmdebstrap",
        "--mode=root",
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.packages)}",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        '--aptopt=APT::Install-Recommends "false"',
    ]
    cmd += [f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDED_PATHS]
    # Keep the copyright files the licences ask for.
    cmd.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
    cmd += [
        '--customize-hook=mkdir -p "$1/workspace" "$1/.sandlot"',
        recipe.suite,
        str(target),
    ]
    sources = next((p for p in HOST_SOURCES if p.is_file() and p.stat().st_size), None)
    if sources is not None:
        cmd.append(str(sources))
    return cmd


def build_template(
    recipe: Recipe,
    store: TemplateStore,
    *,
    uid_offset: int,
    on_progress: Callable[[str], None] = lambda line: None,
    force: bool = False,
) -> Template:
    """Build `recipe` and make it current; `uid_offset` is where the runtime maps container root.

    Unchanged inputs give the installed version back at once. `force` builds anew (to
    take the archive's updates), under a digest of its own so sandboxes on the old
    version keep their layer."""
    digest = recipe.digest()
    if force:
        digest = hashlib.sha256(f"{digest} {time.time_ns()}".encode()).hexdigest()[:16]
    elif store.exists(recipe.name, digest):
        on_progress(f"template {recipe.name} {digest} is up to date")
        return store.get(recipe.name)
    elif (previous := store.version(recipe.name, digest)) is not None:
        # Built before, then replaced: make it current again.
        return store.install(store.staging_dir(recipe.name, digest), previous)
    if shutil.which("mmdebstrap") is None:
        raise TemplateBuildError("mmdebstrap is not installed: `apt-get install mmdebstrap`")
    staged = store.staging_dir(recipe.name, digest)
    try:
        rootfs = staged / "rootfs"
        proc = subprocess.Popen(
            mmdebstrap_command(recipe, rootfs),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-19:], line]
            on_progress(line)
        if proc.wait() != 0:
            raise TemplateBuildError(
                f"mmdebstrap failed for template {recipe.name!r}:\n" + "\n".join(tail)
            )
        on_progress("shifting ownership into the sandbox user namespace")
        shift_ownership(rootfs, uid_offset)
        size = sum(
            f.stat().st_size for f in rootfs.rglob("*") if f.is_file() and not f.is_symlink()
        )
        template = Template(
            name=recipe.name,
            digest=digest,
            layers=(store.root / recipe.name / digest / "rootfs",),
            env=recipe.env,
            workdir=recipe.workdir,
            size_bytes=size,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        return store.install(staged, template)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
