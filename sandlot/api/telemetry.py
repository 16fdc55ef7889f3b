"""OpenTelemetry export, on when `otel_endpoint` is set: events as log records, API
requests as traces, both sent with OTLP over HTTP.

Events go out as log records, not spans. An event is a moment with attributes (a status
change, a command's end, a line of a sandbox's log), which is what the logs signal
carries; a span means work with a duration inside a trace, and a zero-length span per
event would only clutter trace views. Metrics events stay out: they are figures sampled
every few seconds for every sandbox, which `/metrics` serves to Prometheus already.

Only the server imports this module, and only when export is on, so the OpenTelemetry
packages (the `otel` extra) cost a server without it nothing at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import FastAPI
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from sandlot import __version__
from sandlot.core.events import TRANSIENT_TYPES, Event, EventBus, EventFilter

log = logging.getLogger(__name__)

EXPORT_DELAY_MS = 1000
"""How long records wait to be sent in a batch."""
UNTRACED_PATHS = "/health,/metrics"
"""Polled by load balancers and Prometheus: a trace each would drown the rest."""

_SYSLOG_SEVERITY = {
    "emerg": SeverityNumber.FATAL,
    "alert": SeverityNumber.FATAL,
    "crit": SeverityNumber.FATAL,
    "err": SeverityNumber.ERROR,
    "warning": SeverityNumber.WARN,
    "notice": SeverityNumber.INFO2,
    "info": SeverityNumber.INFO,
    "debug": SeverityNumber.DEBUG,
}


class Telemetry:
    """Sends what the server does to an OTLP/HTTP collector at `endpoint`
    (e.g. http://127.0.0.1:4318); started and closed with the server."""

    def __init__(self, endpoint: str, events: EventBus) -> None:
        base = endpoint.rstrip("/")
        resource = Resource.create({"service.name": "sandlot", "service.version": __version__})
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{base}/v1/traces"),
                schedule_delay_millis=EXPORT_DELAY_MS,
            )
        )
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(
                OTLPLogExporter(endpoint=f"{base}/v1/logs"),
                schedule_delay_millis=EXPORT_DELAY_MS,
            )
        )
        self._logger = self.logger_provider.get_logger("sandlot.events", __version__)
        self._events = events
        self._task: asyncio.Task[None] | None = None

    def instrument(self, app: FastAPI) -> None:
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.tracer_provider, excluded_urls=UNTRACED_PATHS
        )

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._export_events())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Shutting down flushes the batches: blocking HTTP, so off the event loop.
        await asyncio.to_thread(self.tracer_provider.shutdown)
        await asyncio.to_thread(self.logger_provider.shutdown)

    async def _export_events(self) -> None:
        with self._events.subscribe(EventFilter()) as events:
            async for event in events:
                if event.type not in TRANSIENT_TYPES:
                    self._emit(event)

    def _emit(self, event: Event) -> None:
        data = event.data
        if event.type == "log":
            body = str(data.get("line", ""))
            severity = _SYSLOG_SEVERITY.get(str(data.get("severity")), SeverityNumber.INFO)
        else:
            body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
            failed = event.type == "status" and data.get("status") == "error"
            severity = SeverityNumber.ERROR if failed else SeverityNumber.INFO
        attributes: dict[str, Any] = {
            "sandlot.event.type": event.type,
            "sandlot.org.id": event.org_id,
            **{f"sandlot.{key}": _attribute(value) for key, value in data.items()},
        }
        if event.id is not None:
            attributes["sandlot.event.id"] = event.id
        if event.sandbox_id is not None:
            attributes["sandlot.sandbox.id"] = event.sandbox_id
        self._logger.emit(
            timestamp=int(event.at.timestamp() * 1e9),
            severity_number=severity,
            severity_text=severity.name,
            body=body,
            attributes=attributes,
            event_name=f"sandlot.{event.type}",
        )


def _attribute(value: object) -> str | int | float | bool:
    """OTLP attributes are scalars: nested values and None travel as JSON text."""
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
