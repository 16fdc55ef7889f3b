"""Every route of a real server, fed inputs generated from its own /openapi.json.

No input may earn a 500 (an unhandled exception) or a traceback in the body, and every
answer must match the document: status code, content type and body schema. The server
is one of this module's own (no warm pool, no rate limit) because the fuzzer creates,
pauses, branches and destroys sandboxes and changes quotas, which other tests' shared
server must not see. Most generated sandbox ids are swapped for a live sandbox's, so the
routes behind the 404 are reached too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from sandlot.testing import ServerProcess, ensure_base_template

pytestmark = pytest.mark.timeout(600)

CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"max-examples": 20},
        "checks": {
            # 503 and 504 are documented answers (RESOURCE_EXHAUSTED, SANDBOX_TIMEOUT),
            # held to the error envelope like any other; the test forbids 500 itself.
            "not_a_server_error": {"enabled": False},
            # A body the schema allows may still be refused with a 400: rules such as
            # "512MB" sizes or variable names live in validators JSON Schema cannot say.
            "positive_data_acceptance": {"enabled": False},
            # And the other way round: pydantic's lax parsing takes a Unix time where the
            # schema says date-time, or "1" for a boolean; lenient, not a failure.
            "negative_data_rejection": {"enabled": False},
        },
    }
)
REQUEST_TIMEOUT = 60.0
"""A bound, not an expectation: a create or a snapshot takes a second or two."""


class LiveSandbox:
    """A running sandbox's id for the fuzzer, made again when a case destroys it."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.headers = {"X-API-Key": srv.api_key}
        self.id = ""
        self.turn = itertools.count()

    def current(self) -> str:
        if self.id:
            got = httpx.get(f"{self.srv.url}/v1/sandboxes/{self.id}", headers=self.headers)
            state = got.json()["data"]["status"] if got.status_code == 200 else None
            if state == "paused":
                url = f"{self.srv.url}/v1/sandboxes/{self.id}/resume"
                state = httpx.post(url, headers=self.headers, timeout=60).json()["data"]["status"]
            if state == "running":
                return self.id
        made = httpx.post(f"{self.srv.url}/v1/sandboxes", json={}, headers=self.headers, timeout=60)
        assert made.status_code == 201, made.text
        self.id = made.json()["data"]["id"]
        return self.id

    def replaces(self) -> bool:
        """Three cases in four go to the live sandbox, the rest keep their made-up id."""
        return next(self.turn) % 4 != 3


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    ensure_base_template()
    srv = ServerProcess(
        Path(tmp_path_factory.mktemp("fuzz-data")),
        extra_env={"SANDLOT_WARM_POOL_SIZE": "0", "SANDLOT_RATE_LIMIT_PER_SECOND": "0"},
    )
    srv.start()
    yield srv
    srv.destroy_all()
    srv.stop()


@pytest.fixture(scope="module")
def live(fuzz_server: ServerProcess) -> LiveSandbox:
    return LiveSandbox(fuzz_server)


@pytest.fixture(scope="module")
def fuzzers_own(fuzz_server: ServerProcess) -> set[str]:
    """Ids and names of the fuzzer's own key and organisation: revoking that key or
    shrinking that organisation's quotas would end the run, not test anything."""
    headers = {"X-API-Key": fuzz_server.api_key}
    keys = httpx.get(f"{fuzz_server.url}/v1/keys", headers=headers).json()["data"]
    orgs = httpx.get(f"{fuzz_server.url}/v1/orgs", headers=headers).json()["data"]
    return {k["id"] for k in keys} | {o["id"] for o in orgs} | {o["name"] for o in orgs}


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ServerProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json", config=CONFIG)


# Event streams never end by themselves; tests/e2e/test_events*.py cover them.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex=r".*/events$")


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_breaks_the_api(
    case: schemathesis.Case,
    fuzz_server: ServerProcess,
    live: LiveSandbox,
    fuzzers_own: set[str],
) -> None:
    params = case.path_parameters or {}
    if "sandbox_id" in params and live.replaces():
        params["sandbox_id"] = live.current()
    if {params.get("key_id"), params.get("org")} & fuzzers_own:
        pytest.skip("the fuzzer's own key and organisation are left alone")
    response = case.call(
        base_url=fuzz_server.url,
        headers={"X-API-Key": fuzz_server.api_key},
        timeout=REQUEST_TIMEOUT,
    )
    assert response.status_code != 500, response.text
    assert "Traceback" not in response.text
    case.validate_response(response)
