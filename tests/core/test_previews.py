"""Preview exposures against a real SQLite store: what the edge proxy lets through.

`Previews` decides, on every proxied request, whether a port of a sandbox may be
reached and whether the caller's token opens it. A mistake here either leaks a
tenant's private service to the internet or locks a tenant out of its own preview, so
these tests pin down: automatic ports are public only while the sandbox has a policy on
this host; a token is returned once, stored only as its SHA-256, and a new exposure voids
the old token; closing removes the port from the store and the cache; a fresh `Previews`
over the same store sees the same exposures (and their tokens still work); the cache
is kept only for sandboxes with a policy; and `port.exposed` / `port.closed` events
carry the port but never the token.

`Previews` does not check that the organisation owns the sandbox (the service does that
before calling it); the org id it is given labels the events it publishes.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from sandlot.core.events import EventBus, EventFilter
from sandlot.core.previews import Auth, Exposure, PreviewConfig, Previews
from sandlot.domain.network_policy import DEFAULT_PREVIEW_PORTS, NetworkPolicy
from sandlot.errors import AuthenticationError, PortNotExposedError
from sandlot.store import keys
from sandlot.store import ports as port_rows
from sandlot.store.database import Database
from sandlot.store.tables import SandboxRow
from tests.core.support import drain, join

CONFIG = PreviewConfig(domain="preview.test", scheme="https", port=443)
POLICY = NetworkPolicy()  # the default automatic ports: 3000, 3001, 5173, 8000, 8080
NOT_AUTOMATIC = 9000
assert NOT_AUTOMATIC not in DEFAULT_PREVIEW_PORTS


def add_org(db: Database, name: str) -> str:
    with db.session() as s:
        return keys.create_org(s, name).id


def add_sandbox(db: Database, org_id: str, sandbox_id: str) -> str:
    """A running sandbox row: ports reference their sandbox in the store."""
    with db.session() as s:
        s.add(
            SandboxRow(
                id=sandbox_id,
                org_id=org_id,
                template="base",
                template_digest="d1",
                rootfs="/layers/base",
                status="running",
                vcpus=1,
                memory_mb=512,
                disk_mb=1024,
                env={},
                meta={},
                idle_timeout=300,
                created_at=datetime.now(UTC),
            )
        )
    return sandbox_id


def stored(db: Database, sandbox_id: str) -> list[tuple[int, str, str | None]]:
    with db.session() as s:
        return [(r.port, r.auth, r.token_hash) for r in port_rows.of_sandbox(s, sandbox_id)]


@pytest.fixture
def org(db: Database) -> str:
    return add_org(db, "acme")


@pytest.fixture
def sandbox(db: Database, org: str) -> str:
    return add_sandbox(db, org, "sbx-1")


@pytest.fixture
def bus(db: Database) -> EventBus:
    return EventBus(db)


@pytest.fixture
def previews(db: Database, bus: EventBus) -> Previews:
    return Previews(db, bus, CONFIG)


@pytest.mark.parametrize(
    ("scheme", "port", "expected"),
    [
        ("http", 80, "http://8080-sbx-1.preview.test"),
        ("https", 443, "https://8080-sbx-1.preview.test"),
        ("http", 7766, "http://8080-sbx-1.preview.test:7766"),
        ("https", 80, "https://8080-sbx-1.preview.test:80"),
        ("ws", 80, "ws://8080-sbx-1.preview.test:80"),
    ],
)
def test_urls_name_the_proxy_port_only_when_it_is_not_the_schemes_default(
    scheme: str, port: int, expected: str
) -> None:
    assert PreviewConfig("preview.test", scheme, port).url("sbx-1", 8080) == expected


def test_a_sandbox_with_a_policy_lists_its_automatic_ports_as_public(
    previews: Previews, sandbox: str
) -> None:
    listed = previews.list(sandbox, POLICY)
    assert [e.port for e in listed] == sorted(DEFAULT_PREVIEW_PORTS)
    assert all(e.automatic and e.auth == "public" and e.admits(None) for e in listed)
    assert listed[0].url == f"https://{listed[0].port}-{sandbox}.preview.test"
    assert stored(previews.db, sandbox) == []  # automatic ports are never written down


def test_without_a_policy_there_are_no_automatic_ports(previews: Previews, sandbox: str) -> None:
    assert previews.list(sandbox, None) == []
    assert previews.list(sandbox, NetworkPolicy(preview_ports=())) == []
    with pytest.raises(PortNotExposedError):
        previews.admit(sandbox, DEFAULT_PREVIEW_PORTS[0], None, None)


def test_a_public_exposure_is_stored_listed_in_port_order_and_open_to_anyone(
    previews: Previews, sandbox: str
) -> None:
    exposure, token = previews.expose("org", sandbox, NOT_AUTOMATIC, "public")
    assert token is None and exposure.token_hash is None
    assert exposure.created_at is not None and exposure.created_at.tzinfo is not None
    assert stored(previews.db, sandbox) == [(NOT_AUTOMATIC, "public", None)]
    listed = previews.list(sandbox, POLICY)
    assert [e.port for e in listed] == sorted([*DEFAULT_PREVIEW_PORTS, NOT_AUTOMATIC])
    assert [e for e in listed if not e.automatic] == [exposure]
    assert previews.admit(sandbox, NOT_AUTOMATIC, None, POLICY) == exposure


def test_a_token_is_returned_once_and_only_its_sha256_is_stored(
    previews: Previews, sandbox: str
) -> None:
    exposure, token = previews.expose("org", sandbox, NOT_AUTOMATIC, "token")
    assert token is not None and len(token) >= 32
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert exposure.token_hash == digest
    assert stored(previews.db, sandbox) == [(NOT_AUTOMATIC, "token", digest)]
    assert token not in repr(previews.list(sandbox, POLICY))
    _, again = previews.expose("org", sandbox, NOT_AUTOMATIC, "token")
    assert again != token  # random each time, not derived from the sandbox or port


@pytest.mark.parametrize(
    ("shown", "admitted"),
    [("right", True), ("wrong", False), ("none", False), ("hash", False), ("empty", False)],
)
def test_only_the_token_itself_opens_a_token_protected_port(
    previews: Previews, sandbox: str, shown: str, admitted: bool
) -> None:
    exposure, token = previews.expose("org", sandbox, NOT_AUTOMATIC, "token")
    assert token is not None and exposure.token_hash is not None
    candidate = {
        "right": token,
        "wrong": token[:-1] + ("A" if token[-1] != "A" else "B"),
        "none": None,
        "hash": exposure.token_hash,  # what a reader of the store has
        "empty": "",
    }[shown]
    assert exposure.admits(candidate) is admitted
    if admitted:
        assert previews.admit(sandbox, NOT_AUTOMATIC, candidate, POLICY) == exposure
    else:
        with pytest.raises(AuthenticationError) as refused:
            previews.admit(sandbox, NOT_AUTOMATIC, candidate, POLICY)
        assert (refused.value.code, refused.value.status) == ("UNAUTHENTICATED", 401)
        assert refused.value.retryable is False


def test_a_token_exposure_without_a_hash_admits_nobody() -> None:
    broken = Exposure(NOT_AUTOMATIC, "token", "", token_hash=None)
    assert not broken.admits(None) and not broken.admits("anything")


def test_a_token_in_front_of_an_automatic_port_makes_it_private(
    previews: Previews, sandbox: str
) -> None:
    port = DEFAULT_PREVIEW_PORTS[0]
    assert previews.admit(sandbox, port, None, POLICY).automatic
    _, token = previews.expose("org", sandbox, port, "token")
    with pytest.raises(AuthenticationError):
        previews.admit(sandbox, port, None, POLICY)
    assert previews.admit(sandbox, port, token, POLICY).auth == "token"
    entry = next(e for e in previews.list(sandbox, POLICY) if e.port == port)
    assert (entry.auth, entry.automatic) == ("token", False)


@pytest.mark.parametrize("then", ["token", "public"])
def test_exposing_a_port_again_replaces_it_and_voids_the_old_token(
    previews: Previews, sandbox: str, then: Auth
) -> None:
    _, old = previews.expose("org", sandbox, NOT_AUTOMATIC, "token")
    _, new = previews.expose("org", sandbox, NOT_AUTOMATIC, then)
    assert len(stored(previews.db, sandbox)) == 1
    exposure = previews.admit(sandbox, NOT_AUTOMATIC, new, POLICY)
    assert exposure.auth == then
    assert exposure.admits(old) is (then == "public")  # a public port needs no token at all
    if then == "token":
        with pytest.raises(AuthenticationError):
            previews.admit(sandbox, NOT_AUTOMATIC, old, POLICY)


def test_a_port_neither_exposed_nor_automatic_is_not_exposed(
    previews: Previews, sandbox: str
) -> None:
    with pytest.raises(PortNotExposedError) as refused:
        previews.admit(sandbox, NOT_AUTOMATIC, None, POLICY)
    assert (refused.value.code, refused.value.status) == ("PORT_NOT_EXPOSED", 404)
    assert f"sandlot sandbox expose {sandbox} {NOT_AUTOMATIC}" in refused.value.message


def test_closing_removes_the_exposure_from_store_and_cache(
    previews: Previews, sandbox: str
) -> None:
    previews.expose("org", sandbox, NOT_AUTOMATIC, "public")
    previews.list(sandbox, POLICY)  # cached now
    previews.close("org", sandbox, NOT_AUTOMATIC)
    assert stored(previews.db, sandbox) == []
    assert NOT_AUTOMATIC not in [e.port for e in previews.list(sandbox, POLICY)]
    with pytest.raises(PortNotExposedError):
        previews.admit(sandbox, NOT_AUTOMATIC, None, POLICY)


@pytest.mark.parametrize("port", [NOT_AUTOMATIC, DEFAULT_PREVIEW_PORTS[0]])
def test_closing_a_port_that_is_not_exposed_says_so(
    previews: Previews, sandbox: str, port: int
) -> None:
    """Automatic ports cannot be closed: they are the policy's, not an exposure."""
    with pytest.raises(PortNotExposedError) as refused:
        previews.close("org", sandbox, port)
    assert refused.value.details == {"sandboxId": sandbox, "port": port}
    listed = [e.port for e in previews.list(sandbox, POLICY)]
    assert (port in listed) is (port in DEFAULT_PREVIEW_PORTS)


