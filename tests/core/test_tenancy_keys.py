"""API keys through `Tenancy`, against a real SQLite store: what authentication and the
key routes rely on beyond the basics in test_tenancy.py.

A key is the only thing standing between one organisation and another's sandboxes, so
these tests pin down that a secret is shown once and stored only as a digest, that only
the exact secret of an active key authenticates, that revoking one key touches no
other, that listing by organisation never shows another organisation's keys, and that
every refusal carries the code, status and retryable flag the SDK rebuilds it from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from sandlot.core.tenancy import KeyView, Quotas, Tenancy
from sandlot.errors import (
    InvalidConfigError,
    KeyNotFoundError,
    SandlotError,
    error_from_payload,
)
from sandlot.store.database import Database
from sandlot.store.keys import ALL_SCOPES, KEY_PREFIX
from sandlot.store.tables import ApiKey


@pytest.fixture
def tenancy(db: Database) -> Tenancy:
    return Tenancy(db)


def two_orgs_with_keys(tenancy: Tenancy) -> dict[str, list[tuple[KeyView, str]]]:
    """Organisations `acme` (two keys) and `globex` (one key), keys by org name."""
    tenancy.create_org("acme")
    tenancy.create_org("globex")
    return {
        "acme": [tenancy.create_key("acme", "ci"), tenancy.create_key("acme", "laptop")],
        "globex": [tenancy.create_key("globex", "ci")],
    }


# ---- the secret ---------------------------------------------------------------------------


def test_a_secret_is_prefixed_unique_and_stored_only_as_its_digest(
    tenancy: Tenancy, db: Database
) -> None:
    tenancy.create_org("acme")
    made = [tenancy.create_key("acme", "k") for _ in range(5)]
    secrets = [secret for _, secret in made]
    assert all(s.startswith(KEY_PREFIX) and len(s) > len(KEY_PREFIX) + 32 for s in secrets)
    assert len(set(secrets)) == len(secrets)
    assert len({key.id for key, _ in made}) == len(made)
    with db.session() as s:
        for key, secret in made:
            row = s.get(ApiKey, key.id)
            assert row is not None
            assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
            assert secret not in (row.key_hash, row.name, row.id)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1],
        lambda s: s + "x",
        lambda s: s.upper(),
        lambda s: s[len(KEY_PREFIX) :],
        lambda s: f" {s}",
        lambda s: KEY_PREFIX,
        lambda s: "",
    ],
    ids=["truncated", "extended", "upper-cased", "unprefixed", "padded", "prefix", "empty"],
)
def test_only_the_exact_secret_authenticates(
    tenancy: Tenancy, mangle: Callable[[str], str]
) -> None:
    tenancy.create_org("acme")
    key, secret = tenancy.create_key("acme", "ci")
    assert tenancy.key_for(secret) == key
    assert tenancy.key_for(mangle(secret)) is None


def test_a_digest_is_not_a_secret(tenancy: Tenancy, db: Database) -> None:
    """Whoever reads the store learns digests; presenting one must not authenticate."""
    tenancy.create_org("acme")
    key, _ = tenancy.create_key("acme", "ci")
    with db.session() as s:
        row = s.get(ApiKey, key.id)
        assert row is not None
        digest = row.key_hash
    assert tenancy.key_for(digest) is None


def test_each_secret_names_its_own_organisation(tenancy: Tenancy) -> None:
    made = two_orgs_with_keys(tenancy)
    org_ids = {o.name: o.id for o in tenancy.orgs()}
    for org_name, keys in made.items():
        for key, secret in keys:
            found = tenancy.key_for(secret)
            assert found is not None and found.id == key.id
            assert found.org_id == org_ids[org_name]


# ---- scopes -------------------------------------------------------------------------------


def test_a_key_gets_every_scope_unless_told_otherwise(tenancy: Tenancy) -> None:
    tenancy.create_org("acme")
    key, secret = tenancy.create_key("acme", "ci")
    assert key.scopes == ALL_SCOPES
    found = tenancy.key_for(secret)
    assert found is not None and found.scopes == ALL_SCOPES


@pytest.mark.parametrize(
    "scopes",
    [
        ("sandboxes:read",),
        ("sandboxes:write",),
        ("sandboxes:read", "sandboxes:write"),
        ("admin",),
        ("admin", "sandboxes:read"),
    ],
)
def test_scopes_are_kept_as_given(tenancy: Tenancy, scopes: tuple[str, ...]) -> None:
    tenancy.create_org("acme")
    key, secret = tenancy.create_key("acme", "ci", scopes)
    authenticated = tenancy.key_for(secret)
    listed = tenancy.keys("acme")
    assert key.scopes == scopes
    assert authenticated is not None and authenticated.scopes == scopes
    assert [k.scopes for k in listed] == [scopes]


def test_a_read_only_key_does_not_widen_its_siblings(tenancy: Tenancy) -> None:
    tenancy.create_org("acme")
    reader, reader_secret = tenancy.create_key("acme", "reader", ("sandboxes:read",))
    _, writer_secret = tenancy.create_key("acme", "writer", ("sandboxes:write",))
    by_secret = {s: tenancy.key_for(s) for s in (reader_secret, writer_secret)}
    assert {k.scopes for k in by_secret.values() if k} == {
        ("sandboxes:read",),
        ("sandboxes:write",),
    }
    assert by_secret[reader_secret] == reader


# ---- listing ------------------------------------------------------------------------------


@pytest.mark.parametrize("org_name", ["acme", "globex"])
def test_listing_one_organisation_shows_its_keys_alone(tenancy: Tenancy, org_name: str) -> None:
    made = two_orgs_with_keys(tenancy)
    org = next(o for o in tenancy.orgs() if o.name == org_name)
    expected = [key.id for key, _ in made[org_name]]
    assert [k.id for k in tenancy.keys(org_name)] == expected
    assert [k.id for k in tenancy.keys(org.id)] == expected
    assert {k.org_id for k in tenancy.keys(org.id)} == {org.id}


def test_listing_everything_shows_every_active_key_in_creation_order(tenancy: Tenancy) -> None:
    made = two_orgs_with_keys(tenancy)
    everything = [key.id for key, _ in (*made["acme"], *made["globex"])]
    assert [k.id for k in tenancy.keys(None)] == everything


def test_an_organisation_without_keys_lists_none(tenancy: Tenancy) -> None:
    two_orgs_with_keys(tenancy)
    tenancy.create_org("initech")
    assert tenancy.keys("initech") == []


def test_two_keys_may_share_a_name_and_stay_two_keys(tenancy: Tenancy) -> None:
    tenancy.create_org("acme")
    first, first_secret = tenancy.create_key("acme", "ci")
    second, second_secret = tenancy.create_key("acme", "ci")
    assert first.id != second.id and first_secret != second_secret
    assert [k.id for k in tenancy.keys("acme")] == [first.id, second.id]
    tenancy.revoke_key(first.id)
    assert tenancy.key_for(first_secret) is None and tenancy.key_for(second_secret) == second


# ---- revocation ---------------------------------------------------------------------------


def test_revoking_a_key_touches_no_other(tenancy: Tenancy) -> None:
    made = two_orgs_with_keys(tenancy)
    (revoked, revoked_secret), (kept, kept_secret) = made["acme"]
    (theirs, their_secret) = made["globex"][0]
    assert tenancy.revoke_key(revoked.id) == revoked
    assert tenancy.key_for(revoked_secret) is None
    assert tenancy.key_for(kept_secret) == kept
    assert tenancy.key_for(their_secret) == theirs
    assert [k.id for k in tenancy.keys("acme")] == [kept.id]
    assert [k.id for k in tenancy.keys("globex")] == [theirs.id]
    assert revoked.id not in {k.id for k in tenancy.keys(None)}


def test_a_revoked_key_stays_revoked(tenancy: Tenancy, db: Database) -> None:
    tenancy.create_org("acme")
    key, secret = tenancy.create_key("acme", "ci")
    tenancy.revoke_key(key.id)
    with db.session() as s:
        row = s.get(ApiKey, key.id)
        assert row is not None
        first_revoked_at = row.revoked_at
    assert tenancy.revoke_key(key.id).id == key.id  # again: the same key, still revoked
    with db.session() as s:
        row = s.get(ApiKey, key.id)
        assert row is not None and row.revoked_at == first_revoked_at
    assert tenancy.key_for(secret) is None and tenancy.keys("acme") == []


# ---- refusals -----------------------------------------------------------------------------


def assert_refusal(
    err: SandlotError, kind: type[SandlotError], code: str, status: int, details: dict[str, str]
) -> None:
    """The refusal as the server sends it, and as the SDK rebuilds it from that."""
    assert type(err) is kind and err.code == code and err.status == status
    assert err.retryable is False and err.details == details
    rebuilt = error_from_payload(err.to_dict())
    assert type(rebuilt) is kind and rebuilt.details == details and not rebuilt.retryable


@pytest.mark.parametrize("key_id", ["key-nope", "", "key-" + "0" * 12])
def test_revoking_an_unknown_key_is_not_found(tenancy: Tenancy, key_id: str) -> None:
    two_orgs_with_keys(tenancy)
    with pytest.raises(KeyNotFoundError) as caught:
        tenancy.revoke_key(key_id)
    assert_refusal(caught.value, KeyNotFoundError, "KEY_NOT_FOUND", 404, {"keyId": key_id})
    assert len(tenancy.keys()) == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.create_key("ghost", "ci"),
        lambda t: t.keys("ghost"),
        lambda t: t.set_quotas("ghost", Quotas(max_sandboxes=1)),
    ],
    ids=["create_key", "keys", "set_quotas"],
)
def test_an_unknown_organisation_is_a_config_error(
    tenancy: Tenancy, call: Callable[[Tenancy], object]
) -> None:
    two_orgs_with_keys(tenancy)
    with pytest.raises(InvalidConfigError, match="ghost") as caught:
        call(tenancy)
    assert_refusal(caught.value, InvalidConfigError, "INVALID_CONFIG", 400, {"field": "org"})
    assert len(tenancy.keys()) == 3


def test_a_taken_organisation_name_names_the_field(tenancy: Tenancy) -> None:
    tenancy.create_org("acme")
    with pytest.raises(InvalidConfigError) as caught:
        tenancy.create_org("acme")
    assert_refusal(caught.value, InvalidConfigError, "INVALID_CONFIG", 400, {"field": "name"})


# ---- the operator and quotas ----------------------------------------------------------------


def test_the_operators_key_belongs_to_the_operator_alone(tenancy: Tenancy) -> None:
    made = two_orgs_with_keys(tenancy)
    secret = tenancy.ensure_operator()
    assert secret is not None
    operator = tenancy.operator_org_id()
    admin = tenancy.key_for(secret)
    assert admin is not None and admin.org_id == operator and admin.scopes == ALL_SCOPES
    assert [k.id for k in tenancy.keys(operator)] == [admin.id]
    for org_name in made:
        assert admin.id not in {k.id for k in tenancy.keys(org_name)}


def test_no_operator_before_the_first_start(tenancy: Tenancy) -> None:
    two_orgs_with_keys(tenancy)
    assert tenancy.operator_org_id() is None


def test_quotas_are_per_organisation(tenancy: Tenancy) -> None:
    two_orgs_with_keys(tenancy)
    tenancy.set_quotas("acme", Quotas(max_sandboxes=2, max_vcpus=8, max_memory_mb=4096))
    quotas = {o.name: o.quotas for o in tenancy.orgs()}
    assert quotas == {"acme": Quotas(2, 8, 4096), "globex": Quotas()}


def test_a_name_in_the_form_of_an_organisation_id_is_refused(tenancy: Tenancy) -> None:
    """Commands take an organisation by id or by name: a name that looked like another
    organisation's id made that organisation's keys and quotas reachable by it."""
    victim = tenancy.create_org("victim")
    with pytest.raises(InvalidConfigError) as refused:
        tenancy.create_org(victim.id)
    assert refused.value.details == {"field": "name"} and not refused.value.retryable
    tenancy.create_key("victim", "ci")
    assert [k.org_id for k in tenancy.keys(victim.id)] == [victim.id]
