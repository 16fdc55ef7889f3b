"""Readers that hash, meter and decompress a layer blob as it streams past.

A layer is read once, front to back: the stored bytes are hashed for the blob digest
an OCI layout names them by, decompressed, and the uncompressed tar is hashed for the
diff_id the image config promises and that names the layer on disk. Nothing is
buffered whole, so a layer of any size costs a few buffers of memory.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import zlib
from collections.abc import Callable
from typing import IO, Any, Protocol

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
BZIP2_BLOCK_MAGICS = (b"1AY&SY", b"\x17rE8P\x90")
XZ_MAGIC = b"\xfd7zXZ\x00"
DRAIN_CHUNK = 1 << 20
TAR_BLOCK = 512
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class HashingReader(io.RawIOBase):
    """Pass reads through, hashing every byte and reporting how many went by."""

    def __init__(
        self,
        inner: Readable,
        algorithm: str = "sha256",
        on_bytes: Callable[[int], None] = lambda count: None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.hash = hashlib.new(algorithm)
        self.count = 0
        self.on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.inner.read(len(view))
        n = len(data)
        view[:n] = data
        self.hash.update(data)
        self.count += n
        if n:
            self.on_bytes(n)
        return n

    def hexdigest(self) -> str:
        return self.hash.hexdigest()

    def drain(self) -> None:
        """Read to the end, so the digest covers every byte there is."""
        while self.read(DRAIN_CHUNK):
            pass


class TarEndPadding(io.RawIOBase):
    """`inner`, then the zeros a tar that stops short of its end would still owe.

    Some tools (umoci's `insert`, for one) write layers that end right after the last
    member's data, without the padding to a 512-byte block and the two zero blocks that
    close a tar. Go's archive/tar, and so Docker and containerd, read them; Python's
    tarfile calls them truncated. The zeros are added above the hashing, so the
    diff_id still covers exactly the bytes the layer has.
    """

    def __init__(self, inner: Readable) -> None:
        super().__init__()
        self.inner = inner
        self.offset = 0
        self.tail: bytes | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.tail is None:
            data = self.inner.read(len(view))
            if data:
                self.offset += len(data)
                view[: len(data)] = data
                return len(data)
            self.tail = bytes(-self.offset % TAR_BLOCK + 2 * TAR_BLOCK)
        n = min(len(view), len(self.tail))
        view[:n] = self.tail[:n]
        self.tail = self.tail[n:]
        return n


class _Prefixed(io.RawIOBase):
    """`head` then the rest of `inner`: gives back the bytes read to sniff the format."""

    def __init__(self, head: bytes, inner: Readable) -> None:
        super().__init__()
        self.head = head
        self.inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.head:
            n = min(len(view), len(self.head))
            view[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.inner.read(len(view))
        view[: len(data)] = data
        return len(data)


class _Decompressing(io.RawIOBase):
    """A decompressor's output, its errors turned into the importer's own."""

    def __init__(
        self,
        inner: Readable,
        errors: tuple[type[BaseException], ...],
        on_error: Callable[[BaseException], Exception],
    ) -> None:
        super().__init__()
        self.inner = inner
        self.errors = errors
        self.on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self.inner.read(len(view))
        except self.errors as e:
            raise self.on_error(e) from None
        view[: len(data)] = data
        return len(data)


def decompressed(raw: Readable, on_error: Callable[[str], Exception]) -> tuple[IO[bytes], str]:
    """The uncompressed bytes of `raw` (gzip, zstd or plain tar, told by magic bytes).

    Returns the stream and the name of its compression. `on_error(message)` makes the
    exception raised for corrupt or unsupported data.
    """
    head = raw.read(10)
    stream: IO[bytes] = io.BufferedReader(_Prefixed(head, raw))
    if head.startswith(GZIP_MAGIC):
        return guarded(
            gzip.GzipFile(fileobj=stream, mode="rb"),
            GZIP_ERRORS,
            lambda e: on_error(f"corrupt gzip data: {e}"),
        ), "gzip"
    if head.startswith(ZSTD_MAGIC):
        try:
            zstandard: Any = importlib.import_module("zstandard")
        except ImportError:
            raise on_error(
                "the layer is zstd-compressed, which this server cannot read; install the "
                "`zstandard` Python package, or save the image with gzip layers"
            ) from None
        return guarded(
            zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True),
            (zstandard.ZstdError,),
            lambda e: on_error(f"corrupt zstd data: {e}"),
        ), "zstd"
    bzip2 = head.startswith(BZIP2_MAGIC) and head[4:10] in BZIP2_BLOCK_MAGICS
    if bzip2 or head.startswith(XZ_MAGIC):
        kind = "bzip2" if bzip2 else "xz"
        raise on_error(
            f"the layer is {kind}-compressed; only uncompressed, gzip and zstd layers "
            "can be imported"
        )
    return stream, "none"


def guarded(
    inner: Readable,
    errors: tuple[type[BaseException], ...],
    on_error: Callable[[BaseException], Exception],
) -> IO[bytes]:
    """`inner` with `errors` raised as `on_error(e)`, buffered."""
    return io.BufferedReader(_Decompressing(inner, errors, on_error), DRAIN_CHUNK)
