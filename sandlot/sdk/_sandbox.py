"""Sandboxes: create, find, inspect and destroy them; reach their commands, files and
terminals; follow their events and figures.

`Sandbox` and `AsyncSandbox` share `_SandboxBase`; `Sandboxes` and `AsyncSandboxes`
(`client.sandboxes`) share the call builders below. A sandbox made through the class
methods without a client owns its connection and closes it with itself.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from pydantic import TypeAdapter

from sandlot.errors import InvalidStateError, SandboxNotFoundError, SandlotError
from sandlot.sdk._commands import AsyncCommands, Commands
from sandlot.sdk._config import resolve_config
from sandlot.sdk._event_stream import AsyncEventStream, EventStream
from sandlot.sdk._events import EventCursor
from sandlot.sdk._files import AsyncFiles, Files
from sandlot.sdk._http import AsyncTransport, Call, SyncTransport, sandbox_path
from sandlot.sdk._lifecycle import (
    AsyncSnapshots,
    Snapshots,
    branch_call,
    from_snapshot_call,
    pause_call,
    resume_call,
    rollback_call,
    timeout_call,
)
from sandlot.sdk._listener import AsyncEventCallback, AsyncListener, EventCallback, Listener
from sandlot.sdk._models import (
    FINAL_STATUSES,
    Metrics,
    ResourceSpec,
    SandboxInfo,
    SandboxStatus,
    SandboxUsage,
    resources_to_api,
)
from sandlot.sdk._network import (
    AsyncPorts,
    Ports,
    list_ports_call,
    update_network_call,
    url_of,
)
from sandlot.sdk._pty import AsyncPty, Pty
from sandlot.sdk._ssh import SshInfo, ssh_info_call

if TYPE_CHECKING:
    from sandlot.sdk._client import AsyncSandlot, Sandlot

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)
ResultT = TypeVar("ResultT")

DEFAULT_TEMPLATE = "base"
FINAL_STATUS_WAIT = 5.0
"""Seconds `kill` lets a sandbox's event listener run on to deliver the final status."""
DEFAULT_IDLE_TIMEOUT = 600
DEFAULT_WAIT_TIMEOUT = 30.0
# How often `wait_for` asks for the status when the events say nothing.
WAIT_POLL_INTERVAL = 1.0

_SANDBOXES = TypeAdapter(list[SandboxInfo])


def _create_call(
    template: str,
    resources: ResourceSpec | Mapping[str, object] | None,
    env: Mapping[str, str] | None,
    metadata: Mapping[str, str] | None,
    idle_timeout: int,
    timeout: int | None,
    password: str | None = None,
    network: Mapping[str, object] | None = None,
    runtime: str | None = None,
    mounts: Sequence[Mapping[str, object]] | None = None,
) -> Call[SandboxInfo]:
    body: dict[str, object] = {
        "template": template,
        "resources": resources_to_api(resources),
        "env": dict(env or {}),
        "metadata": dict(metadata or {}),
        "idleTimeout": idle_timeout,
        "timeout": timeout,
    }
    if password is not None:
        body["password"] = password
    if network is not None:
        body["network"] = dict(network)
    if runtime is not None:
        body["runtime"] = runtime
    if mounts:
        body["mounts"] = [_mount_to_api(m) for m in mounts]
    return Call("POST", "/v1/sandboxes", parse=SandboxInfo.model_validate, json=body)


def _mount_to_api(mount: Mapping[str, object]) -> dict[str, object]:
    """A mount as the API takes it; snake_case keys (`workspace_id`, `read_only`) or the
    API's own camelCase."""
    keys = {"workspace_id": "workspaceId", "read_only": "readOnly"}
    return {keys.get(k, k): v for k, v in mount.items()}


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


def _metrics_call(sandbox_id: str) -> Call[Metrics]:
    return Call("GET", sandbox_path(sandbox_id, "/metrics"), parse=Metrics.model_validate)


