"""The API's answer to a failure nobody foresaw: a stable sentence and an error id for
users, the traceback under the same id in the server's log."""

from __future__ import annotations

import errno
import logging
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sandlot.api.errors import install_error_handlers
from sandlot.core.incidents import public_reason
from sandlot.domain.host_values import BackendError
from sandlot.errors import InvalidConfigError

SECRET_TEXT = "SELECT hash FROM api_keys WHERE prefix = 'sk_live' -- /var/lib/sandlot/sandlot.db"


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(SECRET_TEXT)

    @app.get("/disk")
    def disk() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/var/lib/sandlot/snapshots/x")

    return TestClient(app, raise_server_exceptions=False)


def test_unexpected_error_shows_an_id_and_logs_the_traceback_under_it(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="sandlot.core.incidents"):
        r = client.get("/boom")
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "INTERNAL" and err["retryable"] is True
    match = re.fullmatch(
        r"internal error \(id ([0-9a-f]{12})\): the server logged the details", err["message"]
    )
    assert match, err["message"]
    assert err["details"] == {"errorId": match[1]}
    assert "RuntimeError" not in r.text and "api_keys" not in r.text and "/var/lib" not in r.text
    [record] = [r for r in caplog.records if match[1] in r.getMessage()]
    assert record.getMessage() == f"GET /boom (error id {match[1]})"
    assert record.exc_info is not None and str(record.exc_info[1]) == SECRET_TEXT


def test_each_failure_gets_its_own_id(client: TestClient) -> None:
    ids = {client.get("/boom").json()["error"]["details"]["errorId"] for _ in range(5)}
    assert len(ids) == 5


def test_an_os_error_keeps_its_plain_reason_and_loses_its_path(client: TestClient) -> None:
    r = client.get("/disk")
    assert r.status_code == 500
    message = r.json()["error"]["message"]
    assert re.fullmatch(
        r"no space left on device \(id [0-9a-f]{12}\): the server logged the details", message
    ), message


def test_sandlot_and_backend_words_pass_through(caplog: pytest.LogCaptureFixture) -> None:
    """Messages Sandlot writes for users stay as written, and are not logged as failures."""
    template_fault = InvalidConfigError("the template's start command exited with 127")
    no_criu = BackendError("cannot checkpoint sbx_1: CRIU 3.17 is too old; install 4.1 or later")
    with caplog.at_level(logging.ERROR, logger="sandlot.core.incidents"):
        assert public_reason(template_fault, "starting sbx_1") == template_fault.message
        assert public_reason(no_criu, "pausing sbx_1") == str(no_criu)
    assert caplog.records == []
    reason = public_reason(PermissionError(errno.EPERM, "nope", "/srv/x"), "snapshotting sbx_1")
    assert reason.startswith("operation not permitted (id ") and "/srv/x" not in reason
