"""The metrics sampler's arithmetic and its events, over readings the test sets and a
clock it moves by hand.

Every figure a tenant sees in `sandlot sandbox metrics`, on the dashboard and in
Prometheus comes from `MetricsSampler`: CPU percent is a counter's delta over elapsed
time and the sandbox's vCPUs, network figures are byte counters turned into rates, and
memory is a share of the limit. A rate is only meaningful between two readings of the
same sandbox, so the tests also pin down which readings are kept: across partial passes
(the metrics route sampling one sandbox), but not across a complete pass that no
longer lists the sandbox (it starts from nothing if it comes back), and not replaced
by a failed read. `tests/core/test_metrics.py` covers what a partial and a complete
pass keep of `latest`; this file covers the figures themselves, owners and events.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from sandlot.core import metrics as metrics_module
from sandlot.core.events import EventBus, EventFilter
from sandlot.core.metrics import MetricsSampler, Sampled
from sandlot.domain.host_values import SandboxUsage
from sandlot.store import events as event_rows
from sandlot.store.database import Database
from tests.core.support import FakeClock, drain, join

MIB = 1 << 20
IDLE = SandboxUsage(
    cpu_ns=0,
    memory_bytes=64 * MIB,
    memory_limit_bytes=512 * MIB,
    pids=4,
    oom_kills=0,
    disk_bytes=100 * MIB,
    disk_limit_bytes=1024 * MIB,
)
A = Sampled("sbx-a", "org-1", 1)
B = Sampled("sbx-b", "org-2", 2)


class Readings:
    """A host whose counters the test sets per sandbox, and whose reads can fail."""

    def __init__(self) -> None:
        self.usages: dict[str, SandboxUsage] = {}
        self.broken: dict[str, OSError] = {}
        self.reads: list[str] = []

    def set(self, sandbox_id: str, **counters: int) -> None:
        self.usages[sandbox_id] = dataclasses.replace(self.usages.get(sandbox_id, IDLE), **counters)

    def add(self, sandbox_id: str, **deltas: int) -> None:
        now = self.usages.get(sandbox_id, IDLE)
        self.set(sandbox_id, **{k: getattr(now, k) + v for k, v in deltas.items()})

    def usage(self, sandbox_id: str) -> SandboxUsage:
        self.reads.append(sandbox_id)
        if sandbox_id in self.broken:
            raise self.broken[sandbox_id]
        return self.usages.get(sandbox_id, IDLE)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(metrics_module, "time", fake)
    return fake


@pytest.fixture
def host() -> Readings:
    return Readings()


@pytest.fixture
def sampler(host: Readings, clock: FakeClock) -> MetricsSampler:
    return MetricsSampler(host, EventBus())


def two_passes(
    sampler: MetricsSampler, host: Readings, clock: FakeClock, seconds: float, **deltas: int
) -> dict[str, object]:
    """A's figures after a first pass, `seconds` on the clock and `deltas` on its counters."""
    sampler.sample([A])
    clock.advance(seconds)
    host.add(A.sandbox_id, **deltas)
    sampler.sample([A])
    return sampler.latest[A.sandbox_id]


def test_a_first_reading_has_figures_but_no_rates(sampler: MetricsSampler, host: Readings) -> None:
    host.set(A.sandbox_id, cpu_ns=10**12, net_rx_bytes=10**9, net_tx_bytes=10**9)
    sampler.sample([A])
    figures = dict(sampler.latest[A.sandbox_id])
    at = datetime.fromisoformat(str(figures.pop("at")))
    assert at.tzinfo is not None and abs(datetime.now(UTC) - at) < timedelta(seconds=5)
    assert figures == {
        "cpuPercent": 0.0,  # a lifetime counter says nothing about now
        "memPercent": 12.5,
        "memBytes": 64 * MIB,
        "memLimitBytes": 512 * MIB,
        "diskBytes": 100 * MIB,
        "diskLimitBytes": 1024 * MIB,
        "netRxBytesPerSec": 0.0,
        "netTxBytesPerSec": 0.0,
        "pids": 4,
    }


