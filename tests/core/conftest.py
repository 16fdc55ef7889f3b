"""Fixtures shared by core's tests: a real, migrated SQLite store in the test's own
directory, so what the store does (ids, ordering, sums, deletes) is the real thing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandlot.store.database import Database, migrate


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(database.engine)
    return database
