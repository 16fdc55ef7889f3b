"""Event streams, per sandbox and per organisation, as Server-Sent Events or WebSocket.

`since` resumes after the last event id a client saw: stored events after it are
replayed in order, then live ones follow. Metrics events are live only (no id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect

from sandlot.api.deps import Reader, Service, websocket_principal
from sandlot.api.routes.sandboxes import SandboxId
from sandlot.api.schemas import MAX_STORED_INT
from sandlot.core.events import Event, EventFilter, Subscription
from sandlot.core.service import SandboxService
from sandlot.errors import SandlotError

router = APIRouter(tags=["events"])

KEEPALIVE_SECONDS = 15.0
Since = Annotated[
    int | None, Query(ge=0, le=MAX_STORED_INT, description="Resume after this event id.")
]
Types = Annotated[
    str | None, Query(description="Comma-separated event types, e.g. status,metrics.")
]


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "sandboxId": event.sandbox_id,
        "at": event.at.isoformat(),
        "data": event.data,
    }


def _filter(org_id: str, sandbox_id: str | None, types: str | None) -> EventFilter:
    wanted = frozenset(t.strip() for t in types.split(",") if t.strip()) if types else None
    return EventFilter(org_id=org_id, sandbox_id=sandbox_id, types=wanted or None)


async def _sse(request: Request, events: Subscription) -> AsyncIterator[bytes]:
    """SSE blocks, with a keepalive comment whenever the stream is quiet.

    A client that hangs up gets this generator cancelled (or closed) wherever it waits;
    the subscription closes synchronously as the `with` block unwinds, leaving nothing
    behind either way.
    """
    with events:
        while not await request.is_disconnected():
            event = await events.next(timeout=KEEPALIVE_SECONDS)
            if event is None:
                yield b": keepalive\n\n"
                continue
            head = f"id: {event.id}\n" if event.id is not None else ""
            yield f"{head}event: {event.type}\ndata: {json.dumps(event_json(event))}\n\n".encode()


def _stream(
    request: Request, svc: SandboxService, wanted: EventFilter, since: int | None
) -> StreamingResponse:
    return StreamingResponse(
        _sse(request, svc.events.subscribe(wanted, since)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/v1/sandboxes/{sandbox_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def sandbox_events(
    request: Request,
    sandbox_id: SandboxId,
    who: Reader,
    svc: Service,
    since: Since = None,
    types: Types = None,
) -> StreamingResponse:
    """Server-Sent Events of one sandbox (also served as a WebSocket at the same path)."""
    svc.records.get(who.org_id, sandbox_id)
    return _stream(request, svc, _filter(who.org_id, sandbox_id, types), since)


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def org_events(
    request: Request, who: Reader, svc: Service, since: Since = None, types: Types = None
) -> StreamingResponse:
    """Server-Sent Events of the whole organisation (also a WebSocket at the same path)."""
    return _stream(request, svc, _filter(who.org_id, None, types), since)


@router.websocket("/v1/sandboxes/{sandbox_id}/events")
async def sandbox_events_ws(websocket: WebSocket, sandbox_id: str) -> None:
    await _websocket(websocket, sandbox_id)


@router.websocket("/v1/events")
async def org_events_ws(websocket: WebSocket) -> None:
    await _websocket(websocket, None)


async def _websocket(websocket: WebSocket, sandbox_id: str | None) -> None:
    await websocket.accept()
    svc: SandboxService = websocket.app.state.service
    params = websocket.query_params
    try:
        who = websocket_principal(websocket, "sandboxes:read")
        if sandbox_id is not None:
            svc.records.get(who.org_id, sandbox_id)
        since = int(params["since"]) if params.get("since") else None
        if since is not None and not 0 <= since <= MAX_STORED_INT:
            raise ValueError(f"must be an event id, 0 to {MAX_STORED_INT}")
    except (SandlotError, ValueError) as err:
        payload = (
            err.to_dict()
            if isinstance(err, SandlotError)
            else {
                "code": "INVALID_CONFIG",
                "message": f"since: {err}",
                "retryable": False,
                "details": {},
            }
        )
        await websocket.send_json({"type": "error", "error": payload})
        await websocket.close(code=1008)
        return
    events = svc.events.subscribe(_filter(who.org_id, sandbox_id, params.get("types")), since)
    closed = asyncio.ensure_future(_until_closed(websocket))
    try:
        with events:
            while not closed.done():
                pending = asyncio.ensure_future(events.next())
                done, _ = await asyncio.wait({pending, closed}, return_when=asyncio.FIRST_COMPLETED)
                if pending not in done:
                    pending.cancel()  # safe: a read holds no state the close below needs
                    break
                event = pending.result()
                if event is not None:
                    await websocket.send_text(json.dumps(event_json(event)))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        closed.cancel()
        with contextlib.suppress(Exception):
            await websocket.close()


async def _until_closed(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
