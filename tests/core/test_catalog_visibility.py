"""Which organisation sees which template, and what a recorded sandbox stands on, beyond
test_catalog.py: an organisation's own template shadowing a built-in one of its name,
a record naming another organisation's version, and which sandboxes and snapshots count
as a template's users or keep a layer in use.

A template directory is made here with the built-in `base` and its agent layer made
already (see fake_host.template_store), over a real SQLite store; nothing needs root.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandlot.core.catalog import Catalog
from sandlot.errors import TemplateNotFoundError
from sandlot.store import keys
from sandlot.store.database import Database
from sandlot.store.tables import SandboxRow, SnapshotRow
from sandlot.templates.agent_layer import AGENT_LAYER_DIR
from sandlot.templates.store import Template, TemplateStore
from tests.core.fake_host import template_store


@dataclass
class World:
    catalog: Catalog
    orgs: dict[str, str]
    """Organisation ids by name: `a`, `b` and `c`."""

    @property
    def store(self) -> TemplateStore:
        return self.catalog.templates

    def install(self, name: str, digest: str, owner: str | None, env: dict[str, str]) -> Template:
        layer = self.store.root / ".layers" / f"{owner}-{name}-{digest}" / "root"
        layer.mkdir(parents=True)
        template = Template(name, digest, (layer,), owner=owner, env=env)
        return self.store.install(self.store.staging_dir(name, digest, owner), template)


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    with db.session() as s:
        orgs = {name: keys.create_org(s, f"org-{name}").id for name in "abc"}
    w = World(Catalog(db, template_store(tmp_path / "templates"), uid_offset=0), orgs)
    w.install("web", "w1", None, env={"WHO": "everyone"})
    w.install("web", "wa", orgs["a"], env={"WHO": "a"})
    w.install("api", "pb", orgs["b"], env={"WHO": "b"})
    return w


def record(template: Template, org_id: str, layers: tuple[Path, ...]) -> dict[str, object]:
    """The columns a sandbox or snapshot records of what it stands on."""
    lowerdir = ":".join(str(p) for p in layers)
    return {
        "org_id": org_id,
        "template": template.name,
        "template_digest": template.digest,
        "rootfs": lowerdir,
        "vcpus": 1,
        "memory_mb": 512,
        "disk_mb": 1024,
        "env": {},
        "created_at": datetime.now(UTC),
    }


def sandbox_row(sandbox_id: str, template: Template, org_id: str, status: str) -> SandboxRow:
    """A sandbox as recorded since the agent layer: an agent layer over the template's."""
    agent = template.layers[0].parents[2] / AGENT_LAYER_DIR / "recorded" / "root"
    columns = record(template, org_id, (agent, *template.layers))
    return SandboxRow(id=sandbox_id, status=status, meta={}, idle_timeout=600, **columns)


def add_sandbox(w: World, sandbox_id: str, template: Template, org: str, status: str) -> None:
    with w.catalog.db.session() as s:
        s.add(sandbox_row(sandbox_id, template, w.orgs[org], status))


def add_snapshot(w: World, snapshot_id: str, template: Template, org: str) -> None:
    with w.catalog.db.session() as s:
        s.add(
            SnapshotRow(
                id=snapshot_id, sandbox_id="sbx-gone", name=snapshot_id, status="ready",
                has_memory=False, size_bytes=0, revision=1,
                **record(template, w.orgs[org], template.layers),
            )
        )  # fmt: skip


# ---- what an organisation sees ------------------------------------------------------------


@pytest.mark.parametrize(
    ("org", "expected"),
    [
        ("a", {("base", None), ("web", None), ("web", "a")}),
        ("b", {("base", None), ("web", None), ("api", "b")}),
        ("c", {("base", None), ("web", None)}),
    ],
)
def test_a_listing_shows_built_in_templates_and_the_organisations_own_alone(
    world: World, org: str, expected: set[tuple[str, str | None]]
) -> None:
    owner_names = {org_id: name for name, org_id in world.orgs.items()}
    listed = world.catalog.listed(world.orgs[org])
    assert {(t.name, owner_names.get(t.owner or "")) for t in listed} == expected


def test_the_operator_lists_every_organisations_templates(world: World) -> None:
    owners = {t.owner for t in world.catalog.listed(None)}
    assert owners == {None, world.orgs["a"], world.orgs["b"]}


@pytest.mark.parametrize(
    ("org", "who"), [("a", "a"), ("b", "everyone"), ("c", "everyone"), (None, "everyone")]
)
def test_an_own_template_shadows_the_built_in_one_of_its_name_for_its_owner_only(
    world: World, org: str | None, who: str
) -> None:
    org_id = None if org is None else world.orgs[org]
    template = world.catalog.visible(org_id, "web")
    assert template.env == {"WHO": who}
    assert template.owner == (org_id if who != "everyone" else None)


