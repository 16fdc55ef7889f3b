"""Which templates an organisation sees, and what a recorded sandbox stands on, against
a template directory and a SQLite store made here (no root, no real layers)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandlot.core.catalog import Catalog
from sandlot.errors import TemplateNotFoundError
from sandlot.store.database import Database, migrate
from sandlot.store.tables import SandboxRow
from sandlot.templates.store import Template, TemplateStore


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(db.engine)
    store = TemplateStore(tmp_path / "templates")
    for name, owner, digest in [
        ("base", None, "b1"),
        ("web", "org-a", "a1"),
        ("web", "org-b", "b2"),
    ]:
        layer = store.root / ".layers" / f"{name}-{digest}" / "root"
        layer.mkdir(parents=True)
        template = Template(name, digest, (layer,), owner=owner, env={"WHO": str(owner)})
        store.install(store.staging_dir(name, digest, owner), template)
    return Catalog(db, store, uid_offset=100000)


def test_each_organisation_sees_its_own_and_the_built_in_ones(catalog: Catalog) -> None:
    assert sorted((t.name, t.owner) for t in catalog.listed("org-a")) == [
        ("base", None),
        ("web", "org-a"),
    ]
    assert catalog.visible("org-b", "web").env == {"WHO": "org-b"}
    assert catalog.visible("org-c", "base").owner is None
    with pytest.raises(TemplateNotFoundError):
        catalog.visible("org-c", "web")
    assert {t.owner for t in catalog.listed(None)} == {None, "org-a", "org-b"}


def test_a_recorded_stack_keeps_its_layers_and_its_templates_settings(
    catalog: Catalog, tmp_path: Path
) -> None:
    agent = tmp_path / "templates" / ".agent" / "x" / "root"
    web = catalog.visible("org-a", "web")
    row = SandboxRow(  # as the store recorded it; never written here
        id="sbx-1", org_id="org-a", template="web", template_digest="a1",
        rootfs=f"{agent}:{web.lowerdir}", status="running", vcpus=1, memory_mb=512,
        disk_mb=1024, env={}, meta={}, idle_timeout=600, created_at=datetime.now(UTC),
    )  # fmt: skip
    stack = catalog.stack_of(row)
    assert stack.layers == (agent, *web.layers)
    assert stack.env == {"WHO": "org-a"}  # the version is still on disk
    row.template_digest = "gone"
    assert catalog.stack_of(row).env == {}  # the record alone
