"""`Sandlot` and `AsyncSandlot`: one connection to a Sandlot server, shared by the
sandboxes reached through it."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx

from sandlot.sdk._config import resolve_config
from sandlot.sdk._http import DEFAULT_TIMEOUT, AsyncTransport, Call, SyncTransport
from sandlot.sdk._models import ServerHealth
from sandlot.sdk._sandbox import AsyncSandboxes, Sandboxes

_HEALTH = Call("GET", "/health", parse=ServerHealth.model_validate)


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
    ) -> None:
        config = resolve_config(api_url, api_key)
        self._transport = SyncTransport(config, timeout=request_timeout, http_client=http_client)
        self.sandboxes = Sandboxes(self._transport)

    @property
    def api_url(self) -> str:
        return self._transport.api_url

    def health(self) -> ServerHealth:
        return self._transport.send(_HEALTH)

    def close(self) -> None:
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
    ) -> None:
        config = resolve_config(api_url, api_key)
        self._transport = AsyncTransport(config, timeout=request_timeout, http_client=http_client)
        self.sandboxes = AsyncSandboxes(self._transport)

    @property
    def api_url(self) -> str:
        return self._transport.api_url

    async def health(self) -> ServerHealth:
        return await self._transport.send(_HEALTH)

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
