"""The warm pool over the in-memory host: what it starts, what it hands over, and what
it destroys.

A warm sandbox is started before anyone asks, owned by nobody and kept out of the store,
so the pool alone decides its fate: a sandbox it hands over must be one of the current
template version with the wanted disk (a disk cannot grow on hand-over), a stale or dead
one must be destroyed rather than handed over or leaked, a host that cannot start one
must leave the pool short (and the next hand-over must try again) rather than break
`create`, and closing must leave nothing of its own running. These tests drive each of
those paths on `FakeHost`, whose starts can be held back or made to fail at will.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from sandlot.core.host import Host
from sandlot.core.pool import WARM_RESOURCES, WarmPool, WarmSandbox, template_spec, with_agent
from sandlot.domain.host_values import SandboxSpec
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.domain.resources import Resources
from sandlot.templates.store import Template, TemplateStore
from tests.core.fake_host import FakeHost, FakeSession, template_store

SIZE = 2
pytestmark = pytest.mark.timeout(10)  # a pool that never stops filling fails, not hangs


@dataclass
class WarmingHost(FakeHost):
    """FakeHost that records what it is asked to start, can hold starts back until
    `held` is set, can let only `room` more starts succeed, and can make a destroy take
    `destroy_ticks` turns of the event loop."""

    specs: list[SandboxSpec] = field(default_factory=list)
    room: int | None = None
    held: asyncio.Event | None = None
    destroy_ticks: int = 0

    async def start(
        self,
        spec: SandboxSpec,
        policy: NetworkPolicy | None = None,
        *,
        snapshot: Path | None = None,
    ) -> FakeSession:
        self.specs.append(spec)
        if self.held is not None:
            await self.held.wait()
        if self.room is not None:
            if self.room <= 0:
                raise OSError("no room for another sandbox on this host")
            self.room -= 1
        return await super().start(spec, policy, snapshot=snapshot)

    async def destroy(self, sandbox_id: str, address: str | None = None) -> None:
        for _ in range(self.destroy_ticks):
            await asyncio.sleep(0)
        await super().destroy(sandbox_id, address)

    def warm_ids(self) -> set[str]:
        return set(self.sandboxes)

    def destroyed(self) -> list[str]:
        return [target for op, target in self.calls if op == "destroy"]


async def settle() -> None:
    """Let the pool's background fills and discards run to their end."""
    me = asyncio.current_task()
    for _ in range(1000):
        if all(t.done() for t in asyncio.all_tasks() if t is not me):
            return
        await asyncio.sleep(0)
    raise AssertionError("the pool's background work did not finish")


@pytest.fixture
def templates(tmp_path: Path) -> TemplateStore:
    return template_store(tmp_path / "templates")


@pytest.fixture
def host() -> WarmingHost:
    return WarmingHost()


def make_pool(
    host: WarmingHost, templates: TemplateStore, size: int = SIZE, names: tuple[str, ...] = ()
) -> WarmPool:
    return WarmPool(
        host=cast(Host, host),
        templates=templates,
        uid_offset=0,
        size=size,
        template_names=names or ("base",),
    )


@pytest.fixture
async def pool(host: WarmingHost, templates: TemplateStore) -> AsyncIterator[WarmPool]:
    pool = make_pool(host, templates)
    yield pool
    await pool.close()


async def filled(pool: WarmPool) -> None:
    pool.refill()
    await settle()


def rebuild(templates: TemplateStore, digest: str) -> Template:
    """A new version of `base` made current, as a template rebuild leaves it."""
    old = templates.get("base")
    staged = templates.staging_dir("base", digest)
    return templates.install(staged, dataclasses.replace(old, digest=digest))


def test_a_sandbox_stands_on_the_agent_layer_above_its_templates_layers() -> None:
    template = Template("web", "d1", (Path("/l/top"), Path("/l/bottom")), {"A": "1"}, "/srv")
    stacked = with_agent(template, Path("/agent"))
    assert stacked.layers == (Path("/agent"), Path("/l/top"), Path("/l/bottom"))
    assert (stacked.name, stacked.digest, stacked.env) == ("web", "d1", {"A": "1"})
    spec = template_spec(stacked, "sbx-1", WARM_RESOURCES, cpus="0-1")
    assert (spec.sandbox_id, spec.layers, spec.cpus) == ("sbx-1", stacked.layers, "0-1")
    assert (spec.env, spec.workdir, spec.resources) == ({"A": "1"}, "/srv", WARM_RESOURCES)