@pytest.mark.parametrize(
    ("cpu_ns", "seconds", "vcpus", "percent"),
    [
        (500_000_000, 1.0, 1, 50.0),
        (1_000_000_000, 1.0, 1, 100.0),
        (1_000_000_000, 1.0, 2, 50.0),  # one busy core of two
        (3_000_000_000, 2.0, 2, 75.0),
        (1_000_000_000, 3.0, 1, 33.33),  # rounded to two places
        (8_000_000_000, 1.0, 8, 100.0),
        (1, 10.0, 1, 0.0),
    ],
)
def test_cpu_percent_is_the_counters_delta_over_elapsed_time_and_vcpus(
    host: Readings, clock: FakeClock, cpu_ns: int, seconds: float, vcpus: int, percent: float
) -> None:
    sampler = MetricsSampler(host, EventBus())
    sandbox = dataclasses.replace(A, vcpus=vcpus)
    host.set(A.sandbox_id, cpu_ns=7_000_000_000)
    sampler.sample([sandbox])
    clock.advance(seconds)
    host.add(A.sandbox_id, cpu_ns=cpu_ns)
    sampler.sample([sandbox])
    assert sampler.latest[A.sandbox_id]["cpuPercent"] == percent


@pytest.mark.parametrize(
    ("rx", "tx", "seconds", "rates"),
    [
        (1000, 500, 1.0, (1000.0, 500.0)),
        (3000, 0, 2.0, (1500.0, 0.0)),
        (1, 2, 3.0, (0.3, 0.7)),  # rounded to one place
        (0, 10 * MIB, 0.5, (0.0, 20.0 * MIB)),
    ],
)
def test_network_figures_are_bytes_per_second_between_readings(
    sampler: MetricsSampler,
    host: Readings,
    clock: FakeClock,
    rx: int,
    tx: int,
    seconds: float,
    rates: tuple[float, float],
) -> None:
    figures = two_passes(sampler, host, clock, seconds, net_rx_bytes=rx, net_tx_bytes=tx)
    assert (figures["netRxBytesPerSec"], figures["netTxBytesPerSec"]) == rates


def test_counters_that_went_backwards_read_as_idle_not_negative(
    sampler: MetricsSampler, host: Readings, clock: FakeClock
) -> None:
    """A restored or restarted sandbox has new cgroup and interface counters."""
    host.set(A.sandbox_id, cpu_ns=5 * 10**9, net_rx_bytes=10**6, net_tx_bytes=10**6)
    figures = two_passes(
        sampler, host, clock, 1.0, cpu_ns=-5 * 10**9, net_rx_bytes=-(10**6), net_tx_bytes=-10
    )
    assert (figures["cpuPercent"], figures["netRxBytesPerSec"]) == (0.0, 0.0)
    assert figures["netTxBytesPerSec"] == 0.0


def test_two_passes_at_the_same_instant_give_no_rates(
    sampler: MetricsSampler, host: Readings, clock: FakeClock
) -> None:
    figures = two_passes(sampler, host, clock, 0.0, cpu_ns=10**9, net_rx_bytes=10**6)
    assert (figures["cpuPercent"], figures["netRxBytesPerSec"]) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("used", "limit", "percent"),
    [
        (64 * MIB, 512 * MIB, 12.5),
        (1, 3, 33.33),
        (512 * MIB, 512 * MIB, 100.0),
        (0, MIB, 0.0),
        (64 * MIB, 0, 0.0),  # no limit read: no share (it used to divide by 1)
    ],
)
def test_memory_percent_is_a_share_of_the_limit(
    sampler: MetricsSampler, host: Readings, used: int, limit: int, percent: float
) -> None:
    host.set(A.sandbox_id, memory_bytes=used, memory_limit_bytes=limit)
    sampler.sample([A])
    figures = sampler.latest[A.sandbox_id]
    assert (figures["memPercent"], figures["memBytes"], figures["memLimitBytes"]) == (
        percent,
        used,
        limit,
    )


