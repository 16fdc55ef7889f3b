"""Sandboxes: create, find, inspect and destroy them; reach their commands, files and
terminals.

`Sandbox` and `AsyncSandbox` share `_SandboxBase`; `Sandboxes` and `AsyncSandboxes`
(`client.sandboxes`) share the call builders below. A sandbox made through the class
methods without a client owns its connection and closes it with itself.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Coroutine, Generator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from pydantic import TypeAdapter

from sandlot.errors import SandboxNotFoundError
from sandlot.sdk._commands import AsyncCommands, Commands
from sandlot.sdk._config import resolve_config
from sandlot.sdk._files import AsyncFiles, Files
from sandlot.sdk._http import AsyncTransport, Call, SyncTransport, sandbox_path
from sandlot.sdk._models import (
    ResourceSpec,
    SandboxInfo,
    SandboxStatus,
    SandboxUsage,
    resources_to_api,
)
from sandlot.sdk._pty import AsyncPty, Pty

if TYPE_CHECKING:
    from sandlot.sdk._client import AsyncSandlot, Sandlot

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)

DEFAULT_TEMPLATE = "base"
DEFAULT_IDLE_TIMEOUT = 600

_SANDBOXES = TypeAdapter(list[SandboxInfo])


def _create_call(
    template: str,
    resources: ResourceSpec | Mapping[str, object] | None,
    env: Mapping[str, str] | None,
    metadata: Mapping[str, str] | None,
    idle_timeout: int,
    timeout: int | None,
) -> Call[SandboxInfo]:
    return Call(
        "POST",
        "/v1/sandboxes",
        parse=SandboxInfo.model_validate,
        json={
            "template": template,
            "resources": resources_to_api(resources),
            "env": dict(env or {}),
            "metadata": dict(metadata or {}),
            "idleTimeout": idle_timeout,
            "timeout": timeout,
        },
    )


def _get_call(sandbox_id: str) -> Call[SandboxInfo]:
    return Call("GET", sandbox_path(sandbox_id), parse=SandboxInfo.model_validate)


def _list_call(
    status: SandboxStatus | None,
    metadata: Mapping[str, str] | None,
    limit: int | None,
    offset: int,
) -> Call[list[SandboxInfo]]:
    params: dict[str, str | int] = {f"metadata.{k}": v for k, v in (metadata or {}).items()}
    if status is not None:
        params["status"] = status
    if limit is not None:
        params["limit"] = limit
    if offset:
        params["offset"] = offset
    return Call("GET", "/v1/sandboxes", parse=_SANDBOXES.validate_python, params=params)


def _usage_call(sandbox_id: str) -> Call[SandboxUsage]:
    return Call("GET", f"{sandbox_path(sandbox_id)}/usage", parse=SandboxUsage.model_validate)


def _kill_call(sandbox_id: str) -> Call[SandboxInfo]:
    return Call("DELETE", sandbox_path(sandbox_id), parse=SandboxInfo.model_validate)


def _reject_mixed(client: object, api_url: str | None, api_key: str | None) -> None:
    if client is not None and (api_url is not None or api_key is not None):
        raise ValueError("pass either client= or api_url=/api_key=, not both")


class _SandboxBase(Generic[TransportT]):
    def __init__(self, info: SandboxInfo, transport: TransportT, *, owns_transport: bool) -> None:
        self._info = info
        self._transport: TransportT = transport
        self._owns_transport = owns_transport

    @property
    def id(self) -> str:
        return self._info.id

    @property
    def info(self) -> SandboxInfo:
        """What the server said about this sandbox when last asked (see `refresh`)."""
        return self._info

    @property
    def status(self) -> SandboxStatus:
        return self._info.status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, status={self.status!r})"


class Sandbox(_SandboxBase[SyncTransport]):
    """A sandbox, driven with blocking calls.

    Use it as a context manager to destroy it on the way out::

        with Sandbox.create() as sbx:
            print(sbx.commands.run("uname -a").stdout)
    """

    def __init__(
        self, info: SandboxInfo, transport: SyncTransport, *, owns_transport: bool = False
    ) -> None:
        super().__init__(info, transport, owns_transport=owns_transport)
        self.commands = Commands(info.id, transport)
        self.files = Files(info.id, transport)
        self.pty = Pty(info.id, transport)

    @classmethod
    def create(
        cls,
        template: str = DEFAULT_TEMPLATE,
        *,
        resources: ResourceSpec | Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
        timeout: int | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        client: Sandlot | None = None,
    ) -> Sandbox:
        """Start a sandbox from `template` and wait until it runs.

        `resources` takes `vcpus`, `memory_mb` or `memory` ("4GB"), `disk_mb` or
        `disk`. `idle_timeout` pauses it after that many idle seconds; `timeout` ends
        it that many seconds after start (`None`: no limit).
        """
        _reject_mixed(client, api_url, api_key)
        call = _create_call(template, resources, env, metadata, idle_timeout, timeout)
        if client is not None:
            return _open(cls, client._transport, call, owned=False)
        return _open(cls, SyncTransport(resolve_config(api_url, api_key)), call, owned=True)

    @classmethod
    def get(
        cls,
        sandbox_id: str,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        client: Sandlot | None = None,
    ) -> Sandbox:
        """Attach to an existing sandbox."""
        _reject_mixed(client, api_url, api_key)
        if client is not None:
            return _open(cls, client._transport, _get_call(sandbox_id), owned=False)
        transport = SyncTransport(resolve_config(api_url, api_key))
        return _open(cls, transport, _get_call(sandbox_id), owned=True)

    @classmethod
    def list(
        cls,
        *,
        status: SandboxStatus | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        api_url: str | None = None,
        api_key: str | None = None,
        client: Sandlot | None = None,
    ) -> builtins.list[SandboxInfo]:
        """Sandboxes in `status` whose metadata holds every pair in `metadata`."""
        _reject_mixed(client, api_url, api_key)
        call = _list_call(status, metadata, limit, offset)
        if client is not None:
            return client._transport.send(call)
        transport = SyncTransport(resolve_config(api_url, api_key))
        try:
            return transport.send(call)
        finally:
            transport.close()

    def refresh(self) -> SandboxInfo:
        """Ask the server for this sandbox's current state."""
        self._info = self._transport.send(_get_call(self.id))
        return self._info

    def usage(self) -> SandboxUsage:
        """Current resource use: CPU time, memory against the limit, pids, OOM kills."""
        return self._transport.send(_usage_call(self.id))

    def kill(self) -> None:
        """Destroy the sandbox and everything in it."""
        self._info = self._transport.send(_kill_call(self.id))

    def close(self) -> None:
        """Release the connection this sandbox owns, leaving the sandbox running."""
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.status != "terminated":
                with contextlib.suppress(SandboxNotFoundError):
                    self.kill()
        finally:
            self.close()


