"""Apply one layer tar to a directory in overlayfs's own format, refusing anything unsafe.

The directory becomes an overlay lower layer, so OCI whiteouts are converted as they
arrive: `.wh.NAME` becomes the 0:0 character device overlayfs reads as "NAME is
deleted", and `.wh..wh..opq` becomes the `trusted.overlay.opaque` xattr on its
directory. Ownership is shifted into the sandboxes' user-namespace range on the way
in, as `ownership.shift_ownership` does for built templates.

Every path is resolved one component at a time from a directory descriptor with
O_NOFOLLOW, and every change is made relative to the parent's descriptor, so no member
can reach outside the layer: not by `..`, not by an absolute name, and not through a
symlink an earlier member planted (`a -> /etc`, then `a/passwd`). The tar is read as a
stream, member by member; tarfile's own extraction is never used.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sandlot.beneath import DIR_FLAGS
from sandlot.templates.blob_stream import Readable
from sandlot.templates.import_limits import ImportBudget, ImportRejected
from sandlot.templates.stack import OPAQUE_XATTR, is_whiteout

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_MARKER = ".wh..wh..opq"
PAX_XATTR_PREFIX = "SCHILY.xattr."
CONTAINER_IDS = 65536
"""Container uids and gids a sandbox maps (0..65535)."""
MAX_HEADER_BYTES = 1 << 20
"""Largest pax or GNU long-name header read: tarfile reads one into memory whole."""
COPY_CHUNK = 1 << 20
_ZEROS = bytes(COPY_CHUNK)

_HEADER_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
# Errors of the host, not of the archive: these propagate as they are.
_HOST_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
)
# mtimes are clamped into what every filesystem and os.utime take.
_MTIME_MIN = -(2**31)
_MTIME_MAX = 2**34


class OversizedHeader(tarfile.TarError):
    pass


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses header blocks too large to read into memory."""

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise OversizedHeader(
                f"an extended header of {self.size} bytes (at most {MAX_HEADER_BYTES})"
            )
        return super()._proc_member(tarfile)  # type: ignore[misc,no-any-return]


@dataclass
class LayerStats:
    entries: int = 0
    size_bytes: int = 0
    """Bytes of regular-file content: what the layer costs on disk, roughly."""


@dataclass
class _DirMeta:
    mode: int
    mtime_ns: int
    xattrs: dict[str, bytes] = field(default_factory=dict)


def member_path(name: str) -> tuple[str, ...]:
    """The components of a member name, or ValueError if it leaves the layer.

    `./a//b/` is ("a", "b"); "." and "" are the layer root, ().
    """
    if "\x00" in name:
        raise ValueError("has a NUL byte in its name")
    if name.startswith("/"):
        raise ValueError("is an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError("has a '..' component that could leave the layer")
    return parts


def apply_layer(
    stream: IO[bytes],
    root: Path,
    *,
    uid_offset: int,
    budget: ImportBudget,
    layer: str,
) -> LayerStats:
    """Unpack the tar `stream` into the existing empty directory `root`.

    Raises ImportRejected, naming `layer` and the member, for anything malformed or
    unsafe; `root` is then left half-written for the caller to remove.
    """
    writer = _LayerWriter(root, uid_offset=uid_offset, layer=layer)
    try:
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo) as tar:
            while (member := tar.next()) is not None:
                # A stream's TarFile keeps every member it has seen; a layer may hold many.
                tar.members.clear()  # type: ignore[attr-defined]  # not in the stubs
                budget.add_member(layer, member.name, member.size)
                writer.apply(member, tar)
        writer.finish()
    except (tarfile.TarError, UnicodeError) as e:
        raise ImportRejected(f"{layer}: not a valid tar archive: {e}") from None
    finally:
        writer.close()
    return writer.stats


