"""`client.volumes`: workspace volumes of the organisation, and their files without a
sandbox (`client.volumes.get("my-code").files.write("/notes.txt", "kept")`).

A volume is mounted into sandboxes with `Sandbox.create(mounts=[{"workspace_id":
"my-code", "path": "/workspace"}])`; the first mount of an unknown name makes it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sandlot.sdk._files import AsyncFiles, Files
from sandlot.sdk._http import AsyncTransport, Call, SyncTransport, ignore_body
from sandlot.sdk._models import VolumeInfo

_NO_REPLACE = "a volume's files have no replace: read the file, edit it, write it back"


def _volume_path(name: str, suffix: str = "") -> str:
    return f"/v1/volumes/{quote(name, safe='')}{suffix}"


def _create_call(name: str, size: str | int | None) -> Call[VolumeInfo]:
    body: dict[str, Any] = {"name": name}
    if isinstance(size, int):
        body["sizeMb"] = size
    elif size is not None:
        body["size"] = size
    return Call("POST", "/v1/volumes", parse=VolumeInfo.model_validate, json=body)


_LIST = Call("GET", "/v1/volumes", parse=lambda data: [VolumeInfo.model_validate(v) for v in data])


def _get_call(name: str) -> Call[VolumeInfo]:
    return Call("GET", _volume_path(name), parse=VolumeInfo.model_validate)


def _delete_call(name: str, force: bool) -> Call[None]:
    return Call("DELETE", _volume_path(name), parse=ignore_body, params={"force": force})


class VolumeFiles(Files):
    """A volume's files, reached without a sandbox: what `sandbox.files` offers but
    `replace` (read, edit and write instead); `list` lists one level."""

    def __init__(self, name: str, transport: SyncTransport) -> None:
        super().__init__("", transport)
        self._base = _volume_path(name, "/files")

    def replace(self, path: str, old: str, new: str, *, count: int | None = None) -> int:
        raise NotImplementedError(_NO_REPLACE)


class AsyncVolumeFiles(AsyncFiles):
    def __init__(self, name: str, transport: AsyncTransport) -> None:
        super().__init__("", transport)
        self._base = _volume_path(name, "/files")

    async def replace(self, path: str, old: str, new: str, *, count: int | None = None) -> int:
        raise NotImplementedError(_NO_REPLACE)


class Volume:
    def __init__(self, info: VolumeInfo, transport: SyncTransport) -> None:
        self.info = info
        self.name = info.name
        self.files = VolumeFiles(info.name, transport)


class AsyncVolume:
    def __init__(self, info: VolumeInfo, transport: AsyncTransport) -> None:
        self.info = info
        self.name = info.name
        self.files = AsyncVolumeFiles(info.name, transport)


class Volumes:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(self, name: str, size: str | int | None = None) -> Volume:
        """`size` as "20GB" or in MiB; the server's default size without it."""
        return Volume(self._transport.send(_create_call(name, size)), self._transport)

    def list(self) -> list[VolumeInfo]:
        return self._transport.send(_LIST)

    def get(self, name: str) -> Volume:
        return Volume(self._transport.send(_get_call(name)), self._transport)

    def delete(self, name: str, *, force: bool = False) -> None:
        """Refused while a sandbox mounts it; `force` destroys those sandboxes first."""
        self._transport.send(_delete_call(name, force))


class AsyncVolumes:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(self, name: str, size: str | int | None = None) -> AsyncVolume:
        return AsyncVolume(await self._transport.send(_create_call(name, size)), self._transport)

    async def list(self) -> list[VolumeInfo]:
        return await self._transport.send(_LIST)

    async def get(self, name: str) -> AsyncVolume:
        return AsyncVolume(await self._transport.send(_get_call(name)), self._transport)

    async def delete(self, name: str, *, force: bool = False) -> None:
        await self._transport.send(_delete_call(name, force))
