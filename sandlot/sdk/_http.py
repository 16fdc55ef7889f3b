"""The wire: API operations described once, sent by a blocking or an asyncio transport.

Every operation is first built as a `Call` (method, path, query, body, how to read
the answer) without any I/O. `SyncTransport` and `AsyncTransport` only send calls,
stream bodies and turn HTTP failures into `sandlot.errors` exceptions; everything
they share lives in `_TransportBase`.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from sandlot import __version__
from sandlot.errors import InternalError, SandlotError, error_from_payload
from sandlot.sdk._attach import websocket_url
from sandlot.sdk._config import ClientConfig

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection as AsyncWebSocket
    from websockets.sync.client import ClientConnection as SyncWebSocket

T = TypeVar("T")

CHUNK_SIZE = 1024 * 1024
# The largest message the server may send: a whole scrollback replayed at once.
MAX_WEBSOCKET_MESSAGE = 64 * 1024 * 1024 + 1
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
# Seconds between pings on sockets that are read continuously (events), so a
# connection that died silently is noticed and reopened.
KEEPALIVE_INTERVAL = 20.0

Content = str | bytes | IO[bytes]


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET = _Unset.UNSET


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API operation, described without doing it.

    `parse` receives the `data` member of the JSON answer. `read_timeout` overrides
    the transport's read timeout (`None`: wait as long as it takes).
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    json: Any = None
    read_timeout: float | Literal[_Unset.UNSET] | None = UNSET


def ignore_body(_: Any) -> None:
    return None


def sandbox_path(sandbox_id: str, suffix: str = "") -> str:
    """The API path of a sandbox, or of `suffix` under it."""
    return f"/v1/sandboxes/{quote(sandbox_id, safe='')}{suffix}"


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, to try again after a retryable error.

    Only errors the server marks retryable (rate limits, exhausted capacity, an agent
    not answering yet) and failures to connect at all are retried; a request that may
    have been carried out is never sent twice. Waits grow exponentially with jitter and
    never undercut the server's Retry-After.
    """

    max_retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 8.0

    def delay(self, err: SandlotError, attempt: int) -> float | None:
        """Seconds to wait before try number `attempt + 1`, or None to give up."""
        if attempt >= self.max_retries or not err.retryable or err.details.get("sent"):
            return None
        wait = min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
        retry_after = err.details.get("retryAfterSeconds", err.details.get("retryAfter"))
        if retry_after is not None:
            wait = max(wait, float(retry_after))
        return float(wait)


