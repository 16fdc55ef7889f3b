"""Unexpected failures: logged in full under an id, shown to users as a sentence and the id.

An internal exception's text (its repr, host paths, SQL, a library's wording) says
nothing a user can act on and tells them how the server is laid out. What they see is
a stable sentence with an error id; the server's log holds the traceback under the same
id, so an operator can find it from what the user reports.

Failures that Sandlot words itself stay as they are: its own errors (`SandlotError`,
e.g. a template's start command that fails) and the backends' explanations
(`BackendError`, e.g. why a sandbox cannot be checkpointed here) are written for users.
"""

from __future__ import annotations

import logging
import os
import secrets

from sandlot.domain.host_values import BackendError
from sandlot.errors import InternalError, SandlotError

log = logging.getLogger(__name__)


def internal_error(exc: BaseException | None, context: str) -> InternalError:
    """Log `exc` with its traceback under a new error id; the error users get instead.

    `context` says what failed, for the log only (e.g. "GET /v1/sandboxes").
    """
    error_id = secrets.token_hex(6)
    log.error("%s (error id %s)", context, error_id, exc_info=exc)
    # An OSError's errno is a sentence worth passing on ("no space left on device");
    # its file names and the rest are not.
    what = (
        os.strerror(exc.errno).lower()
        if isinstance(exc, OSError) and exc.errno
        else "internal error"
    )
    return InternalError(
        f"{what} (id {error_id}): the server logged the details",
        details={"errorId": error_id},
    )


def public_reason(exc: BaseException, context: str) -> str:
    """Why something failed, as users may read it: Sandlot's own words as they are,
    anything else logged and replaced by `internal_error`'s sentence."""
    if isinstance(exc, SandlotError):
        return exc.message
    if isinstance(exc, BackendError):
        if exc.detail is None:
            return str(exc)
        error_id = secrets.token_hex(6)
        log.error("%s: %s (error id %s): %s", context, exc, error_id, exc.detail)
        return f"{exc} (id {error_id}): the server logged the details"
    return internal_error(exc, context).message
