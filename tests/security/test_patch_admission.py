"""A snapshot patch runs in a sandbox of the organisation's like any other: it passes
admission and the org's quota (it used to skip both) and runs under the network policy
of the sandbox the snapshot was taken of."""

from __future__ import annotations

import secrets

import pytest

from sandlot import Sandbox, Sandlot
from sandlot.errors import ResourceExhaustedError
from sandlot.sdk import Quotas
from sandlot.testing import ServerProcess


def test_a_patch_counts_against_the_org_quota(client: Sandlot, server: ServerProcess) -> None:
    org = client.orgs.create(f"patch-quota-{secrets.token_hex(4)}")
    client.orgs.set_quotas(org.id, Quotas(max_sandboxes=1))
    key = client.keys.create(org.id, name="k").key
    with Sandlot(server.url, key) as tenant, Sandbox.create(client=tenant) as sbx:
        sbx.files.write("/root/kept", "before")
        snap = sbx.snapshots.create(name="s", memory=False)
        with pytest.raises(ResourceExhaustedError, match="sandboxes"):
            sbx.snapshots.patch(snap.id, "echo after > /root/kept")
        # With room for it, the same patch runs, and its sandbox is gone afterwards.
        client.orgs.set_quotas(org.id, Quotas(max_sandboxes=2))
        done = sbx.snapshots.patch(snap.id, "echo after > /root/kept")
        assert (done.status, done.exit_code, done.revision) == ("applied", 0, snap.revision + 1)
        live = [s.id for s in tenant.sandboxes.list() if s.status in ("running", "creating")]
        assert live == [sbx.id]
