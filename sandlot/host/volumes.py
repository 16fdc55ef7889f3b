"""The host's volumes for core: `runtime.volumes.VolumeDisks`, its blocking file and
mount work moved off the event loop, streams bridged between the loop and a thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterator

from sandlot.agent.protocol import EntryInfo
from sandlot.domain.host_values import MountSpec
from sandlot.runtime.volumes import VolumeDisks


class LocalVolumes:
    def __init__(self, disks: VolumeDisks) -> None:
        self.disks = disks

    def bound(self, mounts: tuple[MountSpec, ...]) -> tuple[MountSpec, ...]:
        """The mounts with the host directories they bind."""
        return tuple(
            MountSpec(m.volume_id, m.path, m.read_only, str(self.disks.mount_point(m.volume_id)))
            for m in mounts
        )

    async def create(self, volume_id: str, size_mb: int) -> None:
        await asyncio.to_thread(self.disks.create, volume_id, size_mb)

    async def remove(self, volume_id: str) -> None:
        await asyncio.to_thread(self.disks.remove, volume_id)

    async def ensure_mounted(self, volume_id: str) -> None:
        await asyncio.to_thread(self.disks.ensure_mounted, volume_id)

    def close(self) -> None:
        self.disks.close()

    def on_host(self) -> set[str]:
        return self.disks.on_host()

    def usage(self, volume_id: str) -> tuple[int, int]:
        return self.disks.usage(volume_id)

    async def read(self, volume_id: str, path: str) -> AsyncIterator[bytes]:
        chunks = await asyncio.to_thread(self.disks.read, volume_id, path)
        return _pulled(chunks)

    async def write(
        self, volume_id: str, path: str, chunks: AsyncIterable[bytes], mode: int
    ) -> EntryInfo:
        loop = asyncio.get_running_loop()
        source = aiter(chunks)

        async def next_chunk() -> bytes:
            return await anext(source)

        def pull() -> Iterator[bytes]:
            while True:
                try:
                    yield asyncio.run_coroutine_threadsafe(next_chunk(), loop).result()
                except StopAsyncIteration:
                    return

        return await asyncio.to_thread(self.disks.write, volume_id, path, pull(), mode)

    async def list(self, volume_id: str, path: str) -> list[EntryInfo]:
        return await asyncio.to_thread(self.disks.list, volume_id, path)

    async def stat(self, volume_id: str, path: str) -> EntryInfo:
        return await asyncio.to_thread(self.disks.stat, volume_id, path)

    async def mkdir(self, volume_id: str, path: str, parents: bool) -> EntryInfo:
        return await asyncio.to_thread(self.disks.mkdir, volume_id, path, parents)

    async def delete(self, volume_id: str, path: str, recursive: bool) -> None:
        await asyncio.to_thread(self.disks.delete, volume_id, path, recursive)


async def _pulled(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
