"""What users see of an unexpected failure, and what the server's log keeps of it: a
stable sentence with a fresh error id (an OSError's errno as words, nothing more), the
same id logged at ERROR with the traceback and what was being done, and Sandlot's own
errors and a backend's explanations passed on as they are, without logging.

An exception's own text can carry host paths, SQL or a library's wording; these tests
hold that none of it reaches the user while the operator can still find it by id.
"""

from __future__ import annotations

import errno
import logging
import os
import re

import pytest

from sandlot.core.incidents import internal_error, public_reason
from sandlot.domain.host_values import BackendError
from sandlot.errors import (
    InternalError,
    InvalidStateError,
    RateLimitedError,
    SandboxNotFoundError,
    SandlotError,
)

LOGGER = "sandlot.core.incidents"
SHOWN = re.compile(r"^(?P<what>[^()]+) \(id (?P<id>[0-9a-f]{12})\): the server logged the details$")


def raised(exc: BaseException) -> BaseException:
    """`exc` as it is when caught: with a traceback to log."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_the_error_users_get_is_internal_retryable_and_names_its_id() -> None:
    shown = internal_error(raised(RuntimeError("boom")), "GET /v1/sandboxes")
    match = SHOWN.match(shown.message)
    assert isinstance(shown, InternalError) and match is not None
    assert match["what"] == "internal error"
    assert shown.details == {"errorId": match["id"]}
    assert (shown.code, shown.status, shown.retryable) == ("INTERNAL", 500, True)
    assert shown.to_dict()["details"]["errorId"] == match["id"]


def test_each_failure_gets_its_own_id() -> None:
    ids = {internal_error(None, "x").details["errorId"] for _ in range(200)}
    assert len(ids) == 200


def test_the_log_holds_the_traceback_and_context_under_the_same_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = raised(KeyError("sandboxes.org_id"))
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        shown = internal_error(exc, "POST /v1/sandboxes")
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"POST /v1/sandboxes (error id {shown.details['errorId']})"
    assert record.exc_info is not None and record.exc_info[1] is exc
    assert "sandboxes.org_id" in caplog.text and "Traceback" in caplog.text
    assert "sandboxes.org_id" not in shown.message


def test_without_an_exception_only_the_context_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        shown = internal_error(None, "a supervisor pass")
    assert SHOWN.match(shown.message) is not None
    assert "Traceback" not in caplog.text
    assert f"a supervisor pass (error id {shown.details['errorId']})" in caplog.text


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EACCES, errno.ENOENT, errno.EROFS, errno.EMFILE, errno.EIO]
)
def test_an_os_errors_errno_is_passed_on_as_words_but_not_its_file(code: int) -> None:
    path = "/var/lib/sandlot/sandboxes/sbx-1/upper/secret"
    shown = internal_error(raised(OSError(code, os.strerror(code), path)), "writing a file")
    match = SHOWN.match(shown.message)
    assert match is not None, shown.message
    assert match["what"] == os.strerror(code).lower()
    assert "/var/lib" not in shown.message and "secret" not in shown.message


@pytest.mark.parametrize(
    "exc",
    [
        OSError("no errno at all"),
        OSError(0, "errno zero"),
        ConnectionError("peer reset, no errno"),
        ValueError("invalid literal for int() with base 10: '/etc/shadow'"),
        MemoryError(),
    ],
)
def test_anything_without_an_errno_is_an_internal_error(exc: BaseException) -> None:
    shown = internal_error(raised(exc), "x")
    match = SHOWN.match(shown.message)
    assert match is not None and match["what"] == "internal error"


def test_an_os_error_subclass_with_an_errno_is_worded_too() -> None:
    exc = FileNotFoundError(errno.ENOENT, "No such file", "/srv/sandlot/templates/base")
    assert internal_error(raised(exc), "x").message.startswith("no such file or directory (id ")


@pytest.mark.parametrize(
    "exc",
    [
        SandlotError("the template's start command exited with 1"),
        InvalidStateError("sandbox sbx-1 is paused"),
        SandboxNotFoundError("no sandbox sbx-1"),
        RateLimitedError("too many requests", retryable=True),
    ],
)
def test_sandlots_own_errors_are_shown_as_they_are_and_not_logged(
    exc: SandlotError, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert public_reason(exc, "x") == exc.message
    assert caplog.records == []


def test_a_backends_explanation_is_shown_as_it_is_and_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = BackendError("gVisor cannot checkpoint a sandbox with a TTY open")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert public_reason(exc, "x") == str(exc)
    assert caplog.records == []


def test_a_backends_tool_output_goes_to_the_log_under_an_id_never_to_the_tenant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detail = "Error (criu/namespaces.c:235): Can't open 129695/ns/net: see /run/sandlot/k/d.log"
    exc = BackendError("CRIU could not dump sbx-1", detail)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        reason = public_reason(exc, "pausing sbx-1")
    found = re.fullmatch(
        r"CRIU could not dump sbx-1 \(id ([0-9a-f]{12})\): the server logged the details", reason
    )
    assert found is not None and "129695" not in reason and "/run/" not in reason
    assert found[1] in caplog.text and detail in caplog.text


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("(sqlite3.OperationalError) no such table: events"),
        OSError(errno.ENOSPC, "No space left on device", "/var/lib/sandlot/disk.img"),
        TypeError("unsupported operand type(s)"),
    ],
)
def test_any_other_failure_is_logged_and_replaced_by_the_internal_sentence(
    exc: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        reason = public_reason(raised(exc), "pausing sbx-1")
    match = SHOWN.match(reason)
    assert match is not None
    assert str(exc) not in reason
    assert f"pausing sbx-1 (error id {match['id']})" in caplog.text