async def test_refill_starts_warm_sandboxes_of_the_current_template_up_to_size(
    pool: WarmPool, host: WarmingHost, templates: TemplateStore
) -> None:
    await filled(pool)
    assert len(host.warm_ids()) == SIZE
    agent = templates.agent_layer(0)
    base = templates.get("base")
    for spec in host.specs:
        assert spec.layers == (agent, *base.layers)
        assert (spec.resources, spec.cpus, spec.workdir) == (WARM_RESOURCES, None, base.workdir)
    assert {s.sandbox_id for s in host.specs} == host.warm_ids()
    await filled(pool)  # full: asks for nothing more
    assert len(host.specs) == SIZE


@pytest.mark.parametrize(
    "wanted",
    [WARM_RESOURCES, Resources(vcpus=4, memory_mb=4096, disk_mb=WARM_RESOURCES.disk_mb)],
)
async def test_take_hands_over_the_oldest_warm_sandbox_and_tops_the_pool_up(
    pool: WarmPool, host: WarmingHost, templates: TemplateStore, wanted: Resources
) -> None:
    """CPU and memory change on hand-over, so any of them takes a warm sandbox."""
    await filled(pool)
    first = host.specs[0].sandbox_id
    warm = pool.take(templates.get("base"), wanted)
    assert warm is not None and warm.sandbox_id == first
    assert warm.template_digest == templates.get("base").digest and not warm.session.closed
    await settle()
    assert len(host.warm_ids()) == SIZE + 1  # the one handed over and a full pool again
    assert first not in host.destroyed()


@pytest.mark.parametrize("disk_mb", [1024, WARM_RESOURCES.disk_mb + 1])
async def test_a_different_disk_size_takes_nothing_and_discards_nothing(
    pool: WarmPool, host: WarmingHost, templates: TemplateStore, disk_mb: int
) -> None:
    await filled(pool)
    wanted = dataclasses.replace(WARM_RESOURCES, disk_mb=disk_mb)
    assert pool.take(templates.get("base"), wanted) is None
    await settle()
    assert len(host.warm_ids()) == SIZE and host.destroyed() == []
    assert pool.take(templates.get("base"), WARM_RESOURCES) is not None  # still there


async def test_an_empty_pool_hands_over_nothing_but_starts_filling(
    pool: WarmPool, host: WarmingHost, templates: TemplateStore
) -> None:
    assert pool.take(templates.get("base"), WARM_RESOURCES) is None
    await settle()
    assert len(host.warm_ids()) == SIZE


async def test_templates_outside_the_pool_and_a_pool_of_size_zero_start_nothing(
    host: WarmingHost, templates: TemplateStore
) -> None:
    unpooled = dataclasses.replace(templates.get("base"), name="node")
    pools = [make_pool(host, templates), make_pool(host, templates, size=0)]
    try:
        assert pools[0].take(unpooled, WARM_RESOURCES) is None
        pools[1].refill()
        assert pools[1].take(templates.get("base"), WARM_RESOURCES) is None
        await settle()
        assert host.specs == [] and host.calls == []
    finally:
        for p in pools:
            await p.close()


async def test_after_a_rebuild_stale_warm_sandboxes_are_destroyed_not_handed_over(
    pool: WarmPool, host: WarmingHost, templates: TemplateStore
) -> None:
    await filled(pool)
    stale = host.warm_ids()
    stale_sessions = [host.sessions[i] for i in stale]
    current = rebuild(templates, "b2")
    assert pool.take(current, WARM_RESOURCES) is None
    await settle()
    assert set(host.destroyed()) == stale and all(s.closed for s in stale_sessions)
    assert len(host.warm_ids()) == SIZE and not stale & host.warm_ids()
    warm = pool.take(current, WARM_RESOURCES)
    assert warm is not None and warm.template_digest == "b2"


async def test_a_warm_sandbox_whose_agent_went_away_is_destroyed_and_skipped(
    pool: WarmPool, host: WarmingHost, templates: TemplateStore
) -> None:
    await filled(pool)
    dead, alive = (s.sandbox_id for s in host.specs)
    await host.sessions[dead].close()
    warm = pool.take(templates.get("base"), WARM_RESOURCES)
    assert warm is not None and warm.sandbox_id == alive
    await settle()
    assert host.destroyed() == [dead]
    assert len(host.warm_ids() - {alive}) == SIZE


