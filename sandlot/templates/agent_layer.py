"""The layer that carries the agent's own Python into every sandbox, whatever its template.

The agent is stdlib-only Python. Rather than refuse templates without a usable
`python3` (most images people already have: `node`, `alpine`, distroless), every
sandbox gets Debian 12's Python 3.11 from the base template, with the C library it was
linked against, at `/.sandlot/python` as the top read-only overlay layer. It is started
through its own dynamic loader with `--library-path`, so nothing of it leaks into the
environment of the commands the agent runs, and a sandbox that removes or breaks its
own `python3` keeps a working agent. The cost is about 20 MiB of disk once per host.
"""

from __future__ import annotations

import compileall
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from sandlot.templates.ownership import shift_ownership

PYTHON_DIR = ".sandlot/python"
"""Where the agent's Python sits inside a sandbox, relative to its root (the runtime's
agent command names the same place)."""

AGENT_LAYER_DIR = ".agent"

# The agent needs none of these; they are most of the standard library's size.
STDLIB_SKIPPED = (
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "site-packages",
    "dist-packages",
    "config-3.11-x86_64-linux-gnu",
)


class AgentLayerError(RuntimeError):
    pass


def agent_layer(templates_root: Path, source_root: Path, uid_offset: int) -> Path:
    """The layer (its `root/` directory) built from `source_root`'s Python, building it
    the first time; concurrent callers end up with the same complete layer."""
    python = _interpreter(source_root)
    digest = hashlib.sha256(python.read_bytes()).hexdigest()[:16]
    layer = templates_root / AGENT_LAYER_DIR / digest
    if (layer / "root").is_dir():
        return layer / "root"
    staged = templates_root / AGENT_LAYER_DIR / f".staging-{digest}-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    try:
        _populate(staged / "root", source_root, python)
        shift_ownership(staged / "root", uid_offset)
        try:
            staged.rename(layer)
        except OSError:
            if not (layer / "root").is_dir():  # not a concurrent builder's finished layer
                raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return layer / "root"


def is_agent_layer(layer: Path) -> bool:
    return layer.parent.parent.name == AGENT_LAYER_DIR


def _interpreter(source_root: Path) -> Path:
    for candidate in sorted((source_root / "usr/bin").glob("python3.[0-9]*")):
        if candidate.is_file() and not candidate.is_symlink() and "-" not in candidate.name:
            return candidate
    raise AgentLayerError(
        f"{source_root} has no python3 to give the agent; rebuild the base template "
        "(`sandlot template build base --force`)"
    )


def _populate(root: Path, source_root: Path, python: Path) -> None:
    target = root / PYTHON_DIR
    for sub in ("bin", "lib"):
        (target / sub).mkdir(parents=True)
    for mount_point in ("agent", "run"):
        (root / ".sandlot" / mount_point).mkdir()
    shutil.copy2(python, target / "bin" / "python3")
    stdlib = source_root / "usr/lib" / python.name
    shutil.copytree(
        stdlib,
        target / "lib" / python.name,
        symlinks=True,
        ignore=shutil.ignore_patterns(*STDLIB_SKIPPED, "__pycache__"),
    )
    dynload = sorted((stdlib / "lib-dynload").glob("*.so"))
    for soname, library in _shared_libraries(source_root, [python, *dynload]).items():
        shutil.copy2(library, target / "lib" / soname)
    loader = next((target / "lib").glob("ld-linux*.so*"), None)
    if loader is None:
        raise AgentLayerError(f"no dynamic loader found for {python} in {source_root}")
    # One name on every architecture, so the runtime's agent command never changes.
    loader.rename(target / "lib" / "ld.so")
    compileall.compile_dir(target / "lib" / python.name, quiet=1, workers=0)


def _shared_libraries(source_root: Path, binaries: list[Path]) -> dict[str, Path]:
    """What `binaries` link against (by the name they ask for), resolved inside
    `source_root` with its own ldd."""
    inside = ["/" + str(b.relative_to(source_root)) for b in binaries]
    # ldd answers 1 when some argument is not dynamic, and still lists the others.
    listing = _run_inside(source_root, "ldd", *inside, ok=(0, 1))
    asked: dict[str, str] = {}
    for line in listing.splitlines():
        words = line.split()
        path = words[2] if len(words) >= 3 and words[1] == "=>" else words[0] if words else ""
        if path.startswith("/") and not line.endswith(":"):  # not a file's heading
            asked[Path(path).name] = path
    # Symlinks inside the root may be absolute: resolve them there, not on the host.
    names = list(asked)
    real = _run_inside(source_root, "readlink", "-f", *(asked[n] for n in names)).split()
    return {name: source_root / path.lstrip("/") for name, path in zip(names, real, strict=True)}


def _run_inside(source_root: Path, *argv: str, ok: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run(
        ["chroot", str(source_root), *argv],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode not in ok:
        raise AgentLayerError(f"{argv[0]} in {source_root} failed: {done.stderr.strip()}")
    return done.stdout
