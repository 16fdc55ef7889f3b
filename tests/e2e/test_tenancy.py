"""Organisations, scoped keys, revocation, and per-key rate limits with SDK retries."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandlot import Sandbox, Sandlot
from sandlot.errors import AuthenticationError, PermissionDeniedError, RateLimitedError
from sandlot.sdk import RetryPolicy
from sandlot.testing import ServerProcess, ensure_base_template


def test_scoped_keys_and_revocation(client: Sandlot, server: ServerProcess) -> None:
    org = client.orgs.create(f"team-{uuid.uuid4().hex[:8]}")
    assert org.id in {o.id for o in client.orgs.list()}
    reader = client.keys.create(org.name, ["sandboxes:read"], name="ci-reader")
    writer = client.keys.create(org.id)
    assert reader.key.startswith("sl_") and reader.scopes == ["sandboxes:read"]
    listed = {k.id for k in client.keys.list(org.id)}
    assert listed == {reader.id, writer.id}
    assert all("key" not in k.to_api() for k in client.keys.list(org.id))
    with Sandlot(api_url=server.url, api_key=reader.key) as as_reader:
        assert Sandbox.list(client=as_reader) == []
        with pytest.raises(PermissionDeniedError):
            Sandbox.create(client=as_reader)
        with pytest.raises(PermissionDeniedError):
            as_reader.orgs.create("not-allowed")
    with Sandlot(api_url=server.url, api_key=writer.key) as as_writer:
        with Sandbox.create(client=as_writer) as sbx:
            assert sbx.id not in {s.id for s in Sandbox.list(client=client)}  # other org's
        client.keys.revoke(writer.id)
        with pytest.raises(AuthenticationError):
            Sandbox.list(client=as_writer)


def test_keys_cli(api_env: dict[str, str]) -> None:
    def sandlot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sandlot", *args], env=api_env, capture_output=True, text=True
        )

    name = f"cli-{uuid.uuid4().hex[:8]}"
    org_id = sandlot("orgs", "create", name).stdout.strip()
    assert org_id.startswith("org-")
    secret = sandlot("keys", "create", "--org", name, "--scope", "sandboxes:read").stdout.strip()
    assert secret.startswith("sl_")
    keys = json.loads(sandlot("keys", "list", "--org", name, "--json").stdout)
    assert len(keys) == 1 and keys[0]["scopes"] == ["sandboxes:read"]
    assert sandlot("keys", "revoke", keys[0]["id"]).returncode == 0
    denied = sandlot("sandbox", "list", "--api-key", secret)
    assert denied.returncode == 1 and "UNAUTHENTICATED" in denied.stderr


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[ServerProcess]:
    ensure_base_template()
    srv = ServerProcess(
        tmp_path / "data",
        extra_env={
            "SANDLOT_WARM_POOL_SIZE": "0",
            "SANDLOT_RATE_LIMIT_PER_SECOND": "5",
            "SANDLOT_RATE_LIMIT_BURST": "5",
        },
    )
    srv.data_dir.mkdir()
    srv.start()
    yield srv
    srv.stop()


def test_rate_limit_answers_429_and_the_sdk_backs_off(limited_server: ServerProcess) -> None:
    srv = limited_server
    headers = {"X-API-Key": srv.api_key}
    answers = [httpx.get(f"{srv.url}/v1/sandboxes", headers=headers) for _ in range(15)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited and answers[0].status_code == 200
    err = limited[0].json()["error"]
    assert err["code"] == "RATE_LIMITED" and err["retryable"] is True
    assert int(limited[0].headers["Retry-After"]) >= 1
    with (
        Sandlot(
            api_url=srv.url, api_key=srv.api_key, retry=RetryPolicy(max_retries=0)
        ) as impatient,
        pytest.raises(RateLimitedError),
    ):
        for _ in range(10):
            Sandbox.list(client=impatient)
    sent: list[str] = []
    counting = httpx.Client(
        event_hooks={"request": [lambda request: sent.append(request.url.path)]}
    )
    with Sandlot(api_url=srv.url, api_key=srv.api_key, http_client=counting) as patient:
        for _ in range(12):  # more than the burst: the SDK waits its turn instead of failing
            Sandbox.list(client=patient)
        assert len(sent) > 12  # some calls were retried
        time.sleep(1.5)  # let the bucket refill, so the next answer is the real one
        sent.clear()
        with pytest.raises(Exception, match="does not exist"):
            Sandbox.get("sbx-0000000000", client=patient)
        assert len(sent) == 1  # a non-retryable error is never retried
    counting.close()


def test_a_tenants_admin_key_is_not_the_operators(client: Sandlot, server: ServerProcess) -> None:
    org = client.orgs.create(f"tenant-{uuid.uuid4().hex[:8]}")
    tenant_admin = client.keys.create(org.id, ["admin"])
    with Sandlot(api_url=server.url, api_key=tenant_admin.key) as tenant:
        with pytest.raises(PermissionDeniedError, match="operator"):
            tenant.orgs.create("escalation")
        with pytest.raises(PermissionDeniedError):
            tenant.keys.list()
        with Sandbox.create(client=tenant) as sbx:  # full power inside its own organisation
            assert sbx.commands.run("echo mine").stdout == "mine\n"
    r = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": tenant_admin.key})
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"


def test_org_quotas(client: Sandlot, server: ServerProcess, api_env: dict[str, str]) -> None:
    from sandlot.errors import ResourceExhaustedError
    from sandlot.sdk import Quotas

    org = client.orgs.create(f"quota-{uuid.uuid4().hex[:8]}")
    updated = client.orgs.set_quotas(org.id, Quotas(max_sandboxes=1, max_memory_mb=1024))
    assert updated.quotas.max_sandboxes == 1 and updated.quotas.max_vcpus is None
    key = client.keys.create(org.id).key
    with Sandlot(api_url=server.url, api_key=key) as tenant:
        with Sandbox.create(client=tenant):
            with pytest.raises(ResourceExhaustedError) as err:
                Sandbox.create(client=tenant)
            assert err.value.details["quota"] == "sandboxes" and not err.value.retryable
        with pytest.raises(ResourceExhaustedError, match="memoryMb"):
            Sandbox.create(resources={"memory_mb": 2048}, client=tenant)
        with Sandbox.create(resources={"memory_mb": 1024}, client=tenant) as fits:
            assert fits.status == "running"
    out = subprocess.run(
        [sys.executable, "-m", "sandlot", "orgs", "quota", org.name, "--max-vcpus", "3", "--json"],
        env=api_env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["quotas"] == {
        "maxSandboxes": None,
        "maxVcpus": 3,
        "maxMemoryMb": None,
    }
