"""Snapshot copies of a sandbox's disk image: reflinks where the filesystem has them,
only the blocks in use elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandlot.runtime.disks import copy_disk, create_disk


def _sharing(path: Path) -> bool:
    extents = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True)
    return "shared" in extents.stdout


@pytest.fixture
def xfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a loop filesystem")
    if shutil.which("mkfs.xfs") is None:
        pytest.skip("mkfs.xfs is not installed (scripts/setup installs xfsprogs)")
    image, mount = tmp_path / "xfs.img", tmp_path / "xfs"
    with image.open("wb") as f:
        f.truncate(512 * 2**20)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_copy_on_xfs_shares_blocks(xfs: Path) -> None:
    source = xfs / "disk.img"
    create_disk(source, 1024, owner=100000)
    copy_disk(source, xfs / "copy.img")
    assert (xfs / "copy.img").stat().st_size == 1024 * 2**20
    assert _sharing(xfs / "copy.img")


def test_copy_elsewhere_keeps_the_image_sparse(tmp_path: Path) -> None:
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed")
    source = tmp_path / "disk.img"
    create_disk(source, 1024, owner=100000)
    copy_disk(source, tmp_path / "copy.img")
    copied = (tmp_path / "copy.img").stat()
    assert copied.st_size == 1024 * 2**20
    assert copied.st_blocks * 512 <= source.stat().st_blocks * 512 + 2**20