async def test_a_host_that_cannot_start_leaves_the_pool_empty_until_the_next_take(
    pool: WarmPool, host: WarmingHost, templates: TemplateStore, caplog: pytest.LogCaptureFixture
) -> None:
    host.failing.add("start")
    with caplog.at_level(logging.ERROR, logger="sandlot.core.pool"):
        await filled(pool)
    assert host.warm_ids() == set() and len(host.specs) == 1  # gave up at the first failure
    assert "could not warm a base sandbox" in caplog.text
    host.failing.clear()
    assert pool.take(templates.get("base"), WARM_RESOURCES) is None  # nothing warm yet...
    await settle()
    assert pool.take(templates.get("base"), WARM_RESOURCES) is not None  # ...but it refilled


@pytest.mark.parametrize("room", [0, 1])
async def test_a_host_that_runs_out_of_room_leaves_the_pool_short(
    host: WarmingHost, templates: TemplateStore, room: int
) -> None:
    host.room = room
    pool = make_pool(host, templates, size=3)
    try:
        await filled(pool)
        assert len(host.warm_ids()) == room
        handed = [pool.take(templates.get("base"), WARM_RESOURCES) for _ in range(2)]
        assert sum(w is not None for w in handed) == room
    finally:
        await pool.close()


async def test_a_refill_while_one_is_filling_starts_no_second_fill(
    pool: WarmPool, host: WarmingHost
) -> None:
    host.held = asyncio.Event()
    pool.refill()
    pool.refill("base")
    await asyncio.sleep(0)
    pool.refill()
    await asyncio.sleep(0)
    assert len(host.specs) == 1  # one fill, waiting on its first start
    host.held.set()
    await settle()
    assert len(host.specs) == SIZE == len(host.warm_ids())


async def test_put_back_returns_a_sandbox_to_the_front_of_the_queue(
    pool: WarmPool, host: WarmingHost, templates: TemplateStore
) -> None:
    await filled(pool)
    base = templates.get("base")
    taken = pool.take(base, WARM_RESOURCES)
    assert taken is not None
    await settle()
    pool.put_back(base, taken)
    again = pool.take(base, WARM_RESOURCES)
    assert again is taken


async def test_refill_without_a_name_fills_every_pooled_template(
    host: WarmingHost, templates: TemplateStore
) -> None:
    base = templates.get("base")
    node = dataclasses.replace(base, name="node", digest="n1")
    templates.install(templates.staging_dir("node", "n1"), node)
    pool = make_pool(host, templates, size=1, names=("base", "node"))
    try:
        await filled(pool)
        handed = [pool.take(templates.get(n), WARM_RESOURCES) for n in ("base", "node")]
        assert all(isinstance(w, WarmSandbox) for w in handed)
        assert [w.template_digest for w in handed if w is not None] == [base.digest, "n1"]
    finally:
        await pool.close()


async def test_close_destroys_the_warm_sandboxes_but_not_those_handed_over(
    host: WarmingHost, templates: TemplateStore
) -> None:
    pool = make_pool(host, templates)
    await filled(pool)
    warm = pool.take(templates.get("base"), WARM_RESOURCES)
    assert warm is not None
    await settle()
    held = host.warm_ids() - {warm.sandbox_id}
    await pool.close()
    assert host.warm_ids() == {warm.sandbox_id}
    assert set(host.destroyed()) == held
    assert not warm.session.closed


async def test_close_stops_a_fill_in_progress(host: WarmingHost, templates: TemplateStore) -> None:
    host.held = asyncio.Event()
    pool = make_pool(host, templates)
    pool.refill()
    await asyncio.sleep(0)
    assert len(host.specs) == 1
    async with asyncio.timeout(1):
        await pool.close()
    host.held.set()
    await settle()
    assert host.warm_ids() == set() and len(host.specs) == 1


async def test_close_waits_for_discards_already_under_way(
    host: WarmingHost, templates: TemplateStore
) -> None:
    pool = make_pool(host, templates)
    await filled(pool)
    stale = host.warm_ids()
    host.destroy_ticks = 50
    assert pool.take(rebuild(templates, "b2"), WARM_RESOURCES) is None  # discards begin
    await pool.close()  # straight away: no settle in between
    assert set(host.destroyed()) == stale
    assert host.warm_ids() == set()


async def test_a_warm_sandbox_the_host_fails_to_destroy_holds_up_neither_close_nor_the_rest(
    host: WarmingHost, templates: TemplateStore
) -> None:
    """close() used to stop at the first failed destroy, leaving the rest running (and
    the service's own shutdown after it undone)."""
    pool = make_pool(host, templates)
    await filled(pool)
    held = host.warm_ids()
    host.failing.add("destroy")
    await pool.close()
    assert sorted(host.destroyed()) == sorted(held)  # each was tried, none raised
