"""`sandlot sandbox watch`: a live view of one sandbox's status and figures.

`WatchView` is the state and its rendering, without I/O; `watch` feeds it from the
events socket (status and metrics events), or by polling when the socket fails.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer

from sandlot.cli.connection import ApiKey, ApiUrl, open_client
from sandlot.cli.output import human_bytes, reporting_errors

if TYPE_CHECKING:
    from rich.table import Table

    from sandlot.sdk import Event, EventStream, Metrics, Sandbox

BARS = "▁▂▃▄▅▆▇█"
HISTORY = 40
FINAL_STATUSES = ("terminated", "error")


def sparkline(values: Iterable[float], *, top: float | None = None, width: int = HISTORY) -> str:
    """The last `width` values as bars from ▁ to █: scaled to `top`, or to the largest
    value when `top` is `None`; negative values count as 0."""
    recent = list(values)[-width:] if width > 0 else []
    ceiling = top if top is not None else max(recent, default=0.0)
    if ceiling <= 0:
        return BARS[0] * len(recent)
    steps = len(BARS) - 1
    return "".join(BARS[min(round(max(value, 0.0) / ceiling * steps), steps)] for value in recent)


def _rate(value: float) -> str:
    return f"{human_bytes(value)}/s"


@dataclass(frozen=True)
class _Series:
    label: str
    read: Callable[[Metrics], float]
    describe: Callable[[Metrics], str]
    top: Callable[[Metrics], float | None]


_SERIES = (
    _Series("cpu", lambda m: m.cpu_percent, lambda m: f"{m.cpu_percent:.1f}%", lambda m: 100.0),
    _Series(
        "memory",
        lambda m: m.mem_percent,
        lambda m: (
            f"{m.mem_percent:.1f}% ({human_bytes(m.mem_bytes)} / {human_bytes(m.mem_limit_bytes)})"
        ),
        lambda m: 100.0,
    ),
    _Series(
        "disk",
        lambda m: float(m.disk_bytes),
        lambda m: f"{human_bytes(m.disk_bytes)} / {human_bytes(m.disk_limit_bytes)}",
        lambda m: float(m.disk_limit_bytes) or None,
    ),
    _Series(
        "net rx",
        lambda m: m.net_rx_bytes_per_sec,
        lambda m: _rate(m.net_rx_bytes_per_sec),
        lambda m: None,
    ),
    _Series(
        "net tx",
        lambda m: m.net_tx_bytes_per_sec,
        lambda m: _rate(m.net_tx_bytes_per_sec),
        lambda m: None,
    ),
    _Series("pids", lambda m: float(m.pids), lambda m: str(m.pids), lambda m: None),
)


@dataclass
class WatchView:
    """What the watch shows: the status, the latest figures and their recent history."""

    sandbox_id: str
    status: str
    reason: str | None = None
    latest: Metrics | None = None
    history: dict[str, deque[float]] = field(
        default_factory=lambda: {s.label: deque(maxlen=HISTORY) for s in _SERIES}
    )

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES

    def add(self, metrics: Metrics) -> None:
        self.latest = metrics
        for series in _SERIES:
            self.history[series.label].append(series.read(metrics))

    def apply(self, event: Event) -> None:
        """Take in a status or metrics event; other events change nothing here."""
        if event.status is not None:
            self.status = event.status
            reason = event.data.get("reason")
            self.reason = reason if isinstance(reason, str) and reason else None
        elif (metrics := event.metrics) is not None:
            self.add(metrics)

    def render(self) -> Table:
        from rich.table import Table

        table = Table(box=None, show_header=False, title_justify="left")
        table.title = f"{self.sandbox_id}  {self.status}" + (
            f" ({self.reason})" if self.reason else ""
        )
        table.add_column(style="bold", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        latest = self.latest
        for series in _SERIES:
            figure = "-" if latest is None else series.describe(latest)
            top = None if latest is None else series.top(latest)
            table.add_row(series.label, figure, sparkline(self.history[series.label], top=top))
        return table


def watch(
    ctx: typer.Context,
    sandbox_id: Annotated[
        str,
        typer.Argument(help="Sandbox id, e.g. sbx-7k2m9p4q1x.", metavar="ID", show_default=False),
    ],
    interval: Annotated[
        float,
        typer.Option(help="Seconds between samples when polling (if the events socket fails)."),
    ] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Show a sandbox's status, CPU, memory, disk, network and pids, live.

    Updates on each status and metrics event; exits when the sandbox ends
    (showing its final status) or on Ctrl-C.
    """
    from rich.console import Console
    from rich.live import Live

    console = Console(highlight=False, markup=False)
    with reporting_errors(as_json=False), open_client(ctx, api_url, api_key) as client:
        sbx = client.sandboxes.get(sandbox_id)
        view = WatchView(sbx.id, sbx.status, sbx.info.status_reason)
        _sample(sbx, view)
        if once or view.ended:
            console.print(view.render())
            return
        with (
            contextlib.suppress(KeyboardInterrupt),
            Live(view.render(), console=console, auto_refresh=False) as live,
        ):
            _follow(sbx, view, interval, lambda: live.update(view.render(), refresh=True))


def _sample(sbx: Sandbox, view: WatchView) -> None:
    """Poll the figures; a sandbox that has none now (not running) keeps the last ones."""
    from sandlot.errors import NotFoundError, SandlotError

    with contextlib.suppress(SandlotError):
        view.add(sbx.metrics())
    try:
        info = sbx.refresh()
    except NotFoundError:
        view.status, view.reason = "terminated", "gone"
        return
    view.status, view.reason = info.status, info.status_reason


def _follow(sbx: Sandbox, view: WatchView, interval: float, show: Callable[[], None]) -> None:
    """Update the view until the sandbox ends: from events while the socket works,
    by polling every `interval` seconds after it fails."""
    from sandlot.errors import SandlotError

    stream: EventStream | None
    try:
        stream = sbx.events(types=["status", "metrics"])
    except SandlotError:
        stream = None
    try:
        while not view.ended:
            if stream is not None and not stream.finished:
                try:
                    event = stream.read(interval)
                except SandlotError:
                    stream.close()
                    stream = None
                    continue
                if event is not None:
                    view.apply(event)
                    show()
                continue
            time.sleep(interval)
            _sample(sbx, view)
            show()
    finally:
        if stream is not None:
            stream.close()