def test_a_fresh_previews_over_the_same_store_sees_the_same_exposures(
    db: Database, previews: Previews, sandbox: str
) -> None:
    public, _ = previews.expose("org", sandbox, 4000, "public")
    private, token = previews.expose("org", sandbox, 4001, "token")
    restarted = Previews(db, EventBus(db), CONFIG)
    exposed = [e for e in restarted.list(sandbox, POLICY) if not e.automatic]
    assert exposed == [public, private]  # auth, url, hash and aware created_at alike
    assert restarted.admit(sandbox, 4001, token, POLICY) == private
    with pytest.raises(AuthenticationError):
        restarted.admit(sandbox, 4001, None, POLICY)


def remove_behind_its_back(db: Database, sandbox_id: str, port: int) -> None:
    with db.session() as s:
        assert port_rows.remove(s, sandbox_id, port)


def test_a_sandbox_with_a_policy_is_read_from_the_store_once_until_forgotten(
    db: Database, previews: Previews, sandbox: str
) -> None:
    """The proxy asks on every request, so a sandbox on this host is read once."""
    previews.expose("org", sandbox, NOT_AUTOMATIC, "public")
    remove_behind_its_back(db, sandbox, NOT_AUTOMATIC)
    assert previews.admit(sandbox, NOT_AUTOMATIC, None, POLICY).port == NOT_AUTOMATIC
    previews.forget(sandbox)
    with pytest.raises(PortNotExposedError):  # read again from the store
        previews.admit(sandbox, NOT_AUTOMATIC, None, POLICY)