@pytest.mark.parametrize(("org", "name"), [("a", "api"), ("c", "api"), ("c", "nothing")])
def test_another_organisations_template_does_not_exist_for_you(
    world: World, org: str, name: str
) -> None:
    with pytest.raises(TemplateNotFoundError) as caught:
        world.catalog.visible(world.orgs[org], name)
    assert caught.value.code == "TEMPLATE_NOT_FOUND" and caught.value.status == 404
    assert caught.value.details == {"template": name} and not caught.value.retryable
    assert world.orgs["b"] not in caught.value.message


def test_a_rebuilt_own_template_is_what_its_owner_starts_from_next(world: World) -> None:
    world.install("web", "wa2", world.orgs["a"], env={"WHO": "a, rebuilt"})
    assert world.catalog.visible(world.orgs["a"], "web").digest == "wa2"
    assert world.catalog.visible(world.orgs["c"], "web").digest == "w1"


# ---- what a recorded sandbox stands on ----------------------------------------------------


def test_a_record_from_before_the_agent_layer_gets_it_on_top(world: World) -> None:
    web = world.catalog.visible(world.orgs["a"], "web")
    columns = record(web, world.orgs["a"], web.layers)
    row = SandboxRow(id="sbx-old", status="running", meta={}, idle_timeout=600, **columns)
    stack = world.catalog.stack_of(row)
    assert stack.layers == (world.catalog.agent_layer(), *web.layers)
    assert stack.env == {"WHO": "a"}


def test_a_record_naming_another_organisations_version_gets_none_of_its_settings(
    world: World,
) -> None:
    """Org c's record of org a's `web` digest: the layers it recorded, nothing of a's."""
    theirs = world.catalog.visible(world.orgs["a"], "web")
    row = sandbox_row("sbx-c", theirs, world.orgs["c"], "running")
    stack = world.catalog.stack_of(row)
    assert stack.env == {} and stack.owner is None
    assert stack.layers[1:] == theirs.layers


def test_a_built_in_version_gives_its_settings_to_any_organisations_record(world: World) -> None:
    web = world.catalog.visible(None, "web")
    for org_id in world.orgs.values():
        stack = world.catalog.stack_of(sandbox_row("sbx-x", web, org_id, "running"))
        assert stack.env == {"WHO": "everyone"} and stack.digest == web.digest


def test_a_record_whose_layers_differ_from_its_version_keeps_the_record(
    world: World, tmp_path: Path
) -> None:
    web = world.catalog.visible(world.orgs["a"], "web")
    row = sandbox_row("sbx-a", web, world.orgs["a"], "running")
    row.rootfs = f"{row.rootfs}:{tmp_path / 'extra'}"
    stack = world.catalog.stack_of(row)
    assert stack.env == {} and stack.layers[-1] == tmp_path / "extra"
    assert str(stack.layers[0]) == row.rootfs.split(":")[0]


# ---- who uses a template, and which layers are in use -------------------------------------


def test_an_own_templates_users_are_its_owners_alone(world: World) -> None:
    own_web = world.catalog.visible(world.orgs["a"], "web")
    built_in_web = world.catalog.visible(world.orgs["c"], "web")
    add_sandbox(world, "sbx-a1", own_web, "a", "running")
    add_sandbox(world, "sbx-c1", built_in_web, "c", "running")
    add_snapshot(world, "snap-a1", own_web, "a")
    add_snapshot(world, "snap-c1", built_in_web, "c")
    assert sorted(world.catalog.users(own_web)) == ["sbx-a1", "snap-a1"]
    assert sorted(world.catalog.users(built_in_web)) == ["sbx-a1", "sbx-c1", "snap-a1", "snap-c1"]


@pytest.mark.parametrize(
    ("status", "counts"),
    [
        ("creating", True),
        ("running", True),
        ("paused", True),
        ("stopping", True),
        ("error", False),
        ("terminated", False),
    ],
)
def test_a_sandbox_uses_its_template_and_layers_while_it_lives(
    world: World, status: str, counts: bool
) -> None:
    api = world.catalog.visible(world.orgs["b"], "api")
    add_sandbox(world, "sbx-b1", api, "b", status)
    assert (world.catalog.users(api) == ["sbx-b1"]) is counts
    assert (set(api.layers) <= world.catalog.layers_in_use()) is counts


def test_a_snapshot_keeps_its_layers_in_use_whatever_became_of_its_sandbox(world: World) -> None:
    api = world.catalog.visible(world.orgs["b"], "api")
    add_sandbox(world, "sbx-b1", api, "b", "terminated")
    assert world.catalog.layers_in_use() == set()
    add_snapshot(world, "snap-b1", api, "b")
    assert world.catalog.layers_in_use() == set(api.layers)
    assert world.catalog.users(api) == ["snap-b1"]
