"""Resource figures, usage for billing, and the Prometheus exposition."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from sandlot import __version__
from sandlot.api.deps import Operator, Reader, Service
from sandlot.api.routes.sandboxes import SandboxId
from sandlot.api.schemas import Envelope, MetricsOut, UsageReportOut
from sandlot.core.service import SandboxService
from sandlot.errors import InvalidConfigError

router = APIRouter(tags=["monitoring"])

DEFAULT_WINDOW = timedelta(hours=24)


@router.get("/v1/sandboxes/{sandbox_id}/metrics")
def sandbox_metrics(sandbox_id: SandboxId, who: Reader, svc: Service) -> Envelope[MetricsOut]:
    """The latest sampled figures: CPU % of the quota, memory, disk, network rates, pids."""
    return Envelope(data=MetricsOut.model_validate(svc.readings.metrics(who.org_id, sandbox_id)))


@router.get("/v1/usage")
def usage(
    who: Reader,
    svc: Service,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
) -> Envelope[UsageReportOut]:
    """Sandbox-seconds, by vCPU and by MiB of memory, per sandbox and in total."""
    try:
        end = _in_utc(end) if end else datetime.now(UTC)
        start = _in_utc(start) if start else end - DEFAULT_WINDOW
    except OverflowError:  # a date near year 1 or 9999 that UTC (or a day before) cannot hold
        raise InvalidConfigError(
            "from and to must lie between the years 1 and 9999 in UTC", details={"field": "from"}
        ) from None
    if start >= end:
        raise InvalidConfigError("from must be before to", details={"field": "from"})
    return Envelope(
        data=UsageReportOut.of(start, end, svc.readings.usage_report(who.org_id, start, end))
    )


def _in_utc(moment: datetime) -> datetime:
    """Naive means UTC."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus(request: Request, who: Operator) -> PlainTextResponse:
    """Prometheus text format: server series and one series per running sandbox.

    Needs an admin key (send it as a bearer token from the scrape config): the series
    name every sandbox of every organisation.
    """
    registry = CollectorRegistry()
    registry.register(SandlotCollector(request.app.state.service))
    return PlainTextResponse(generate_latest(registry), media_type="text/plain; version=0.0.4")


class SandlotCollector(Collector):
    def __init__(self, service: SandboxService) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        svc = self.service
        info = InfoMetricFamily("sandlot_build", "Sandlot server version")
        info.add_metric([], {"version": __version__, "runtime": svc.host.name})
        yield info
        by_status = GaugeMetricFamily("sandlot_sandboxes", "Sandboxes by status", labels=["status"])
        for status, count in sorted(svc.readings.count_by_status().items()):
            by_status.add_metric([status], count)
        yield by_status
        yield GaugeMetricFamily(
            "sandlot_events_published", "Events published since start", value=svc.events.published
        )
        yield GaugeMetricFamily(
            "sandlot_event_subscribers",
            "Open event subscriptions (SSE and WebSocket streams, exporters)",
            value=svc.events.subscriber_count,
        )
        per_sandbox = {
            "cpu_percent": ("cpuPercent", "CPU use as a percentage of the sandbox's vCPU quota"),
            "memory_bytes": ("memBytes", "Memory in use"),
            "memory_limit_bytes": ("memLimitBytes", "Memory limit"),
            "disk_bytes": ("diskBytes", "Bytes used in the writable layer"),
            "network_receive_bytes_per_second": ("netRxBytesPerSec", "Network receive rate"),
            "network_transmit_bytes_per_second": ("netTxBytesPerSec", "Network transmit rate"),
            "pids": ("pids", "Processes and threads"),
        }
        for name, (key, doc) in per_sandbox.items():
            family = GaugeMetricFamily(f"sandlot_sandbox_{name}", doc, labels=["sandbox", "org"])
            for sandbox_id, figures in sorted(svc.sampler.latest.items()):
                family.add_metric(
                    [sandbox_id, svc.sampler.owners.get(sandbox_id, "")], figures[key]
                )
            yield family