def test_a_sandbox_without_a_policy_is_read_afresh_and_leaves_nothing_cached(
    db: Database, previews: Previews, sandbox: str
) -> None:
    """Asking about a sandbox not on this host (destroyed, or any name in a preview
    host) keeps nothing: asked again later, with a policy, it reads the store."""
    restarted = Previews(db, EventBus(), CONFIG)
    previews.expose("org", sandbox, NOT_AUTOMATIC, "public")
    assert restarted.admit(sandbox, NOT_AUTOMATIC, None, None).port == NOT_AUTOMATIC
    assert [e.port for e in restarted.list(sandbox, None)] == [NOT_AUTOMATIC]
    remove_behind_its_back(db, sandbox, NOT_AUTOMATIC)
    with pytest.raises(PortNotExposedError):
        restarted.admit(sandbox, NOT_AUTOMATIC, None, None)
    assert NOT_AUTOMATIC not in [e.port for e in restarted.list(sandbox, POLICY)]


def test_sandboxes_expose_ports_independently(
    db: Database, previews: Previews, org: str, sandbox: str
) -> None:
    other = add_sandbox(db, add_org(db, "globex"), "sbx-other")
    _, mine = previews.expose(org, sandbox, NOT_AUTOMATIC, "token")
    _, theirs = previews.expose("globex", other, NOT_AUTOMATIC, "token")
    with pytest.raises(AuthenticationError):  # one sandbox's token opens no other's port
        previews.admit(other, NOT_AUTOMATIC, mine, POLICY)
    previews.close("globex", other, NOT_AUTOMATIC)
    assert previews.admit(sandbox, NOT_AUTOMATIC, mine, POLICY).auth == "token"
    assert stored(db, other) == [] and len(stored(db, sandbox)) == 1
    assert theirs != mine


