"""Layers on disk: `TEMPLATE_DIR/.layers/ID/{root/, layer.json}`, one per build step or
imported image layer, shared by every template whose history contains it.

A build step's layer is named after its cache key (the parent layers, the instruction
and its inputs), so the same step on the same parent is found instead of run again.
`root/` is in overlayfs's own format (whiteouts are 0:0 character devices, opaque
directories carry `trusted.overlay.opaque`), ready to be stacked as a lower layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandlot.runtime.disks import bytes_used

KEYS_DIR = ".keys"


def cache_key(*parts: object) -> str:
    """The id of the layer a step makes: the same parent and step, the same id."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class LayerStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def find(self, key: str) -> Path | None:
        """The `root/` of the finished layer a step's cache key names, if there is one:
        the one a `--no-cache` build made last for it, else the one named after it."""
        for layer in (self.root / KEYS_DIR / key, self.root / key):
            if (layer / "layer.json").is_file():
                return layer.resolve() / "root"
        return None

    @contextmanager
    def staging(self, layer_id: str) -> Iterator[Path]:
        """An empty `root/` to fill, on the same filesystem so commit() is a rename;
        removed if the block fails or the layer is never committed."""
        staged = self.root / f".staging-{layer_id}-{os.getpid()}-{id(self)}"
        shutil.rmtree(staged, ignore_errors=True)
        (staged / "root").mkdir(parents=True)
        try:
            yield staged / "root"
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def commit(
        self, staged_root: Path, layer_id: str, created_by: str, key: str | None = None
    ) -> Path:
        """Put a filled staging `root/` in place as layer `layer_id`; a layer another
        build finished first with the same id is the same content, and wins. With `key`
        (a step run again although cached), the new layer becomes what the key finds,
        while sandboxes on the old one keep it."""
        staged = staged_root.parent
        meta = {"id": layer_id, "sizeBytes": bytes_used(staged_root), "createdBy": created_by}
        (staged / "layer.json").write_text(json.dumps(meta))
        target = self.root / layer_id
        try:
            staged.rename(target)
        except OSError:
            if not (target / "layer.json").is_file():
                raise
        if key is not None:
            keys = self.root / KEYS_DIR
            keys.mkdir(exist_ok=True)
            link = keys / f".{key}-{os.getpid()}"
            link.unlink(missing_ok=True)
            link.symlink_to(Path("..") / layer_id)
            link.replace(keys / key)
        return target / "root"

    def size(self, layer_root: Path) -> int:
        try:
            return int(json.loads((layer_root.parent / "layer.json").read_text())["sizeBytes"])
        except (OSError, ValueError, KeyError):
            return 0
