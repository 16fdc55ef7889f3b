"""The REST contract over plain HTTP: envelopes, status codes, error codes, tenancy."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandlot.store import keys
from sandlot.store.database import Database
from sandlot.testing import ServerProcess


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.api_key}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def other_org_key(server: ServerProcess) -> str:
    db = Database(f"sqlite:///{server.data_dir / 'sandlot.db'}")
    with db.session() as s:
        org = keys.create_org(s, "other-org")
        _, secret = keys.create_key(s, org.id, "other")
    return secret


def assert_error(
    r: httpx.Response, status: int, code: str, retryable: bool = False
) -> dict[str, object]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["retryable"] is retryable
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], dict)
    return err  # type: ignore[no-any-return]


def test_health_and_openapi(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/health").json()["data"]["status"] == "ok"
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/sandboxes" in spec["paths"] and "/v1/sandboxes/{sandbox_id}/exec" in spec["paths"]


def test_create_shape(http: httpx.Client) -> None:
    body = {
        "template": "base",
        "resources": {"vcpus": 1, "memory": "512MB"},
        "env": {"A": "1"},
        "metadata": {"m": "1"},
        "idleTimeout": 300,
    }
    r = http.post("/v1/sandboxes", json=body)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    try:
        assert data["status"] == "running" and data["template"] == "base"
        assert data["resources"] == {"vcpus": 1, "memoryMb": 512, "diskMb": 10240}
        assert data["env"] == {"A": "1"} and data["metadata"] == {"m": "1"}
        assert data["idleTimeout"] == 300 and data["createdAt"] and data["startedAt"]
    finally:
        assert http.delete(f"/v1/sandboxes/{data['id']}").json()["data"]["status"] == "terminated"


def test_bearer_auth_works(server: ServerProcess) -> None:
    r = httpx.get(
        f"{server.url}/v1/sandboxes", headers={"Authorization": f"Bearer {server.api_key}"}
    )
    assert r.status_code == 200 and "pagination" in r.json()


def test_missing_and_wrong_key(server: ServerProcess) -> None:
    assert_error(httpx.get(f"{server.url}/v1/sandboxes"), 401, "UNAUTHENTICATED")
    r = httpx.get(f"{server.url}/v1/sandboxes", headers={"X-API-Key": "sl_wrong"})
    assert_error(r, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"vcpus": 0}, "resources.vcpus"),
        ({"vcpus": 9}, "resources.vcpus"),
        ({"memoryMb": 64}, "resources.memoryMb"),
        ({"memory": "32GB"}, "resources.memory"),
        ({"memory": "lots"}, "resources.memory"),
        ({"disk": "1MB"}, "resources.disk"),
        ({"cpus": 2}, "resources.cpus"),
    ],
)
def test_bad_resources_name_the_field(
    http: httpx.Client, resources: dict[str, object], field: str
) -> None:
    err = assert_error(
        http.post("/v1/sandboxes", json={"resources": resources}), 400, "INVALID_CONFIG"
    )
    assert err["details"]["field"] == field  # type: ignore[index]
    assert field in err["message"]  # type: ignore[operator]


def test_bad_env_and_unknown_fields(http: httpx.Client) -> None:
    assert_error(http.post("/v1/sandboxes", json={"env": {"1BAD": "x"}}), 400, "INVALID_CONFIG")
    assert_error(http.post("/v1/sandboxes", json={"tempalte": "base"}), 400, "INVALID_CONFIG")
    assert_error(
        http.post(
            "/v1/sandboxes", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        400,
        "INVALID_CONFIG",
    )


def test_more_vcpus_than_host_is_exhausted(http: httpx.Client) -> None:
    import os

    wanted = len(os.sched_getaffinity(0)) + 1
    if wanted > 8:
        pytest.skip(f"host has {wanted - 1} CPUs; the API's own limit (8) applies first")
    r = http.post("/v1/sandboxes", json={"resources": {"vcpus": wanted}})
    assert_error(r, 503, "RESOURCE_EXHAUSTED", retryable=True)


def test_unknown_template_and_sandbox(http: httpx.Client) -> None:
    assert_error(http.post("/v1/sandboxes", json={"template": "nope"}), 404, "TEMPLATE_NOT_FOUND")
    assert_error(http.get("/v1/sandboxes/sbx-doesnotexi"), 404, "SANDBOX_NOT_FOUND")
    assert_error(http.delete("/v1/sandboxes/sbx-doesnotexi"), 404, "SANDBOX_NOT_FOUND")
    assert_error(
        http.post("/v1/sandboxes/sbx-doesnotexi/exec", json={"command": "true"}),
        404,
        "SANDBOX_NOT_FOUND",
    )


def test_another_orgs_sandbox_is_invisible(
    http: httpx.Client, server: ServerProcess, other_org_key: str
) -> None:
    sandbox_id = http.post("/v1/sandboxes", json={}).json()["data"]["id"]
    try:
        with httpx.Client(
            base_url=server.url, headers={"X-API-Key": other_org_key}, timeout=60
        ) as other:
            assert_error(other.get(f"/v1/sandboxes/{sandbox_id}"), 404, "SANDBOX_NOT_FOUND")
            assert_error(
                other.post(f"/v1/sandboxes/{sandbox_id}/exec", json={"command": "id"}),
                404,
                "SANDBOX_NOT_FOUND",
            )
            assert_error(
                other.get(f"/v1/sandboxes/{sandbox_id}/files", params={"path": "/etc/hostname"}),
                404,
                "SANDBOX_NOT_FOUND",
            )
            assert_error(other.delete(f"/v1/sandboxes/{sandbox_id}"), 404, "SANDBOX_NOT_FOUND")
            assert sandbox_id not in {s["id"] for s in other.get("/v1/sandboxes").json()["data"]}
        assert http.get(f"/v1/sandboxes/{sandbox_id}").json()["data"]["status"] == "running"
    finally:
        http.delete(f"/v1/sandboxes/{sandbox_id}")


def test_exec_timeout_is_504(http: httpx.Client) -> None:
    sandbox_id = http.post("/v1/sandboxes", json={}).json()["data"]["id"]
    try:
        r = http.post(
            f"/v1/sandboxes/{sandbox_id}/exec",
            json={"command": "echo partial; sleep 30", "timeout": 0.5},
        )
        err = assert_error(r, 504, "SANDBOX_TIMEOUT")
        assert err["details"]["stdout"] == "partial\n"  # type: ignore[index]
    finally:
        http.delete(f"/v1/sandboxes/{sandbox_id}")


def test_operations_on_terminated_sandbox_are_invalid_state(http: httpx.Client) -> None:
    sandbox_id = http.post("/v1/sandboxes", json={}).json()["data"]["id"]
    http.delete(f"/v1/sandboxes/{sandbox_id}")
    r = http.post(f"/v1/sandboxes/{sandbox_id}/exec", json={"command": "true"})
    assert_error(r, 409, "INVALID_STATE")
