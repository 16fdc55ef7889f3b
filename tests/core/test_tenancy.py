"""Organisations, keys and quotas against a real SQLite store, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandlot.core.tenancy import Quotas, Tenancy
from sandlot.errors import InvalidConfigError, KeyNotFoundError
from sandlot.store.database import Database, migrate


@pytest.fixture
def tenancy(tmp_path: Path) -> Tenancy:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(db.engine)
    return Tenancy(db)


def test_the_operator_and_its_first_key_are_made_once(tenancy: Tenancy) -> None:
    secret = tenancy.ensure_operator()
    assert secret is not None and tenancy.ensure_operator() is None
    key = tenancy.key_for(secret)
    assert key is not None and key.org_id == tenancy.operator_org_id()
    assert "admin" in key.scopes


def test_an_organisation_name_is_taken_once(tenancy: Tenancy) -> None:
    tenancy.create_org("acme")
    with pytest.raises(InvalidConfigError, match="exists already"):
        tenancy.create_org("acme")
    assert [o.name for o in tenancy.orgs()] == ["acme"]


def test_keys_by_org_name_or_id_and_revoked_at_once(tenancy: Tenancy) -> None:
    org = tenancy.create_org("acme")
    key, secret = tenancy.create_key("acme", "ci", ("sandboxes:read",))
    assert key.org_id == org.id and key.scopes == ("sandboxes:read",)
    assert [k.id for k in tenancy.keys(org.id)] == [key.id]
    assert tenancy.revoke_key(key.id).id == key.id
    assert tenancy.key_for(secret) is None and tenancy.keys("acme") == []
    with pytest.raises(KeyNotFoundError):
        tenancy.revoke_key("key-nope")
    with pytest.raises(InvalidConfigError, match="no organisation 'ghost'"):
        tenancy.create_key("ghost", "k")


def test_quotas_are_set_and_cleared(tenancy: Tenancy) -> None:
    tenancy.create_org("acme")
    set_ = tenancy.set_quotas("acme", Quotas(max_sandboxes=3, max_vcpus=4))
    assert set_.quotas == Quotas(3, 4, None)
    assert tenancy.set_quotas("acme", Quotas()).quotas == Quotas()
