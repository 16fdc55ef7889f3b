"""Tenant-named paths resolved beneath a root by the kernel (openat2), on a directory
made here: `..` and absolute symlinks stay inside under IN_ROOT, any symlink is refused
under STRICT, FIFOs are refused before they are read, and reads are bounded."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sandlot.beneath import IN_ROOT, STRICT, Beneath, FileTooLarge, inside


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "outside").write_text("host secret\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("inside\n")
    (root / "abs").symlink_to("/etc/passwd")  # absolute: means the root's own /etc
    (root / "up").symlink_to("../outside")  # climbs out, were it followed on the host
    (root / "dir").symlink_to(str(tmp_path))
    os.mkfifo(root / "pipe")
    return root


def test_paths_read_as_the_sandbox_reads_them() -> None:
    assert inside("/a/../../b/") == "b"
    assert inside("/") == "."
    assert inside("../../etc/passwd") == "etc/passwd"
    with pytest.raises(ValueError, match="NUL"):
        inside("a\x00b")


def test_in_root_keeps_dotdot_and_absolute_links_inside(tree: Path) -> None:
    root = Beneath(tree)
    try:
        assert root.read_bytes("../../etc/passwd", 100) == b"inside\n"
        assert root.read_bytes("abs", 100, resolve=IN_ROOT) == b"inside\n"
        with pytest.raises(FileNotFoundError):  # `../outside` from the root is /outside
            root.read_bytes("up", 100, resolve=IN_ROOT)
    finally:
        root.close()


def test_strict_refuses_every_symlink_on_the_way(tree: Path) -> None:
    root = Beneath(tree)
    try:
        for path in ("abs", "up", "dir/outside"):
            with pytest.raises(OSError) as refused:
                root.read_bytes(path, 100, resolve=STRICT)
            assert refused.value.errno == errno.ELOOP, path
        assert root.lstat("abs").st_size > 0  # the link itself may be looked at
    finally:
        root.close()


def test_fifos_are_refused_and_reads_bounded(tree: Path) -> None:
    (tree / "big").write_bytes(b"x" * 2048)
    root = Beneath(tree)
    try:
        with pytest.raises(IsADirectoryError, match="not a regular file"):
            root.read_bytes("pipe", 100)  # without blocking for a writer
        with pytest.raises(FileTooLarge):
            root.read_bytes("big", 1024)
        assert len(root.read_bytes("big", 2048)) == 2048
    finally:
        root.close()
