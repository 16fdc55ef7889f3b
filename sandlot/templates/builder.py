"""Build a template from Debian packages with mmdebstrap.

The build runs as root in mmdebstrap's `root` mode against the host's own APT sources,
so it works wherever the host can install packages. Output lines are handed to a
callback so `sandlot serve` and `sandlot template build` can show progress.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
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
) -> Template:
    """Build `recipe` and make it current; `uid_offset` is where the runtime maps container root."""
    if shutil.which("mmdebstrap") is None:
        raise TemplateBuildError("mmdebstrap is not installed: `apt-get install mmdebstrap`")
    digest = recipe.digest()
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
            rootfs=rootfs,
            env=recipe.env,
            workdir=recipe.workdir,
            size_bytes=size,
        )
        return store.install(staged, template)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
