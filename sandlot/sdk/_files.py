"""`sandbox.files`: read, write, list and change files inside a sandbox.

Paths are absolute or relative to the sandbox user's home (`/root`). Contents move as
raw bytes streamed in chunks both ways, so a file of any size passes through without
being held in memory.
"""

from __future__ import annotations

import builtins
import io
from typing import IO, Any, Generic, TypeVar

from pydantic import TypeAdapter

from sandlot.errors import FileNotFoundInSandboxError
from sandlot.sdk._http import (
    AsyncTransport,
    Call,
    Content,
    SyncTransport,
    ignore_body,
    sandbox_path,
)
from sandlot.sdk._models import EntryInfo

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)

_ENTRIES = TypeAdapter(list[EntryInfo])


def _replacements(data: Any) -> int:
    return int(data["replacements"])


class _FilesBase(Generic[TransportT]):
    def __init__(self, sandbox_id: str, transport: TransportT) -> None:
        self._base = sandbox_path(sandbox_id, "/files")
        self._transport: TransportT = transport

    def _path(self, suffix: str = "") -> str:
        return self._base + suffix

    def _read_call(self, path: str) -> Call[None]:
        return Call("GET", self._path(), parse=ignore_body, params={"path": path})

    def _write_call(self, path: str, mode: int | None) -> Call[EntryInfo]:
        params: dict[str, str | int] = {"path": path}
        if mode is not None:
            params["mode"] = mode
        return Call("PUT", self._path(), parse=EntryInfo.model_validate, params=params)

    def _list_call(self, path: str, depth: int) -> Call[builtins.list[EntryInfo]]:
        return Call(
            "GET",
            self._path("/list"),
            parse=_ENTRIES.validate_python,
            params={"path": path, "depth": depth},
        )

    def _stat_call(self, path: str) -> Call[EntryInfo]:
        return Call(
            "GET", self._path("/stat"), parse=EntryInfo.model_validate, params={"path": path}
        )

    def _mkdir_call(self, path: str, parents: bool) -> Call[EntryInfo]:
        return Call(
            "POST",
            self._path("/mkdir"),
            parse=EntryInfo.model_validate,
            json={"path": path, "parents": parents},
        )

    def _remove_call(self, path: str, recursive: bool) -> Call[None]:
        return Call(
            "DELETE",
            self._path(),
            parse=ignore_body,
            params={"path": path, "recursive": recursive},
        )

    def _replace_call(self, path: str, old: str, new: str, count: int | None) -> Call[int]:
        return Call(
            "POST",
            self._path("/replace"),
            parse=_replacements,
            json={"path": path, "old": old, "new": new, "count": count},
        )


class Files(_FilesBase[SyncTransport]):
    def read(self, path: str, *, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The file's contents as text; use `read_bytes` for binary files."""
        return self.read_bytes(path).decode(encoding, errors)

    def read_bytes(self, path: str) -> bytes:
        sink = io.BytesIO()
        self._transport.download(self._read_call(path), sink)
        return sink.getvalue()

    def download(self, path: str, fileobj: IO[bytes]) -> int:
        """Stream the file into `fileobj` (opened for binary writing); returns its size."""
        return self._transport.download(self._read_call(path), fileobj)

    def write(self, path: str, data: Content, *, mode: int | None = None) -> EntryInfo:
        """Create or overwrite a file, making missing parent directories.

        `data` is text (written as UTF-8), bytes, or a binary file object that is
        streamed from its current position. `mode` sets the permission bits.
        """
        return self._transport.upload(self._write_call(path, mode), data)

    def upload(self, path: str, fileobj: IO[bytes], *, mode: int | None = None) -> EntryInfo:
        """Stream a binary file object into the sandbox at `path`."""
        return self.write(path, fileobj, mode=mode)

    def list(self, path: str, *, depth: int = 1) -> builtins.list[EntryInfo]:
        """The entries under a directory, descending `depth` levels."""
        return self._transport.send(self._list_call(path, depth))

    def stat(self, path: str) -> EntryInfo:
        return self._transport.send(self._stat_call(path))

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except FileNotFoundInSandboxError:
            return False
        return True

    def mkdir(self, path: str, *, parents: bool = False) -> EntryInfo:
        """Make a directory (and its missing parents with `parents=True`)."""
        return self._transport.send(self._mkdir_call(path, parents))

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file, or a directory (non-empty ones only with `recursive=True`)."""
        self._transport.send(self._remove_call(path, recursive))

    def replace(self, path: str, old: str, new: str, *, count: int | None = None) -> int:
        """Replace `old` by `new` in a text file; returns how many were replaced.

        With `count=None`, `old` must occur exactly once: an absent or ambiguous
        match raises `FileOperationError` and leaves the file alone.
        """
        return self._transport.send(self._replace_call(path, old, new, count))


class AsyncFiles(_FilesBase[AsyncTransport]):
    async def read(self, path: str, *, encoding: str = "utf-8", errors: str = "strict") -> str:
        return (await self.read_bytes(path)).decode(encoding, errors)

    async def read_bytes(self, path: str) -> bytes:
        sink = io.BytesIO()
        await self._transport.download(self._read_call(path), sink)
        return sink.getvalue()

    async def download(self, path: str, fileobj: IO[bytes]) -> int:
        return await self._transport.download(self._read_call(path), fileobj)

    async def write(self, path: str, data: Content, *, mode: int | None = None) -> EntryInfo:
        return await self._transport.upload(self._write_call(path, mode), data)

    async def upload(self, path: str, fileobj: IO[bytes], *, mode: int | None = None) -> EntryInfo:
        return await self.write(path, fileobj, mode=mode)

    async def list(self, path: str, *, depth: int = 1) -> builtins.list[EntryInfo]:
        return await self._transport.send(self._list_call(path, depth))

    async def stat(self, path: str) -> EntryInfo:
        return await self._transport.send(self._stat_call(path))

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except FileNotFoundInSandboxError:
            return False
        return True

    async def mkdir(self, path: str, *, parents: bool = False) -> EntryInfo:
        return await self._transport.send(self._mkdir_call(path, parents))

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        await self._transport.send(self._remove_call(path, recursive))

    async def replace(self, path: str, old: str, new: str, *, count: int | None = None) -> int:
        return await self._transport.send(self._replace_call(path, old, new, count))