def _kill_call(sandbox_id: str) -> Call[SandboxInfo]:
    return Call("DELETE", sandbox_path(sandbox_id), parse=SandboxInfo.model_validate)


def _reject_mixed(client: object, api_url: str | None, api_key: str | None) -> None:
    if client is not None and (api_url is not None or api_key is not None):
        raise ValueError("pass either client= or api_url=/api_key=, not both")


class _hybrid(Generic[ResultT]):
    """A method that is also callable on the class: `sbx.resume()` resumes this sandbox,
    `Sandbox.resume(ID, ...)` resumes one by id (through the class's `_resume_by_id`)."""

    def __init__(self, method: Callable[[Any], ResultT]) -> None:
        self._method = method

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Callable[..., Any]: ...
    @overload
    def __get__(self, obj: object, owner: type[Any]) -> Callable[[], ResultT]: ...
    def __get__(self, obj: object | None, owner: type[Any]) -> Any:
        if obj is None:
            return owner._resume_by_id
        return self._method.__get__(obj, owner)


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

    def _cursor(self, since: int | None, types: str | Iterable[str] | None) -> EventCursor:
        return EventCursor(self.id, since=since, types=types)

    def _reached(self, status: SandboxStatus, wanted: SandboxStatus) -> bool:
        """Whether `status` is the one waited for; an error if it never can be now."""
        if status == wanted:
            return True
        if status in FINAL_STATUSES:
            raise InvalidStateError(
                f"sandbox {self.id} is {status}, so it will never be {wanted}",
                details={"sandboxId": self.id, "status": status, "wanted": wanted},
            )
        return False

    def _still_not(self, wanted: SandboxStatus, timeout: float) -> TimeoutError:
        return TimeoutError(
            f"sandbox {self.id} did not become {wanted} within {timeout} s "
            f"(last seen {self.status})"
        )

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
        self.ports = Ports(info.id, transport)
        self.snapshots = Snapshots(info.id, transport)
        self._listener = Listener(transport, info.id)

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
        password: str | None = None,
        network: Mapping[str, object] | None = None,
        runtime: str | None = None,
        mounts: Sequence[Mapping[str, object]] | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        client: Sandlot | None = None,
    ) -> Sandbox:
        """Start a sandbox from `template` and wait until it runs.

        `resources` takes `vcpus`, `memory_mb` or `memory` ("4GB"), `disk_mb` or
        `disk`. `idle_timeout` pauses it after that many idle seconds; `timeout` ends
        it that many seconds after start (`None`: no limit). `password` lets
        `ssh SANDBOX_ID@host` log in with it (the server keeps only a hash). `network`
        is the egress policy and automatic preview ports (see `update_network`).
        `runtime` picks the backend ("oci", "runsc") among those the server offers
        (`Sandlot.runtimes()`); `None` takes the server's default. `mounts` are
        volumes of the organisation, e.g. `[{"workspace_id": "my-code", "path":
        "/workspace"}]` (`"read_only": True` for a read-only one); an unknown name is
        made at the server's default size.
        """
        _reject_mixed(client, api_url, api_key)
        call = _create_call(
            template,
            resources,
            env,
            metadata,
            idle_timeout,
            timeout,
            password,
            network,
            runtime,
            mounts,
        )
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

    def metrics(self) -> Metrics:
        """The current figures: CPU, memory, disk, network rates, pids."""
        return self._transport.send(_metrics_call(self.id))

    def update_network(
        self,
        *,
        egress: Mapping[str, object] | None = None,
        ingress: Mapping[str, object] | None = None,
    ) -> SandboxInfo:
        """Change the running sandbox's policy at once (what is left out stays as it is),
        e.g. `egress={"default": "deny",
        "allow": ["pypi.org", "*.github.com", "10.20.0.0/16"]}`; no restart."""
        self._info = self._transport.send(update_network_call(self.id, egress, ingress))
        return self._info

    def get_url(self, port: int) -> str:
        """The preview URL of an exposed or automatic port (3000, 3001, 5173, 8000, 8080)."""
        return url_of(self.id, self._transport.send(list_ports_call(self.id)), port)

    def get_ssh(self) -> SshInfo:
        """Host, port and username for `ssh` into this sandbox, with a ready command."""
        return self._transport.send(ssh_info_call(self.id))

    def on(self, event_type: str, callback: EventCallback) -> None:
        """Call `callback(event)` for each event of `event_type` ("status", "metrics",
        "log", "exec.completed", "file.created", … or "*" for all) of this sandbox.
        A "log" event is one line of the sandbox's system log (what programs send to
        /dev/log: `logger`, syslog(3)), with `line`, `tag`, `severity` and `at`.

        Callbacks run one at a time on a background thread, from the moment `on`
        returns until `off`, `close()`, `kill()` or the sandbox's end; an exception
        in one is logged (logger "sandlot.events") and ignored.
        """
        self._listener.on(event_type, callback)

    def off(self, event_type: str, callback: EventCallback | None = None) -> None:
        """Stop calling `callback` (every callback of `event_type` if `None`); the
        background listener stops with the last one."""
        self._listener.off(event_type, callback)

    def events(
        self,
        since: int | None = None,
        types: str | Iterable[str] | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> EventStream:
        """Iterate over this sandbox's events: the persisted ones after id `since`
        first (none if `None`), then live ones as they happen.

        The iteration ends when the sandbox ends, after `idle_timeout` seconds
        without an event if given, or when the stream is closed (use it in `with`).
        """
        stream = EventStream(self._transport, self._cursor(since, types), idle_timeout=idle_timeout)
        return stream.connect()

    def wait_for(self, status: SandboxStatus, timeout: float = DEFAULT_WAIT_TIMEOUT) -> SandboxInfo:
        """Wait until the sandbox is in `status`; returns its state then.

        Raises `TimeoutError` after `timeout` seconds, and `InvalidStateError` if the
        sandbox ends ("terminated", "error") instead.
        """
        deadline = time.monotonic() + timeout
        with contextlib.ExitStack() as stack:
            stream: EventStream | None = None
            try:
                stream = stack.enter_context(self.events(types="status"))
            except SandlotError as err:
                if not err.retryable:
                    raise
            # Asked after subscribing, so no change can fall between the two.
            current = self.refresh().status
            while not self._reached(current, status):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._still_not(status, timeout)
                wait = min(remaining, WAIT_POLL_INTERVAL)
                if stream is not None and not stream.finished:
                    event = stream.read(wait)
                    if event is not None and event.status is not None:
                        current = event.status
                        continue
                else:
                    time.sleep(wait)
                # No news within the interval: ask, in case the socket missed it.
                current = self.refresh().status
        return self._info if self._info.status == status else self.refresh()

    def pause(self) -> SandboxInfo:
        """Checkpoint the sandbox to disk (memory and CPU released) or, on a server
        without CRIU, freeze it; `info.pause_mode` says which."""
        self._info = self._transport.send(pause_call(self.id))
        return self._info

    @_hybrid
    def resume(self) -> SandboxInfo:
        """Bring a paused sandbox back exactly as it was. Also `Sandbox.resume(ID)`,
        which returns the resumed `Sandbox`."""
        self._info = self._transport.send(resume_call(self.id))
        return self._info

    @classmethod
    def _resume_by_id(
        cls,
        sandbox_id: str,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        client: Sandlot | None = None,
    ) -> Sandbox:
        _reject_mixed(client, api_url, api_key)
        if client is not None:
            return _open(cls, client._transport, resume_call(sandbox_id), owned=False)
        transport = SyncTransport(resolve_config(api_url, api_key))
        return _open(cls, transport, resume_call(sandbox_id), owned=True)

    def set_timeout(self, seconds: int) -> SandboxInfo:
        """End the sandbox `seconds` from now (reason "timeout"); 0 removes the limit."""
        self._info = self._transport.send(timeout_call(self.id, seconds))
        return self._info

    def rollback(self, snapshot: str) -> SandboxInfo:
        """Put this sandbox back as it was at `snapshot` (name or id): same id."""
        self._info = self._transport.send(rollback_call(self.id, snapshot))
        return self._info

    def branch(
        self,
        snapshot: str,
        *,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: int | None = None,
    ) -> Sandbox:
        """A new sandbox started from one of this sandbox's snapshots; this one runs on."""
        call = branch_call(self.id, snapshot, name, metadata, env, timeout)
        return type(self)(self._transport.send(call), self._transport)

    @classmethod
    def create_from_snapshot(
        cls,
        snapshot_id: str,
        *,
        metadata: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: int | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        client: Sandlot | None = None,
    ) -> Sandbox:
        """A new sandbox started from any of the organisation's snapshots, by id."""
        _reject_mixed(client, api_url, api_key)
        call = from_snapshot_call(snapshot_id, metadata, env, timeout)
        if client is not None:
            return _open(cls, client._transport, call, owned=False)
        return _open(cls, SyncTransport(resolve_config(api_url, api_key)), call, owned=True)

    def kill(self) -> None:
        """Destroy the sandbox and everything in it; its event listeners see the final
        status, then stop."""
        try:
            self._info = self._transport.send(_kill_call(self.id))
        finally:
            self._listener.finish(FINAL_STATUS_WAIT)

    def close(self) -> None:
        """Stop this sandbox's event listeners and release the connection it owns,
        leaving the sandbox running."""
        self._listener.stop()
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
        self.ports = AsyncPorts(info.id, transport)
        self.snapshots = AsyncSnapshots(info.id, transport)
        self._listener = AsyncListener(transport, info.id)

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
        password: str | None = None,
        network: Mapping[str, object] | None = None,
        runtime: str | None = None,
        mounts: Sequence[Mapping[str, object]] | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        client: AsyncSandlot | None = None,
    ) -> AsyncSandboxCreation:
        """Start a sandbox; `await` the result, or use it in `async with`.

        The arguments are those of `Sandbox.create`.
        """
        _reject_mixed(client, api_url, api_key)
        call = _create_call(
            template,
            resources,
            env,
            metadata,
            idle_timeout,
            timeout,
            password,
            network,
            runtime,
            mounts,
        )
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

    async def metrics(self) -> Metrics:
        return await self._transport.send(_metrics_call(self.id))

    async def update_network(
        self,
        *,
        egress: Mapping[str, object] | None = None,
        ingress: Mapping[str, object] | None = None,
    ) -> SandboxInfo:
        self._info = await self._transport.send(update_network_call(self.id, egress, ingress))
        return self._info

    async def get_url(self, port: int) -> str:
        return url_of(self.id, await self._transport.send(list_ports_call(self.id)), port)

    async def get_ssh(self) -> SshInfo:
        return await self._transport.send(ssh_info_call(self.id))

    async def on(self, event_type: str, callback: AsyncEventCallback) -> None:
        """`Sandbox.on` for asyncio: callbacks (plain or coroutine functions) run in a
        background task of the running loop. Awaiting `on` opens the event socket."""
        await self._listener.on(event_type, callback)

    async def off(self, event_type: str, callback: AsyncEventCallback | None = None) -> None:
        await self._listener.off(event_type, callback)

    async def events(
        self,
        since: int | None = None,
        types: str | Iterable[str] | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> AsyncEventStream:
        """`Sandbox.events` for asyncio: `async for event in await sbx.events()`."""
        stream = AsyncEventStream(
            self._transport, self._cursor(since, types), idle_timeout=idle_timeout
        )
        return await stream.connect()

    async def wait_for(
        self, status: SandboxStatus, timeout: float = DEFAULT_WAIT_TIMEOUT
    ) -> SandboxInfo:
        """Wait until the sandbox is in `status`; see `Sandbox.wait_for`."""
        deadline = time.monotonic() + timeout
        async with contextlib.AsyncExitStack() as stack:
            stream: AsyncEventStream | None = None
            try:
                stream = await stack.enter_async_context(await self.events(types="status"))
            except SandlotError as err:
                if not err.retryable:
                    raise
            current = (await self.refresh()).status
            while not self._reached(current, status):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._still_not(status, timeout)
                wait = min(remaining, WAIT_POLL_INTERVAL)
                if stream is not None and not stream.finished:
                    event = await stream.read(wait)
                    if event is not None and event.status is not None:
                        current = event.status
                        continue
                else:
                    await asyncio.sleep(wait)
                current = (await self.refresh()).status
        return self._info if self._info.status == status else await self.refresh()

    async def pause(self) -> SandboxInfo:
        self._info = await self._transport.send(pause_call(self.id))
        return self._info

    @_hybrid
    async def resume(self) -> SandboxInfo:
        self._info = await self._transport.send(resume_call(self.id))
        return self._info

    @classmethod
    async def _resume_by_id(
        cls,
        sandbox_id: str,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        client: AsyncSandlot | None = None,
    ) -> AsyncSandbox:
        _reject_mixed(client, api_url, api_key)
        if client is not None:
            return await _aopen(cls, client._transport, resume_call(sandbox_id), owned=False)
        transport = AsyncTransport(resolve_config(api_url, api_key))
        return await _aopen(cls, transport, resume_call(sandbox_id), owned=True)

    async def set_timeout(self, seconds: int) -> SandboxInfo:
        self._info = await self._transport.send(timeout_call(self.id, seconds))
        return self._info

    async def rollback(self, snapshot: str) -> SandboxInfo:
        self._info = await self._transport.send(rollback_call(self.id, snapshot))
        return self._info

    async def branch(
        self,
        snapshot: str,
        *,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: int | None = None,
    ) -> AsyncSandbox:
        call = branch_call(self.id, snapshot, name, metadata, env, timeout)
        return type(self)(await self._transport.send(call), self._transport)

    @classmethod
    def create_from_snapshot(
        cls,
        snapshot_id: str,
        *,
        metadata: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: int | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        client: AsyncSandlot | None = None,
    ) -> AsyncSandboxCreation:
        _reject_mixed(client, api_url, api_key)
        call = from_snapshot_call(snapshot_id, metadata, env, timeout)
        if client is not None:
            return AsyncSandboxCreation(_aopen(cls, client._transport, call, owned=False))
        transport = AsyncTransport(resolve_config(api_url, api_key))
        return AsyncSandboxCreation(_aopen(cls, transport, call, owned=True))

    async def kill(self) -> None:
        try:
            self._info = await self._transport.send(_kill_call(self.id))
        finally:
            await self._listener.finish(FINAL_STATUS_WAIT)

    async def close(self) -> None:
        await self._listener.stop()
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
        password: str | None = None,
        network: Mapping[str, object] | None = None,
        runtime: str | None = None,
        mounts: Sequence[Mapping[str, object]] | None = None,
    ) -> Sandbox:
        call = _create_call(
            template,
            resources,
            env,
            metadata,
            idle_timeout,
            timeout,
            password,
            network,
            runtime,
            mounts,
        )
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
        password: str | None = None,
        network: Mapping[str, object] | None = None,
        runtime: str | None = None,
        mounts: Sequence[Mapping[str, object]] | None = None,
    ) -> AsyncSandboxCreation:
        call = _create_call(
            template,
            resources,
            env,
            metadata,
            idle_timeout,
            timeout,
            password,
            network,
            runtime,
            mounts,
        )
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
