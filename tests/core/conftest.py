"""Fixtures shared by core's tests: a real, migrated SQLite store in the test's own
directory, so what the store does (ids, ordering, sums, deletes) is the real thing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandlot.store.database import Database, migrate
from tests.core.fake_host import FakeHost
from tests.core.world import World, build


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(database.engine)
    return database


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """A service over the in-memory host; closed after the test."""
    w = build(tmp_path, FakeHost())
    yield w
    await w.service.close()
