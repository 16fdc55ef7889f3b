"""`Sandlot` and `AsyncSandlot`: one connection to a Sandlot server, shared by the
sandboxes reached through it, and what concerns the whole organisation: its events and
its usage."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import httpx

from sandlot.sdk._admin import AsyncKeys, AsyncOrgs, Keys, Orgs
from sandlot.sdk._config import resolve_config
from sandlot.sdk._event_stream import AsyncEventStream, EventStream
from sandlot.sdk._events import EventCursor
from sandlot.sdk._http import DEFAULT_TIMEOUT, AsyncTransport, Call, RetryPolicy, SyncTransport
from sandlot.sdk._listener import AsyncEventCallback, AsyncListener, EventCallback, Listener
from sandlot.sdk._models import RuntimeInfo, ServerHealth, Usage
from sandlot.sdk._sandbox import AsyncSandboxes, Sandboxes
from sandlot.sdk._ssh import AsyncSshKeys, SshKeys
from sandlot.sdk._templates import AsyncTemplates, Templates
from sandlot.sdk._volumes import AsyncVolumes, Volumes

_HEALTH = Call("GET", "/health", parse=ServerHealth.model_validate)
_RUNTIMES = Call(
    "GET", "/v1/runtimes", parse=lambda data: [RuntimeInfo.model_validate(r) for r in data]
)


def _usage_call(start: datetime | None, end: datetime | None) -> Call[Usage]:
    params = {
        name: _wire_time(moment)
        for name, moment in (("from", start), ("to", end))
        if moment is not None
    }
    return Call("GET", "/v1/usage", parse=Usage.model_validate, params=params)


def _wire_time(moment: datetime) -> str:
    """ISO 8601 in UTC; a naive datetime is taken as local time, as Python does."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Sandlot:
    """A client for one Sandlot server.

    `api_url` and `api_key` default to `SANDLOT_API_URL` / `SANDLOT_API_KEY`, then to
    the credentials file `sandlot serve` writes. `request_timeout` bounds each HTTP
    request (command runs wait for their own timeout instead). `http_client` lets you
    bring a configured `httpx.Client` (proxies, certificates, a test transport).
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        request_timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        http_client: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        config = resolve_config(api_url, api_key)
        self._transport = SyncTransport(
            config, timeout=request_timeout, http_client=http_client, retry=retry
        )
        self.orgs = Orgs(self._transport)
        self.keys = Keys(self._transport)
        self.sandboxes = Sandboxes(self._transport)
        self.ssh_keys = SshKeys(self._transport)
        self.templates = Templates(self._transport)
        self.volumes = Volumes(self._transport)
        self._listener = Listener(self._transport, None)

    @property
    def api_url(self) -> str:
        return self._transport.api_url

    def health(self) -> ServerHealth:
        return self._transport.send(_HEALTH)

    def runtimes(self) -> list[RuntimeInfo]:
        """The server's sandbox backends and what each can do on its host."""
        return self._transport.send(_RUNTIMES)

    def usage(self, start: datetime | None = None, end: datetime | None = None) -> Usage:
        """What the organisation's sandboxes consumed from `start` to `end` (the
        server's default: the last 24 hours)."""
        return self._transport.send(_usage_call(start, end))

    def on(self, event_type: str, callback: EventCallback) -> None:
        """Call `callback(event)` for each event of `event_type` (or "*") of any
        sandbox; see `Sandbox.on`."""
        self._listener.on(event_type, callback)

    def off(self, event_type: str, callback: EventCallback | None = None) -> None:
        self._listener.off(event_type, callback)

    def events(
        self,
        since: int | None = None,
        types: str | Iterable[str] | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> EventStream:
        """Iterate over the events of every sandbox; see `Sandbox.events`. This
        stream does not end by itself unless `idle_timeout` is given."""
        cursor = EventCursor(None, since=since, types=types)
        return EventStream(self._transport, cursor, idle_timeout=idle_timeout).connect()

    def close(self) -> None:
        """Stop every event listener using this client and release its connection."""
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sandlot(api_url={self.api_url!r})"


class AsyncSandlot:
    """`Sandlot` for asyncio: the same arguments, with an `httpx.AsyncClient`."""

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        request_timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        config = resolve_config(api_url, api_key)
        self._transport = AsyncTransport(
            config, timeout=request_timeout, http_client=http_client, retry=retry
        )
        self.orgs = AsyncOrgs(self._transport)
        self.keys = AsyncKeys(self._transport)
        self.sandboxes = AsyncSandboxes(self._transport)
        self.ssh_keys = AsyncSshKeys(self._transport)
        self.templates = AsyncTemplates(self._transport)
        self.volumes = AsyncVolumes(self._transport)
        self._listener = AsyncListener(self._transport, None)

    @property
    def api_url(self) -> str:
        return self._transport.api_url

    async def health(self) -> ServerHealth:
        return await self._transport.send(_HEALTH)

    async def runtimes(self) -> list[RuntimeInfo]:
        return await self._transport.send(_RUNTIMES)

    async def usage(self, start: datetime | None = None, end: datetime | None = None) -> Usage:
        return await self._transport.send(_usage_call(start, end))

    async def on(self, event_type: str, callback: AsyncEventCallback) -> None:
        """`Sandlot.on` for asyncio; see `AsyncSandbox.on`."""
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
        cursor = EventCursor(None, since=since, types=types)
        return await AsyncEventStream(self._transport, cursor, idle_timeout=idle_timeout).connect()

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncSandlot(api_url={self.api_url!r})"
