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


def cache_key(*parts: object) -> str:
    """The id of the layer a step makes: the same parent and step, the same id."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class LayerStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def find(self, layer_id: str) -> Path | None:
        """The `root/` of a finished layer, if there is one."""
        layer = self.root / layer_id
        return layer / "root" if (layer / "layer.json").is_file() else None

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

    def commit(self, staged_root: Path, layer_id: str, created_by: str) -> Path:
        """Put a filled staging `root/` in place as layer `layer_id`; a layer another
        build finished first with the same id is the same content, and wins."""
        staged = staged_root.parent
        meta = {"id": layer_id, "sizeBytes": bytes_used(staged_root), "createdBy": created_by}
        (staged / "layer.json").write_text(json.dumps(meta))
        target = self.root / layer_id
        try:
            staged.rename(target)
        except OSError:
            if self.find(layer_id) is None:
                raise
        return target / "root"

    def size(self, layer_root: Path) -> int:
        try:
            return int(json.loads((layer_root.parent / "layer.json").read_text())["sizeBytes"])
        except (OSError, ValueError, KeyError):
            return 0