def test_each_sandbox_is_rated_by_its_own_vcpus_and_owned_by_its_org(
    sampler: MetricsSampler, host: Readings, clock: FakeClock
) -> None:
    sampler.sample([A, B])
    clock.advance(1.0)
    for sandbox in (A, B):
        host.add(sandbox.sandbox_id, cpu_ns=10**9)
    sampler.sample([A, B])
    assert sampler.latest["sbx-a"]["cpuPercent"] == 100.0
    assert sampler.latest["sbx-b"]["cpuPercent"] == 50.0
    assert sampler.owners == {"sbx-a": "org-1", "sbx-b": "org-2"}


def test_a_partial_pass_keeps_other_sandboxes_readings_for_their_next_rate(
    sampler: MetricsSampler, host: Readings, clock: FakeClock
) -> None:
    sampler.sample([A, B])
    clock.advance(1.0)
    sampler.sample([B], complete=False)  # the metrics route asking about B alone
    clock.advance(1.0)
    host.add(A.sandbox_id, cpu_ns=10**9)
    sampler.sample([A, B])
    assert sampler.latest["sbx-a"]["cpuPercent"] == 50.0  # over both seconds since A's read


def test_a_sandbox_a_complete_pass_left_out_starts_afresh(
    sampler: MetricsSampler, host: Readings, clock: FakeClock
) -> None:
    sampler.sample([A, B])
    sampler.sample([B])  # A paused or destroyed: all of it is forgotten
    assert A.sandbox_id not in sampler.latest and A.sandbox_id not in sampler.owners
    clock.advance(1.0)
    host.add(A.sandbox_id, cpu_ns=10**9)
    sampler.sample([A, B])
    assert sampler.latest["sbx-a"]["cpuPercent"] == 0.0  # no reading to rate it against
    sampler.sample([])
    assert sampler.latest == {} and sampler.owners == {}


@pytest.mark.parametrize(
    "error", [FileNotFoundError("cgroup gone"), PermissionError("denied"), OSError("EIO")]
)
async def test_a_failed_read_skips_the_sandbox_and_keeps_its_last_figures(
    sampler: MetricsSampler, host: Readings, clock: FakeClock, error: OSError
) -> None:
    sampler.sample([A, B])
    before = sampler.latest[A.sandbox_id]
    with sampler.events.subscribe(EventFilter(sandbox_id=A.sandbox_id)) as sub:
        await join(sub)
        clock.advance(1.0)
        host.broken[A.sandbox_id] = error
        sampler.sample([A, B])  # B after A is still read
        assert await drain(sub) == []
    assert host.reads[-2:] == [A.sandbox_id, B.sandbox_id]
    assert sampler.latest[A.sandbox_id] is before and sampler.owners[A.sandbox_id] == "org-1"
    del host.broken[A.sandbox_id]
    clock.advance(1.0)
    host.add(A.sandbox_id, cpu_ns=10**9)
    sampler.sample([A, B])
    assert sampler.latest[A.sandbox_id]["cpuPercent"] == 50.0  # rated from before the failure


async def test_every_pass_publishes_each_sandboxs_figures_to_its_org(
    sampler: MetricsSampler,
) -> None:
    with (
        sampler.events.subscribe(EventFilter(org_id="org-1")) as org_1,
        sampler.events.subscribe(EventFilter(types=frozenset({"metrics"}))) as every,
    ):
        await join(org_1)
        await join(every)
        sampler.sample([A, B])
        sampler.sample([A], complete=False)
        mine, all_of_them = await drain(org_1), await drain(every)
    assert [(e.type, e.sandbox_id, e.org_id) for e in mine] == [("metrics", "sbx-a", "org-1")] * 2
    assert [e.sandbox_id for e in all_of_them] == ["sbx-a", "sbx-b", "sbx-a"]
    assert mine[-1].data == sampler.latest["sbx-a"]


async def test_metrics_go_out_live_and_are_never_stored(db: Database, clock: FakeClock) -> None:
    bus = EventBus(db)
    sampler = MetricsSampler(Readings(), bus)
    with bus.subscribe(EventFilter(org_id=A.org_id)) as sub:
        await join(sub)
        sampler.sample([A])
        bus.flush()
        events = await drain(sub)
    assert [(e.type, e.id) for e in events] == [("metrics", None)]
    with db.session() as s:
        assert list(event_rows.after(s, A.org_id, 0)) == []