async def test_expose_and_close_publish_events_without_the_token(
    bus: EventBus, previews: Previews, org: str, sandbox: str
) -> None:
    with bus.subscribe(EventFilter(org_id=org, sandbox_id=sandbox)) as sub:
        await join(sub)
        exposure, token = previews.expose(org, sandbox, NOT_AUTOMATIC, "token")
        previews.close(org, sandbox, NOT_AUTOMATIC)
        with pytest.raises(PortNotExposedError):
            previews.close(org, sandbox, NOT_AUTOMATIC)  # a refusal publishes nothing
        bus.flush()
        events = await drain(sub)
    assert [(e.type, e.sandbox_id, e.org_id) for e in events] == [
        ("port.exposed", sandbox, org),
        ("port.closed", sandbox, org),
    ]
    assert events[0].data == {"port": NOT_AUTOMATIC, "auth": "token", "url": exposure.url}
    assert events[1].data == {"port": NOT_AUTOMATIC}
    assert token is not None and all(token not in str(e.data) for e in events)
    assert all(e.id is not None for e in events)  # stored: a resumed stream replays them


async def test_events_are_labelled_with_the_org_id_given(
    db: Database, bus: EventBus, previews: Previews, org: str, sandbox: str
) -> None:
    """Previews trusts its caller about ownership; the service checks it first. What it
    is told is what the streams see: the owner's stream gets none of another's events."""
    other = add_org(db, "globex")
    with (
        bus.subscribe(EventFilter(org_id=org)) as owner,
        bus.subscribe(EventFilter(org_id=other)) as caller,
    ):
        await join(owner)
        await join(caller)
        previews.expose(other, sandbox, NOT_AUTOMATIC, "public")
        bus.flush()
        assert await drain(owner) == []
        assert [e.type for e in await drain(caller)] == ["port.exposed"]
