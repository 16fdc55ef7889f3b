"""Workspace volumes on the host: one sparse ext4 image each, mounted once under the
data directory and bound into every sandbox that mounts it.

An image makes a volume's size a hard stop (ENOSPC inside, the host's disk untouched)
and costs only what is written. Its root belongs to the uid every sandbox's root maps
to, so a file uid 1000 writes in one sandbox is uid 1000 in the next. Files reached
without a sandbox (the volume files API) are resolved beneath the mounted root by the
kernel: no name a tenant chose, and no symlink a sandbox left there, leads elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from sandlot.agent.protocol import EntryInfo
from sandlot.beneath import IN_ROOT, STRICT, Beneath, inside
from sandlot.runtime.disks import create_disk, disk_usage, mount_disk
from sandlot.runtime.mounts import mounts_under, unmount

CHUNK = 1 << 20


class VolumeDisks:
    def __init__(self, root: Path, mounts_root: Path, owner: int) -> None:
        self.root = root
        """Each volume's disk image, in a directory of its own named by its id."""
        self.mounts_root = mounts_root
        """Where each is mounted: a path the sandboxes' user namespaces can traverse
        (CRIU opens it from inside one to restore a sandbox that binds it), and never
        below a directory anything removes whole."""
        self.owner = owner
        """The host uid of root inside every sandbox: a volume's files belong to it."""
        root.mkdir(parents=True, exist_ok=True)

    def mount_point(self, volume_id: str) -> Path:
        return self.mounts_root / volume_id

    def create(self, volume_id: str, size_mb: int) -> None:
        """Make the volume's image and mount it; again after a crash, from the start."""
        self.remove(volume_id)
        home = self.root / volume_id
        home.mkdir(mode=0o700)
        create_disk(home / "disk.img", size_mb, self.owner)
        self.ensure_mounted(volume_id)

    def ensure_mounted(self, volume_id: str) -> None:
        point = self.mount_point(volume_id)
        if point.is_mount():
            return
        self.mounts_root.mkdir(mode=0o711, parents=True, exist_ok=True)
        point.mkdir(mode=0o755, exist_ok=True)
        mount_disk(self.root / volume_id / "disk.img", point)

    def remove(self, volume_id: str) -> None:
        """Unmount and delete the volume. The mount point is only ever rmdir'd: were
        the unmount to fail, nothing would descend into the volume's files."""
        point = self.mount_point(volume_id)
        for mounted in mounts_under(point):
            unmount(mounted)
        with contextlib.suppress(FileNotFoundError):
            point.rmdir()
        shutil.rmtree(self.root / volume_id, ignore_errors=True)

    def close(self) -> None:
        """Remove the directory of mount points if no volume is mounted there."""
        with contextlib.suppress(OSError):
            self.mounts_root.rmdir()

    def on_host(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir()}

    def usage(self, volume_id: str) -> tuple[int, int]:
        """(bytes used, bytes in all) of the mounted volume."""
        return disk_usage(self.mount_point(volume_id))

    # ---- files, without a sandbox ---------------------------------------------------

    def read(self, volume_id: str, path: str) -> Iterator[bytes]:
        """The file's chunks; opened (and a missing file refused) before the first."""
        with self._root(volume_id) as tree:
            fd = tree.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
        except BaseException:
            os.close(fd)
            raise
        return _chunks(fd)

    def write(self, volume_id: str, path: str, chunks: Iterator[bytes], mode: int) -> EntryInfo:
        """Write the file (its parent directories made), owned by the sandboxes' root;
        nothing on the way may be a symlink."""
        directory, name, clean = self._parent(volume_id, path, make=True)
        try:
            fd = os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                mode,
                dir_fd=directory,
            )
            try:
                os.fchown(fd, self.owner, self.owner)
                os.fchmod(fd, mode)
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            return _entry(directory, name, clean)
        finally:
            os.close(directory)

    def list(self, volume_id: str, path: str) -> list[EntryInfo]:
        with self._root(volume_id) as tree:
            fd = tree.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            base = ("/" + inside(path)).rstrip("/")
            return [_entry(fd, n, f"{base}/{n}") for n in sorted(os.listdir(fd))]
        finally:
            os.close(fd)

    def stat(self, volume_id: str, path: str) -> EntryInfo:
        """The entry itself; a symlink is reported, not followed."""
        directory, name, clean = self._parent(volume_id, path, resolve=IN_ROOT)
        try:
            return _entry(directory, name, clean)
        finally:
            os.close(directory)

    def mkdir(self, volume_id: str, path: str, parents: bool) -> EntryInfo:
        directory, name, clean = self._parent(volume_id, path, make=parents)
        try:
            os.mkdir(name, 0o755, dir_fd=directory)
            os.chown(name, self.owner, self.owner, dir_fd=directory, follow_symlinks=False)
            return _entry(directory, name, clean)
        finally:
            os.close(directory)

    def delete(self, volume_id: str, path: str, recursive: bool) -> None:
        directory, name, _ = self._parent(volume_id, path)
        try:
            st = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if recursive:
                    shutil.rmtree(name, dir_fd=directory)
                else:
                    os.rmdir(name, dir_fd=directory)
            else:
                os.unlink(name, dir_fd=directory)
        finally:
            os.close(directory)

    def _root(self, volume_id: str) -> contextlib.closing[Beneath]:
        """The mounted volume's root, held open for one lookup."""
        return contextlib.closing(Beneath(self.mount_point(volume_id)))

    def _parent(
        self, volume_id: str, path: str, *, make: bool = False, resolve: int = STRICT
    ) -> tuple[int, str, str]:
        """An fd of the directory `path` names an entry of, the entry's name, and the
        path as the volume sees it. `make` creates missing directories on the way (no
        symlink allowed); otherwise the lookup follows `resolve`."""
        clean = "/" + inside(path)
        parent, _, name = clean.rpartition("/")
        if not name:
            raise IsADirectoryError(errno.EISDIR, "the volume's root is a directory", path)
        with self._root(volume_id) as tree:
            if make:
                directory = self._directories(tree, parent)
            else:
                flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
                directory = tree.open(parent or "/", flags, resolve=resolve)
        return directory, name, clean

    def _directories(self, tree: Beneath, path: str) -> int:
        """An fd of `path`, each missing directory on the way made (and given to the
        sandboxes' root); a symlink anywhere is refused."""
        fd = os.dup(tree.fd)
        try:
            for part in inside(path).split("/"):
                if part in ("", "."):
                    continue
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    os.chown(part, self.owner, self.owner, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass
                following = os.open(
                    part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
                os.close(fd)
                fd = following
            return fd
        except BaseException:
            os.close(fd)
            raise


def _chunks(fd: int) -> Iterator[bytes]:
    try:
        while chunk := os.read(fd, CHUNK):
            yield chunk
    finally:
        os.close(fd)


def _entry(directory: int, name: str, path: str) -> EntryInfo:
    st = os.stat(name, dir_fd=directory, follow_symlinks=False)
    kind: Literal["file", "dir", "symlink"] = (
        "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
    )
    return EntryInfo(
        name=name,
        path=path,
        type=kind,
        size=st.st_size,
        mode=stat.S_IMODE(st.st_mode),
        mtime=st.st_mtime,
        symlink_target=os.readlink(name, dir_fd=directory) if kind == "symlink" else None,
    )