class _TransportBase:
    def __init__(
        self,
        config: ClientConfig,
        timeout: httpx.Timeout | float | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.retry = retry or RetryPolicy()
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._headers = {"X-API-Key": config.api_key, "User-Agent": _user_agent()}

    @property
    def api_url(self) -> str:
        return self.config.api_url

    def _request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        call: Call[Any],
        *,
        content: bytes | Iterator[bytes] | AsyncIterator[bytes] | None = None,
        content_length: int | None = None,
    ) -> httpx.Request:
        headers = dict(self._headers)
        if content_length is not None:
            headers["Content-Length"] = str(content_length)
        return http.build_request(
            call.method,
            self.config.api_url + call.path,
            params={key: _query_value(value) for key, value in call.params.items()},
            json=call.json,
            content=content,
            headers=headers,
            timeout=self._timeout_for(call),
        )

    def _timeout_for(self, call: Call[Any]) -> httpx.Timeout:
        if call.read_timeout is UNSET:
            return self.timeout
        return httpx.Timeout(
            connect=self.timeout.connect,
            read=call.read_timeout,
            write=self.timeout.write,
            pool=self.timeout.pool,
        )

    @contextmanager
    def _translating_transport_errors(self) -> Iterator[None]:
        where = {"apiUrl": self.api_url}
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise InternalError(
                f"cannot reach the Sandlot server at {self.api_url} ({exc}); "
                "start one with `sandlot serve` or point SANDLOT_API_URL at it",
                details=where,
                retryable=True,
            ) from exc
        except httpx.TimeoutException as exc:
            raise InternalError(
                f"the Sandlot server at {self.api_url} did not answer in time ({exc!r})",
                details={**where, "sent": True},
                retryable=True,
            ) from exc
        except httpx.TransportError as exc:
            raise InternalError(
                f"the connection to the Sandlot server at {self.api_url} failed ({exc!r})",
                details={**where, "sent": True},
                retryable=True,
            ) from exc

    def _websocket_options(self, *, keepalive: bool = False) -> dict[str, Any]:
        return {
            "additional_headers": {"X-API-Key": self.config.api_key},
            "user_agent_header": _user_agent(),
            "open_timeout": self.timeout.connect,
            # Output is read only as fast as the caller consumes it; a keepalive ping
            # would time out behind unread output and drop a healthy attachment.
            "ping_interval": KEEPALIVE_INTERVAL if keepalive else None,
            "max_size": MAX_WEBSOCKET_MESSAGE,
        }

    @contextmanager
    def _translating_websocket_errors(self, url: str) -> Iterator[None]:
        from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException

        where = {"apiUrl": self.api_url}
        try:
            yield
        except InvalidStatus as exc:
            raise _error_from_handshake(url, exc.response.status_code, exc.response.body) from exc
        except (InvalidHandshake, WebSocketException) as exc:
            raise InternalError(
                f"the WebSocket to {url} could not be opened ({exc})", details=where, retryable=True
            ) from exc
        except TimeoutError as exc:
            raise InternalError(
                f"the Sandlot server at {self.api_url} did not answer in time",
                details=where,
                retryable=True,
            ) from exc
        except OSError as exc:
            raise InternalError(
                f"cannot reach the Sandlot server at {self.api_url} ({exc}); "
                "start one with `sandlot serve` or point SANDLOT_API_URL at it",
                details=where,
                retryable=True,
            ) from exc

    @staticmethod
    def _parse(call: Call[T], response: httpx.Response) -> T:
        if response.is_error:
            raise error_from_response(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise _malformed(response, "the body is not JSON") from exc
        if not isinstance(body, dict) or "data" not in body:
            raise _malformed(response, "the body has no `data` member")
        try:
            return call.parse(body["data"])
        except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError included
            raise _malformed(response, f"the data does not fit: {exc}") from exc


class SyncTransport(_TransportBase):
    """Sends calls over a blocking `httpx.Client`."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        http_client: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(config, timeout, retry)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client()
        # What else must stop with the connection: the event listeners using it.
        self.on_close: list[Callable[[], None]] = []

    def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                with self._translating_transport_errors():
                    response = self._http.send(self._request(self._http, call))
                return self._parse(call, response)
            except SandlotError as err:
                wait = self.retry.delay(err, attempt)
                if wait is None:
                    raise
            attempt += 1
            time.sleep(wait)

    def upload(self, call: Call[T], content: Content) -> T:
        body, length = _sync_body(content)
        with self._translating_transport_errors():
            request = self._request(self._http, call, content=body, content_length=length)
            response = self._http.send(request)
        return self._parse(call, response)

    def download(self, call: Call[Any], sink: IO[bytes]) -> int:
        """Stream the answer's body into `sink` chunk by chunk; returns the bytes written."""
        written = 0
        with self._translating_transport_errors():
            response = self._http.send(self._request(self._http, call), stream=True)
            try:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                for chunk in response.iter_bytes(CHUNK_SIZE):
                    sink.write(chunk)
                    written += len(chunk)
            finally:
                response.close()
        return written

    def open_websocket(self, path: str, *, keepalive: bool = False) -> SyncWebSocket:
        """A WebSocket to `path` (which may carry a query); `keepalive` pings it."""
        from websockets.sync.client import connect

        url = websocket_url(self.api_url, path)
        options = self._websocket_options(keepalive=keepalive)
        with self._translating_websocket_errors(url):
            # `legacy=True`: the connection itself, not a context manager for it.
            connection: SyncWebSocket = connect(url, legacy=True, **options)
        return connection

    def close(self) -> None:
        for stop in list(self.on_close):
            stop()
        if self._owns_http:
            self._http.close()


class AsyncTransport(_TransportBase):
    """Sends calls over an `httpx.AsyncClient`."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(config, timeout, retry)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        self.on_close: list[Callable[[], Awaitable[None]]] = []

    async def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                with self._translating_transport_errors():
                    response = await self._http.send(self._request(self._http, call))
                return self._parse(call, response)
            except SandlotError as err:
                wait = self.retry.delay(err, attempt)
                if wait is None:
                    raise
            attempt += 1
            await asyncio.sleep(wait)

    async def upload(self, call: Call[T], content: Content) -> T:
        body, length = _async_body(content)
        with self._translating_transport_errors():
            request = self._request(self._http, call, content=body, content_length=length)
            response = await self._http.send(request)
        return self._parse(call, response)

    async def download(self, call: Call[Any], sink: IO[bytes]) -> int:
        written = 0
        with self._translating_transport_errors():
            response = await self._http.send(self._request(self._http, call), stream=True)
            try:
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response)
                async for chunk in response.aiter_bytes(CHUNK_SIZE):
                    sink.write(chunk)
                    written += len(chunk)
            finally:
                await response.aclose()
        return written

    async def open_websocket(self, path: str, *, keepalive: bool = False) -> AsyncWebSocket:
        from websockets.asyncio.client import connect

        url = websocket_url(self.api_url, path)
        options = self._websocket_options(keepalive=keepalive)
        with self._translating_websocket_errors(url):
            return await connect(url, **options)

    async def close(self) -> None:
        for stop in list(self.on_close):
            await stop()
        if self._owns_http:
            await self._http.aclose()


def error_from_response(response: httpx.Response) -> SandlotError:
    """The exception an error answer describes, or an INTERNAL one if it describes none."""
    try:
        payload = response.json().get("error")
    except (ValueError, AttributeError):
        payload = None
    if not isinstance(payload, dict):
        return InternalError(
            f"HTTP {response.status_code} from {response.request.url} without a Sandlot "
            f"error body: {response.text[:200]!r}",
            details={"status": response.status_code},
            retryable=response.status_code >= 500,
        )
    err = error_from_payload(payload)
    retry_after = response.headers.get("Retry-After")
    if retry_after is not None:
        err.details.setdefault("retryAfter", retry_after)
    return err


def _error_from_handshake(url: str, status: int, body: bytes | bytearray | None) -> SandlotError:
    """The exception a refused WebSocket handshake describes in its body, if it does."""
    try:
        payload = json.loads(body or b"").get("error")
    except (ValueError, AttributeError):
        payload = None
    if isinstance(payload, dict):
        return error_from_payload(payload)
    return InternalError(
        f"HTTP {status} instead of a WebSocket from {url}",
        details={"status": status},
        retryable=status >= 500,
    )


def _malformed(response: httpx.Response, why: str) -> InternalError:
    return InternalError(
        f"unexpected answer from {response.request.url}: {why}",
        details={"status": response.status_code},
    )


def _query_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _sync_body(content: Content) -> tuple[bytes | Iterator[bytes], int | None]:
    if isinstance(content, str | bytes | bytearray | memoryview):
        return _as_bytes(content), None
    return _iter_chunks(content), _remaining_size(content)


def _async_body(content: Content) -> tuple[bytes | AsyncIterator[bytes], int | None]:
    if isinstance(content, str | bytes | bytearray | memoryview):
        return _as_bytes(content), None
    return _aiter_chunks(content), _remaining_size(content)


def _as_bytes(content: str | bytes | bytearray | memoryview) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else bytes(content)


def _iter_chunks(fileobj: IO[bytes]) -> Iterator[bytes]:
    while chunk := fileobj.read(CHUNK_SIZE):
        yield chunk


async def _aiter_chunks(fileobj: IO[bytes]) -> AsyncIterator[bytes]:
    # Reads from a local file are short enough not to matter to the event loop.
    while chunk := fileobj.read(CHUNK_SIZE):
        yield chunk


def _remaining_size(fileobj: IO[bytes]) -> int | None:
    """Bytes left to read from a seekable file, so the upload can declare its length."""
    try:
        if not fileobj.seekable():
            return None
        start = fileobj.tell()
        end = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(start)
    except (OSError, ValueError, AttributeError):
        return None
    return max(end - start, 0)


def _user_agent() -> str:
    return f"sandlot-python/{__version__} httpx/{httpx.__version__}"
