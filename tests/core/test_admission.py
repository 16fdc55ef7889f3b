"""Admission against a real SQLite store: a sandbox within its organisation's quota and
the host's room is recorded as `creating`; one past either is refused and nothing is
recorded; an organisation's own quota replaces the server's default; and concurrent
creates never both take the last room."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandlot.core.admission import Admission
from sandlot.core.capacity import Capacity
from sandlot.core.models import CreateSandbox
from sandlot.core.quotas import Quota
from sandlot.domain.resources import Resources
from sandlot.errors import ResourceExhaustedError
from sandlot.store import keys
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database
from sandlot.store.tables import Org
from sandlot.templates.store import Template

TEMPLATE = Template("base", "d1", (Path("/layers/base"),))
SMALL = Quota(3, 4, 4096)


@pytest.fixture
def org(db: Database) -> str:
    with db.session() as s:
        return keys.create_org(s, "acme").id


def admission(db: Database, tmp_path: Path, quota: Quota = SMALL) -> Admission:
    return Admission(db, Capacity(tmp_path, memory_overcommit=1.0), quota)


def ask(memory_mb: int = 512, vcpus: int = 1) -> CreateSandbox:
    return CreateSandbox("base", Resources(vcpus, memory_mb, 1024), timeout=60)


def live_ids(db: Database) -> list[str]:
    with db.session() as s:
        return [r.id for r in sandbox_rows.live(s)]


def test_an_admitted_sandbox_is_recorded_as_creating(
    db: Database, org: str, tmp_path: Path
) -> None:
    asyncio.run(admission(db, tmp_path).admit(org, "sbx-1", TEMPLATE, ask()))
    with db.session() as s:
        row = sandbox_rows.get(s, "sbx-1")
        assert row is not None
        assert (row.status, row.template, row.rootfs) == ("creating", "base", "/layers/base")
        assert row.expires_at is not None


def test_past_the_quota_is_refused_and_nothing_is_recorded(
    db: Database, org: str, tmp_path: Path
) -> None:
    gate = admission(db, tmp_path)
    for n in range(3):
        asyncio.run(gate.admit(org, f"sbx-{n}", TEMPLATE, ask()))
    with pytest.raises(ResourceExhaustedError, match="allows 3 sandboxes") as refused:
        asyncio.run(gate.admit(org, "sbx-4", TEMPLATE, ask()))
    assert refused.value.retryable is False
    assert sorted(live_ids(db)) == ["sbx-0", "sbx-1", "sbx-2"]


def test_an_organisations_own_quota_replaces_the_default(
    db: Database, org: str, tmp_path: Path
) -> None:
    with db.session() as s:
        found = s.get(Org, org)
        assert found is not None
        found.max_vcpus = 1
    with pytest.raises(ResourceExhaustedError, match="allows 1 vcpus"):
        asyncio.run(admission(db, tmp_path).admit(org, "sbx-1", TEMPLATE, ask(vcpus=2)))


def test_past_the_hosts_memory_is_refused(db: Database, org: str, tmp_path: Path) -> None:
    gate = admission(db, tmp_path, Quota(100, 100, 1 << 30))
    too_much = gate.capacity.memory_budget_mb + 1
    with pytest.raises(ResourceExhaustedError, match="MiB of sandbox memory is free"):
        asyncio.run(gate.admit(org, "sbx-1", TEMPLATE, ask(memory_mb=too_much)))
    assert live_ids(db) == []


def test_concurrent_creates_never_both_take_the_last_room(
    db: Database, org: str, tmp_path: Path
) -> None:
    gate = admission(db, tmp_path, Quota(1, 4, 4096))

    async def race() -> list[BaseException | None]:
        tries = [gate.admit(org, f"sbx-{n}", TEMPLATE, ask()) for n in range(5)]
        outcomes = await asyncio.gather(*tries, return_exceptions=True)
        return [o if isinstance(o, BaseException) else None for o in outcomes]

    outcomes = asyncio.run(race())
    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, ResourceExhaustedError) for o in outcomes if o is not None)
    assert len(live_ids(db)) == 1