class AsyncSandbox(_SandboxBase[AsyncTransport]):
    """A sandbox, driven with `await`.

    ::

        async with AsyncSandbox.create() as sbx:
            result = await sbx.commands.run("uname -a")
    """

    def __init__(
        self, info: SandboxInfo, transport: AsyncTransport, *, owns_transport: bool = False
    ) -> None:
        super().__init__(info, transport, owns_transport=owns_transport)
        self.commands = AsyncCommands(info.id, transport)
        self.files = AsyncFiles(info.id, transport)
        self.pty = AsyncPty(info.id, transport)

    @classmethod
    def create(
        cls,
        template: str = DEFAULT_TEMPLATE,
        *,
        resources: ResourceSpec | Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
        timeout: int | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        client: AsyncSandlot | None = None,
    ) -> AsyncSandboxCreation:
        """Start a sandbox; `await` the result, or use it in `async with`.

        The arguments are those of `Sandbox.create`.
        """
        _reject_mixed(client, api_url, api_key)
        call = _create_call(template, resources, env, metadata, idle_timeout, timeout)
        if client is not None:
            return AsyncSandboxCreation(_aopen(cls, client._transport, call, owned=False))
        transport = AsyncTransport(resolve_config(api_url, api_key))
        return AsyncSandboxCreation(_aopen(cls, transport, call, owned=True))

    @classmethod
    async def get(
        cls,
        sandbox_id: str,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        client: AsyncSandlot | None = None,
    ) -> AsyncSandbox:
        """Attach to an existing sandbox."""
        _reject_mixed(client, api_url, api_key)
        if client is not None:
            return await _aopen(cls, client._transport, _get_call(sandbox_id), owned=False)
        transport = AsyncTransport(resolve_config(api_url, api_key))
        return await _aopen(cls, transport, _get_call(sandbox_id), owned=True)

    @classmethod
    async def list(
        cls,
        *,
        status: SandboxStatus | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        api_url: str | None = None,
        api_key: str | None = None,
        client: AsyncSandlot | None = None,
    ) -> builtins.list[SandboxInfo]:
        """Sandboxes in `status` whose metadata holds every pair in `metadata`."""
        _reject_mixed(client, api_url, api_key)
        call = _list_call(status, metadata, limit, offset)
        if client is not None:
            return await client._transport.send(call)
        transport = AsyncTransport(resolve_config(api_url, api_key))
        try:
            return await transport.send(call)
        finally:
            await transport.close()

    async def refresh(self) -> SandboxInfo:
        self._info = await self._transport.send(_get_call(self.id))
        return self._info

    async def usage(self) -> SandboxUsage:
        return await self._transport.send(_usage_call(self.id))

    async def kill(self) -> None:
        self._info = await self._transport.send(_kill_call(self.id))

    async def close(self) -> None:
        if self._owns_transport:
            await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.status != "terminated":
                with contextlib.suppress(SandboxNotFoundError):
                    await self.kill()
        finally:
            await self.close()


