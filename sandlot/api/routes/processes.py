"""Commands inside a sandbox: run-and-wait, background processes, terminals, attach.

Attaching is a WebSocket that mirrors one agent attachment: binary messages carry
output (first byte: 1 stdout, 2 stderr, 3 pty) and stdin; text messages carry JSON
control (`attached`, `exit`, `error` from the server; `eof`, `signal`, `resize` from the
client). Closing the socket detaches; the process keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket
from starlette.websockets import WebSocketDisconnect

from sandlot.api.deps import Reader, Service, Writer, websocket_principal
from sandlot.api.routes.sandboxes import SandboxId
from sandlot.api.schemas import (
    Envelope,
    ExecIn,
    ExecOut,
    ProcessOut,
    PtySize,
    SignalIn,
    StartProcessIn,
)
from sandlot.core.incidents import internal_error
from sandlot.core.service import SandboxService
from sandlot.core.session import AttachmentLike
from sandlot.errors import InvalidConfigError, SandlotError

router = APIRouter(prefix="/v1/sandboxes/{sandbox_id}", tags=["processes"])

STREAM_CODES = {"stdout": 1, "stderr": 2, "pty": 3}


@router.post("/exec")
async def run_command(
    sandbox_id: SandboxId, body: ExecIn, who: Writer, svc: Service
) -> Envelope[ExecOut]:
    """Answers 504 SANDBOX_TIMEOUT, with the output so far in `details`, if `timeout` passes."""
    outcome = await svc.work.run_command(
        who.org_id,
        sandbox_id,
        body.command,
        cwd=body.cwd,
        env=body.env,
        timeout=body.timeout,
        user=body.user,
    )
    return Envelope(data=ExecOut.of(outcome))


@router.post("/processes", status_code=201)
async def start_process(
    sandbox_id: SandboxId, body: StartProcessIn, who: Writer, svc: Service
) -> Envelope[ProcessOut]:
    """Start a background process (or, with `pty`, a terminal); attach to see its output."""
    info = await svc.work.start_process(who.org_id, sandbox_id, body.to_request())
    return Envelope(data=ProcessOut.of(info))


@router.get("/processes")
async def list_processes(
    sandbox_id: SandboxId,
    who: Reader,
    svc: Service,
    include_exited: Annotated[bool, Query(alias="all")] = False,
) -> Envelope[list[ProcessOut]]:
    """Running processes started through Sandlot; `all=true` adds recently exited ones."""
    session = await svc.work.session(who.org_id, sandbox_id)
    return Envelope(data=[ProcessOut.of(p) for p in await session.list_processes(include_exited)])


@router.get("/processes/{process_id}")
async def get_process(
    sandbox_id: SandboxId, process_id: str, who: Reader, svc: Service
) -> Envelope[ProcessOut]:
    session = await svc.work.session(who.org_id, sandbox_id)
    return Envelope(data=ProcessOut.of(await session.process_info(process_id)))


@router.post("/processes/{process_id}/signal")
async def signal_process(
    sandbox_id: SandboxId, process_id: str, body: SignalIn, who: Writer, svc: Service
) -> Envelope[ProcessOut]:
    """Signal the process's whole group."""
    session = await svc.work.session(who.org_id, sandbox_id)
    await session.signal_process(process_id, body.signal)
    return Envelope(data=ProcessOut.of(await session.process_info(process_id)))


@router.post("/processes/{process_id}/resize")
async def resize_process(
    sandbox_id: SandboxId, process_id: str, body: PtySize, who: Writer, svc: Service
) -> Envelope[ProcessOut]:
    session = await svc.work.session(who.org_id, sandbox_id)
    await session.resize(process_id, body.cols, body.rows)
    return Envelope(data=ProcessOut.of(await session.process_info(process_id)))


@router.websocket("/processes/{process_id}/attach")
async def attach(websocket: WebSocket, sandbox_id: str, process_id: str) -> None:
    """Scrollback first, then live output until the process exits; stdin and control in."""
    await websocket.accept()
    svc: SandboxService = websocket.app.state.service
    try:
        who = websocket_principal(websocket, "sandboxes:write")
        attachment = await svc.work.attach(who.org_id, sandbox_id, process_id)
    except SandlotError as err:
        await websocket.send_json({"type": "error", "error": err.to_dict()})
        await websocket.close(code=1008 if err.status in (401, 403) else 1011)
        return
    await websocket.send_json(
        {
            "type": "attached",
            "process": ProcessOut.of(attachment.info).model_dump(mode="json", by_alias=True),
            "droppedBytes": attachment.dropped_bytes,
        }
    )
    output = asyncio.create_task(_pump_output(websocket, svc, sandbox_id, attachment))
    control = asyncio.create_task(_pump_input(websocket, svc, sandbox_id, attachment))
    with svc.live.hold(sandbox_id):
        done, _ = await asyncio.wait({output, control}, return_when=asyncio.FIRST_COMPLETED)
    if output in done:
        control.cancel()
        result = attachment.result
        if output.exception() is None and result is not None:
            svc.work.record_completion(who.org_id, sandbox_id, attachment.info["command"], result)
            with contextlib.suppress(Exception):
                await websocket.send_json(
                    {
                        "type": "exit",
                        "exitCode": result.exit_code,
                        "signal": result.signal,
                        "durationMs": result.duration_ms,
                        "timedOut": result.timed_out,
                    }
                )
        else:
            failure = output.exception()
            if not isinstance(failure, SandlotError):
                failure = internal_error(failure, f"attachment to {process_id} in {sandbox_id}")
            with contextlib.suppress(Exception):
                await websocket.send_json({"type": "error", "error": failure.to_dict()})
        with contextlib.suppress(Exception):
            await websocket.close(code=1000)
    else:
        output.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await output
        await attachment.detach()


async def _pump_output(
    websocket: WebSocket, svc: SandboxService, sandbox_id: str, attachment: AttachmentLike
) -> None:
    # Each send waits for the socket to drain, so a slow client slows the agent's
    # reading of the process (back-pressure) instead of growing a buffer here.
    async for stream, data in attachment:
        await websocket.send_bytes(bytes([STREAM_CODES[stream]]) + data)
        svc.live.touch(sandbox_id)


async def _pump_input(
    websocket: WebSocket, svc: SandboxService, sandbox_id: str, attachment: AttachmentLike
) -> None:
    while True:
        try:
            message = await websocket.receive()
        except WebSocketDisconnect:
            return
        if message["type"] == "websocket.disconnect":
            return
        svc.live.touch(sandbox_id)
        if message.get("bytes") is not None:
            await attachment.send_stdin(message["bytes"])
            continue
        try:
            await _control(attachment, json.loads(message.get("text") or "{}"))
        except SandlotError as exc:
            await websocket.send_json({"type": "error", "error": exc.to_dict()})
        except (ValueError, KeyError, TypeError) as exc:
            bad = InvalidConfigError(f"bad control message: {exc}")
            await websocket.send_json({"type": "error", "error": bad.to_dict()})


async def _control(attachment: AttachmentLike, message: dict[str, Any]) -> None:
    kind = message.get("type")
    if kind == "eof":
        await attachment.close_stdin()
    elif kind == "signal":
        await attachment.signal(message["signal"])
    elif kind == "resize":
        size = PtySize.model_validate({"cols": message.get("cols"), "rows": message.get("rows")})
        await attachment.resize(size.cols, size.rows)
    else:
        raise InvalidConfigError(
            f"unknown control message type {kind!r}; expected eof, signal or resize"
        )