class _LayerWriter:
    def __init__(self, root: Path, *, uid_offset: int, layer: str) -> None:
        self.root_fd = os.open(root, DIR_FLAGS)
        self.offset = uid_offset
        self.layer = layer
        self.stats = LayerStats()
        self.dirs: dict[tuple[str, ...], _DirMeta] = {}
        os.fchown(self.root_fd, uid_offset, uid_offset)
        os.fchmod(self.root_fd, 0o755)

    def close(self) -> None:
        os.close(self.root_fd)

    def reject(self, member: str, why: str) -> ImportRejected:
        return ImportRejected(f"{self.layer}: member {member!r} {why}")

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        try:
            path = member_path(member.name)
        except ValueError as e:
            raise self.reject(member.name, str(e)) from None
        try:
            self._apply(member, path, tar)
        except tarfile.TarError as e:
            raise self.reject(member.name, f"cannot be read: {e}") from None
        except OSError as e:
            if e.errno in _HOST_ERRNOS:
                raise
            raise self.reject(member.name, f"cannot be written: {e.strerror or e}") from None
        self.stats.entries += 1

    def _apply(self, member: tarfile.TarInfo, path: tuple[str, ...], tar: tarfile.TarFile) -> None:
        if not path:
            return  # The layer root's own entry: it is always root-owned 0755.
        if member.ischr() or member.isblk():
            raise self.reject(
                member.name, "is a device node, which an image may not carry into a sandbox"
            )
        uid, gid = self._owner(member)
        name = path[-1]
        with self._parent(member.name, path[:-1]) as parent:
            if name == OPAQUE_MARKER:
                os.setxattr(parent, OPAQUE_XATTR, b"y")
            elif name.startswith(WHITEOUT_META_PREFIX):
                pass  # aufs bookkeeping (hard-link dirs), meaningless to overlayfs.
            elif name.startswith(WHITEOUT_PREFIX):
                self._whiteout(member.name, parent, name.removeprefix(WHITEOUT_PREFIX), uid, gid)
            elif member.isdir():
                self._directory(member, parent, path, uid, gid)
            elif member.isreg():
                self._regular(member, parent, name, uid, gid, tar)
            elif member.issym():
                self._symlink(member, parent, name, uid, gid)
            elif member.islnk():
                self._hardlink(member, parent, path)
            elif member.isfifo():
                self._fifo(member, parent, name, uid, gid)
            else:
                raise self.reject(
                    member.name, f"has a tar type {member.type!r} Sandlot cannot import"
                )

    def _owner(self, member: tarfile.TarInfo) -> tuple[int, int]:
        for what, value in (("uid", member.uid), ("gid", member.gid)):
            if not 0 <= value < CONTAINER_IDS:
                raise self.reject(
                    member.name,
                    f"is owned by {what} {value}; a sandbox maps only 0..{CONTAINER_IDS - 1}",
                )
        return member.uid + self.offset, member.gid + self.offset

    @contextmanager
    def _parent(self, member: str, parts: tuple[str, ...]) -> Iterator[int]:
        """A descriptor of directory `parts`, made (root-owned 0755) where missing."""
        fd = self._open_dir(member, parts, create=True)
        try:
            yield fd
        finally:
            os.close(fd)

    def _open_dir(self, member: str, parts: tuple[str, ...], *, create: bool) -> int:
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    os.chown(part, self.offset, self.offset, dir_fd=fd, follow_symlinks=False)
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    where = "/".join(parts[: i + 1])
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        raise self.reject(
                            member,
                            f"goes through {where!r}, a symbolic link in this layer; "
                            "a member may not be written through a link",
                        ) from None
                    raise self.reject(
                        member, f"goes through {where!r}, which is not a directory"
                    ) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _clear(self, parent: int, name: str, *, keep_dir: bool = False) -> bool:
        """Remove what an earlier member put at `name`; True if a directory was kept."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
        return False

    def _whiteout(self, member: str, parent: int, name: str, uid: int, gid: int) -> None:
        if name in ("", ".", ".."):
            raise self.reject(member, "is a whiteout of no valid name")
        try:
            os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            # OCI: a whiteout hides lower layers only; what this layer has stays.
            return
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)

    def _directory(
        self, member: tarfile.TarInfo, parent: int, path: tuple[str, ...], uid: int, gid: int
    ) -> None:
        name = path[-1]
        if not self._clear(parent, name, keep_dir=True):
            os.mkdir(name, 0o700, dir_fd=parent)
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        # Mode and mtime wait for finish(): children would change the mtime, and a
        # read-only mode is better set once nothing more is written inside.
        self.dirs[path] = _DirMeta(
            stat.S_IMODE(member.mode), _mtime_ns(member.mtime), self._xattrs(member)
        )

    def _regular(
        self,
        member: tarfile.TarInfo,
        parent: int,
        name: str,
        uid: int,
        gid: int,
        tar: tarfile.TarFile,
    ) -> None:
        self._clear(parent, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent)
        try:
            source = tar.extractfile(member)
            if source is not None:
                _copy_sparse(source, fd, member.size)
            # chown clears setuid/setgid and file capabilities: mode and xattrs after it.
            os.fchown(fd, uid, gid)
            os.fchmod(fd, stat.S_IMODE(member.mode))
            self._set_xattrs(member.name, fd, self._xattrs(member))
            mtime = _mtime_ns(member.mtime)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)
        self.stats.size_bytes += member.size

    def _symlink(self, member: tarfile.TarInfo, parent: int, name: str, uid: int, gid: int) -> None:
        if not member.linkname or "\x00" in member.linkname:
            raise self.reject(member.name, "is a symbolic link with an empty or invalid target")
        self._clear(parent, name)
        # The target is stored, never followed: it is resolved inside the sandbox.
        os.symlink(member.linkname, name, dir_fd=parent)
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        mtime = _mtime_ns(member.mtime)
        os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)

    def _hardlink(self, member: tarfile.TarInfo, parent: int, path: tuple[str, ...]) -> None:
        outside = self.reject(
            member.name,
            f"is a hard link to {member.linkname!r}, which is not an earlier file of this layer",
        )
        try:
            target = member_path(member.linkname)
        except ValueError:
            raise outside from None
        if not target:
            raise outside
        try:
            target_dir = self._open_dir(member.name, target[:-1], create=False)
        except (FileNotFoundError, NotADirectoryError):
            raise outside from None
        try:
            try:
                st = os.stat(target[-1], dir_fd=target_dir, follow_symlinks=False)
            except FileNotFoundError:
                raise outside from None
            if stat.S_ISDIR(st.st_mode) or is_whiteout(st):
                raise outside
            if target == path:
                return  # A link to itself: the file is already there.
            self._clear(parent, path[-1])
            os.link(
                target[-1],
                path[-1],
                src_dir_fd=target_dir,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        finally:
            os.close(target_dir)

    def _fifo(self, member: tarfile.TarInfo, parent: int, name: str, uid: int, gid: int) -> None:
        self._clear(parent, name)
        os.mkfifo(name, 0o600, dir_fd=parent)
        # A fifo opened for reading without O_NONBLOCK would wait for a writer.
        fd = os.open(
            name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
        )
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, stat.S_IMODE(member.mode))
            mtime = _mtime_ns(member.mtime)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def _xattrs(self, member: tarfile.TarInfo) -> dict[str, bytes]:
        """The member's PAX xattrs that a sandbox may have: user.* and file capabilities.

        trusted.* and security.* (but capabilities) would speak to the host's kernel
        (trusted.overlay.* steers overlayfs itself); user.overlay.* would too under the
        userxattr mount option.
        """
        kept: dict[str, bytes] = {}
        for key, value in member.pax_headers.items():
            if not key.startswith(PAX_XATTR_PREFIX):
                continue
            xattr = key.removeprefix(PAX_XATTR_PREFIX)
            wanted = "\x00" not in xattr and (
                xattr == "security.capability"
                or (xattr.startswith("user.") and not xattr.startswith("user.overlay."))
            )
            if wanted:
                kept[xattr] = value.encode("utf-8", "surrogateescape")
        return kept

    def _set_xattrs(self, member: str, fd: int, xattrs: dict[str, bytes]) -> None:
        for key, value in xattrs.items():
            try:
                os.setxattr(fd, key, value)
            except OSError as e:
                if e.errno in _HOST_ERRNOS:
                    raise
                raise self.reject(
                    member, f"has an xattr {key} that cannot be set: {e.strerror}"
                ) from None

    def finish(self) -> None:
        """Directory modes, xattrs and mtimes, deepest first so a parent's mtime holds."""
        for path in sorted(self.dirs, key=len, reverse=True):
            meta = self.dirs[path]
            try:
                fd = self._open_dir("/".join(path), path, create=False)
            except (FileNotFoundError, NotADirectoryError):
                continue  # Replaced by a later member.
            try:
                os.fchmod(fd, meta.mode)
                meta.xattrs.pop("security.capability", None)
                self._set_xattrs("/".join(path), fd, meta.xattrs)
                os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
            except OSError as e:
                if e.errno in _HOST_ERRNOS:
                    raise
                raise self.reject("/".join(path), f"cannot be written: {e.strerror or e}") from None
            finally:
                os.close(fd)


def _mtime_ns(mtime: float) -> int:
    if not math.isfinite(mtime):
        return 0
    return int(min(max(mtime, _MTIME_MIN), _MTIME_MAX) * 1_000_000_000)


def _copy_sparse(source: Readable, fd: int, size: int) -> None:
    """Copy to `fd`, leaving holes where whole chunks are zero (sparse logs, disk images)."""
    while chunk := source.read(COPY_CHUNK):
        if chunk == _ZEROS[: len(chunk)]:
            os.lseek(fd, len(chunk), os.SEEK_CUR)
            continue
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    os.ftruncate(fd, size)