def _open(
    cls: type[Sandbox], transport: SyncTransport, call: Call[SandboxInfo], *, owned: bool
) -> Sandbox:
    """The sandbox `call` answers with; a transport opened for it is closed if it fails."""
    try:
        info = transport.send(call)
    except BaseException:
        if owned:
            transport.close()
        raise
    return cls(info, transport, owns_transport=owned)


async def _aopen(
    cls: type[AsyncSandbox], transport: AsyncTransport, call: Call[SandboxInfo], *, owned: bool
) -> AsyncSandbox:
    try:
        info = await transport.send(call)
    except BaseException:
        if owned:
            await transport.close()
        raise
    return cls(info, transport, owns_transport=owned)


class AsyncSandboxCreation:
    """A sandbox on its way: `await` it for the `AsyncSandbox`, or `async with` it to
    have the sandbox destroyed when the block ends."""

    def __init__(self, opening: Coroutine[Any, Any, AsyncSandbox]) -> None:
        self._opening = opening
        self._sandbox: AsyncSandbox | None = None

    def __await__(self) -> Generator[Any, None, AsyncSandbox]:
        return self._opening.__await__()

    async def __aenter__(self) -> AsyncSandbox:
        self._sandbox = await self._opening
        return self._sandbox

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sandbox is not None:
            await self._sandbox.__aexit__(exc_type, exc, tb)


class Sandboxes:
    """`client.sandboxes`: the sandboxes reachable with one `Sandlot` client."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(
        self,
        template: str = DEFAULT_TEMPLATE,
        *,
        resources: ResourceSpec | Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
        timeout: int | None = None,
    ) -> Sandbox:
        call = _create_call(template, resources, env, metadata, idle_timeout, timeout)
        return _open(Sandbox, self._transport, call, owned=False)

    def get(self, sandbox_id: str) -> Sandbox:
        return _open(Sandbox, self._transport, _get_call(sandbox_id), owned=False)

    def list(
        self,
        *,
        status: SandboxStatus | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[SandboxInfo]:
        return self._transport.send(_list_call(status, metadata, limit, offset))


class AsyncSandboxes:
    """`client.sandboxes` for an `AsyncSandlot` client."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    def create(
        self,
        template: str = DEFAULT_TEMPLATE,
        *,
        resources: ResourceSpec | Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
        timeout: int | None = None,
    ) -> AsyncSandboxCreation:
        call = _create_call(template, resources, env, metadata, idle_timeout, timeout)
        return AsyncSandboxCreation(_aopen(AsyncSandbox, self._transport, call, owned=False))

    async def get(self, sandbox_id: str) -> AsyncSandbox:
        return await _aopen(AsyncSandbox, self._transport, _get_call(sandbox_id), owned=False)

    async def list(
        self,
        *,
        status: SandboxStatus | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[SandboxInfo]:
        return await self._transport.send(_list_call(status, metadata, limit, offset))
